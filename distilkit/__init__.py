"""distilkit: transformer compression and distillation on Hugging Face.

The package is layered; each folder may import only the folders below it (enforced by import-linter,
see ``[tool.importlinter]`` in pyproject.toml and docs/design.md)::

    cli        the ``distilkit`` command
    run        recipe schema and IO, the recipe program (distill.run), pipelines, built-in name dicts
    report     metrics.json, pipeline summaries, Pareto reports, Hub cards and uploads
    deploy     ONNX export of every student, ONNX Runtime and PyTorch inference, the predict command
    methods    one folder per method (distillation, pruning, quantization, deep_compression, low_rank, lora,
               linear_attention), each described by its method.py and registered in run/methods.py;
               methods never import each other
    models     teachers (and their fine-tuning), the BiLSTM and transformer students, vocabulary trimming
    data       tasks, rows, metrics, batches, the teacher-logit cache, Tang et al. augmentation
    core       errors, atomic files, measurement, plug-in paths, the method interface
"""

import contextlib
import importlib.abc
import importlib.machinery
import logging
import sys

__version__ = "0.1.0"


@contextlib.contextmanager
def _quiet_optional_backends():
    """transformers.quantizers imports torchao when it is installed; torchao then logs warnings about its
    optional CUDA extensions on every CPU machine. They say nothing about distilkit: keep them quiet."""
    noisy = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(noisy, levels):
            logger.setLevel(level)


def _register() -> None:
    """With distilkit installed, ``AutoModelForSequenceClassification.from_pretrained`` reloads BiLSTM and
    layer-sharing students and every registered method's saved models (pruned, linear-attention, distilkit-quantized,
    Deep Compression, low-rank factorised...) without remote code: each method's ``auto_classes`` and ``register``
    (:data:`distilkit.run.methods.METHODS`)."""
    with _quiet_optional_backends():
        # Imported here, not at the top: the package namespace stays empty.
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from distilkit.core.plugins import resolve
        from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
        from distilkit.models.bilstm_pipeline import register as register_bilstm_pipeline
        from distilkit.models.shared_layers import SHARED_CLASSES
        from distilkit.run.methods import METHODS

        # model_type distilkit-bilstm / -shared-* and the methods' (-pruned-*, -linear-*) -> our classes (idempotent).
        classes = [(BiLSTMConfig, BiLSTMForSequenceClassification), *SHARED_CLASSES.values(),
                   *(pair for m in METHODS.values() if m.auto_classes for pair in resolve(m.auto_classes).values())]
        for config_class, model_class in classes:
            AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
            AutoModelForSequenceClassification.register(config_class, model_class, exist_ok=True)
        for method in METHODS.values():  # transformers quantizers and loaders of the methods' quant_method values
            if method.register is not None:
                resolve(method.register)()
        register_bilstm_pipeline()  # the BiLSTM's text-classification pipeline (models/bilstm_pipeline.py)


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Runs :func:`_register` right after ``transformers`` is first imported.

    Registering means importing torch and transformers (about 5 s on a 2-core machine). ``import distilkit``
    alone must stay cheap, because the ``distilkit`` command checks a recipe (preflight) before it loads any of
    them and promises to name a bad input within 5 s. Whoever imports transformers -- a user's
    ``from transformers import AutoModel...`` or distilkit's own code -- gets the classes registered before
    the import statement returns, so ``import distilkit`` keeps its promise.

    When a distilkit module is the one importing transformers, that module is half-initialized, and
    registering would import it again (a circular import); registration then waits until the outermost
    distilkit import has finished. The finder watches distilkit's own imports to know when that is.
    """

    def __init__(self):
        self.depth, self.pending = 0, False

    def find_spec(self, fullname, path=None, target=None):
        watched = fullname == "transformers" or fullname.startswith("distilkit.")
        if not watched or fullname in sys.modules:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module
        if fullname == "transformers":
            def exec_then_register(module):
                exec_module(module)
                if self.depth:
                    self.pending = True
                else:
                    self._register_once()
        else:
            def exec_then_register(module):
                self.depth += 1
                try:  # (the module may import transformers, and with it torchao, before registration)
                    with _quiet_optional_backends():
                        exec_module(module)
                finally:
                    self.depth -= 1
                if not self.depth and self.pending:
                    self._register_once()
        spec.loader.exec_module = exec_then_register
        return spec

    def _register_once(self):
        self.pending = False
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        _register()


if "transformers" in sys.modules:
    _register()
else:
    sys.meta_path.insert(0, _RegisterAfterTransformers())
