"""distilkit's saved-weight formats, reloaded by ``from_pretrained`` through transformers' quantizer registry.

Three methods save weights that a stock architecture cannot hold: distilkit's integer grids (``quant_method:
distilkit``), Deep Compression's encoded tensors (``distilkit-deep-compression``) and low-rank factors
(``distilkit-low-rank``). Each writes ``config.json``'s ``quantization_config`` with its ``quant_method`` and a
``modules`` table, and needs the same thing from transformers: swap the listed modules for ones of the saved
shapes *before the weights load* (the one generic hook between building a model and loading its weights, for
any architecture), and maybe finish them *after* (decode to float, put the record back). transformers asks for
that as a :class:`~transformers.quantizers.HfQuantizer` subclass plus a ``QuantizationConfigMixin`` subclass,
registered under the ``quant_method`` name; :func:`register_weight_format` builds and registers both from what
actually differs between the methods, so each method folder keeps only its swap functions (methods never import
each other, so the shared piece lives here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def register_weight_format(quant_method: str, *, name: str, before_weights: Callable[[Any, dict], None],
                           after_weights: Callable[[Any], None] | None = None, fields: dict | None = None,
                           dequantize: bool = False, serializable: bool = True, trainable: bool = True) -> None:
    """Make checkpoints whose ``quantization_config.quant_method`` is ``quant_method`` loadable by transformers'
    ``from_pretrained`` (idempotent; each method's ``register()`` calls it on ``import distilkit``).

    Args:
        quant_method: The ``quant_method`` the method writes into ``config.json``.
        name: Class-name stem of the generated config (``<name>Config``) and quantizer (``<name>Loader``).
        before_weights: ``before_weights(model, config)``, with ``config`` the saved ``quantization_config``
            as a dict: swap the recorded modules for ones the checkpoint's tensors fit, in place.
        after_weights: ``after_weights(model)`` once the weights are in (decode, record again); none by default.
        fields: Further ``quantization_config`` keys and their defaults (kept after ``quant_method`` and
            ``modules``, in this order, as the method writes them).
        dequantize: The loaded model is plain float: transformers then drops its quantizer state and the config.
        serializable: Whether the loaded model may be saved again as is.
        trainable: Whether the loaded model may be trained.
    """
    from transformers.quantizers import HfQuantizer, register_quantization_config, register_quantizer
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING
    from transformers.utils.quantization_config import QuantizationConfigMixin

    defaults = dict(fields or {})

    def init_config(self, modules: dict | None = None, **kwargs):
        self.quant_method = quant_method
        self.modules = modules or {}
        for key, default in defaults.items():
            setattr(self, key, kwargs.get(key, default))
        if dequantize:
            self.dequantize = True

    def before(self, model, **kwargs):
        before_weights(model, self.quantization_config.to_dict())
        return model

    def after(self, model, **kwargs):
        if after_weights is not None:
            after_weights(model)
        return model

    config_class = type(f"{name}Config", (QuantizationConfigMixin,), {
        "__init__": init_config, "__doc__": f"``quantization_config`` of a ``quant_method: {quant_method}`` checkpoint."})
    loader_class = type(f"{name}Loader", (HfQuantizer,), {
        "__doc__": f"Loads ``quant_method: {quant_method}`` checkpoints (see distilkit.core.hf_quantizers).",
        "requires_calibration": True,  # only checkpoints the method itself wrote: nothing is quantized on load
        "_process_model_before_weight_loading": before,
        "_process_model_after_weight_loading": after,
        "is_serializable": lambda self, *args, **kwargs: serializable,
        "is_trainable": property(lambda self: trainable),
    })
    if quant_method not in AUTO_QUANTIZATION_CONFIG_MAPPING:
        register_quantization_config(quant_method)(config_class)
    if quant_method not in AUTO_QUANTIZER_MAPPING:
        register_quantizer(quant_method)(loader_class)
