"""Teachers: any Hugging Face sequence classifier, or your own model through a dotted import path.

A teacher is anything that maps raw texts to logits (the :class:`Teacher` protocol). Working on raw texts
rather than token ids is what keeps teacher and student tokenizers independent: each side tokenizes for
itself and examples are joined by id, never by loader order.

Plug-in example (``teacher.model: my_pkg.teachers:KeywordTeacher`` in a recipe)::

    class KeywordTeacher:
        num_labels = 2
        def __init__(self, weight: float = 3.0):
            self.weight = weight
        def __call__(self, texts, text_pairs=None):
            good = torch.tensor([float("good" in t) for t in texts])
            return torch.stack([-self.weight * good, self.weight * good], dim=1)
        def fingerprint(self):           # optional for nn.Modules: their weights are hashed
            return f"keyword-v1-{self.weight}"
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from distilkit.core.errors import TeacherError
from distilkit.core.plugins import import_object
from distilkit.models.bilstm import BiLSTMConfig, encode_bilstm
from distilkit.models.lora_layers import ADAPTER_DIR, apply_saved_adapter
from distilkit.models.model_names import resolve_model_name
from distilkit.models.teacher_adapters import adapter_digest, adapter_folder, merge_adapter


@runtime_checkable
class Teacher(Protocol):
    """What distillation needs from a teacher."""

    num_labels: int

    def __call__(self, texts: list[str], text_pairs: list[str] | None = None) -> torch.Tensor:
        """Return float logits of shape ``[len(texts), num_labels]``."""

    def fingerprint(self) -> str:
        """A string that changes whenever the teacher's outputs could change (weights, tokenizer...)."""


def fingerprint_module(module: torch.nn.Module, extra: str = "") -> str:
    """Hash a module's class, parameters and buffers (exact bytes, so any weight update changes it)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(module).__qualname__.encode())
    digest.update(extra.encode())
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(memoryview(tensor.view(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class HFTeacher:
    """A Hugging Face ``*ForSequenceClassification`` model with its own tokenizer.

    Args:
        model: The classifier (kept in eval mode; its device is used for inputs).
        tokenizer: The teacher's tokenizer.
        max_length: Truncation length; part of the fingerprint because it changes the logits.
        name: Where the model came from (for messages and model cards).
    """

    def __init__(self, model: PreTrainedModel, tokenizer, max_length: int = 128, name: str = "",
                 adapter: str | None = None):
        self.model = model.eval()
        self.adapter = adapter  # merged into ``model`` already; its files are hashed into the fingerprint
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name or getattr(model.config, "_name_or_path", "")
        self.num_labels = int(model.config.num_labels)
        self._fingerprint: str | None = None

    def __call__(self, texts: list[str], text_pairs: list[str] | None = None) -> torch.Tensor:
        if self.model.config.model_type == BiLSTMConfig.model_type:  # a BiLSTM (say, before Deep Compression)
            enc = encode_bilstm(self.tokenizer, texts, text_pairs, self.max_length)
        else:
            enc = self.tokenizer(texts, text_pairs, truncation=True, max_length=self.max_length,
                                 padding=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            out = self.model(**{k: v.to(device) for k, v in enc.items()})
        return out.logits.float().cpu()

    def fingerprint(self) -> str:
        # Hashing ~1.3 GB of BERT-large takes ~1 s; done once per process and memoised.
        if self._fingerprint is None:
            extra = f"{_tokenizer_fingerprint(self.tokenizer)}:{self.max_length}"
            if self.adapter:  # merged weights already differ; the files make it explicit (a zero LoRA B too)
                extra += f":adapter:{adapter_digest(self.adapter)}"
            self._fingerprint = fingerprint_module(self.model, extra)
        return self._fingerprint


def has_classification_head(name_or_path: str, revision: str | None = None) -> bool:
    """Whether a checkpoint was saved as a sequence classifier (otherwise its head would be random)."""
    config = AutoConfig.from_pretrained(name_or_path, revision=revision)
    return any(arch.endswith("ForSequenceClassification") for arch in (config.architectures or []))


def load_hf_teacher(name_or_path: str, *, num_labels: int, problem_type: str, tokenizer: str | None = None,
                    revision: str | None = None, max_length: int = 128, allow_new_head: bool = False,
                    device: torch.device | str = "cpu", dtype: str = "float32",
                    adapter: str | None = None) -> HFTeacher:
    """Load a Hugging Face teacher and check it predicts the task's number of labels.

    Args:
        name_or_path: Hub id, local directory or :data:`~distilkit.models.model_names.TEACHER_ALIASES` key.
        num_labels: The task's number of outputs (1 for regression).
        problem_type: ``single_label_classification`` or ``regression``.
        tokenizer: Tokenizer id/path if it differs from the model's.
        revision: Hub revision.
        max_length: Truncation length for the teacher's inputs.
        allow_new_head: Accept a bare encoder and create a fresh head (only sensible before fine-tuning).
        device: Where to run the teacher.
        dtype: ``float32`` or ``bfloat16`` weights (the logits are returned as float32 either way).
        adapter: A PEFT adapter (folder or Hub id) loaded onto the model with peft and merged
            (:func:`distilkit.models.teacher_adapters.merge_adapter`); when it trains the head itself
            (``modules_to_save``), a base without a classification head is accepted.

    Raises:
        TeacherError: missing model, no trained head, or a num_labels mismatch.
    """
    path = resolve_model_name(name_or_path)
    try:
        trained_head = has_classification_head(path, revision)
    except OSError as exc:
        raise TeacherError(f"teacher.model: cannot load '{name_or_path}': {exc}") from None
    if adapter and not trained_head:  # an adapter that saves its own head replaces the fresh one
        allow_new_head = allow_new_head or _adapter_saves_head(adapter)
    if not trained_head and not allow_new_head:
        raise TeacherError(
            f"teacher.model: '{name_or_path}' has no sequence-classification head (its architectures are not "
            "*ForSequenceClassification), so its logits would be random; add a teacher.finetune section or use "
            "a fine-tuned checkpoint"
        )
    kwargs = {} if trained_head else {"num_labels": num_labels, "problem_type": problem_type}
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, revision=revision, **kwargs)
    except Exception as exc:  # a truncated safetensors file, a damaged config: name the folder, not the library
        raise TeacherError(f"teacher.model: '{name_or_path}' cannot be loaded ({type(exc).__name__}: "
                           f"{str(exc).strip()[:200]}); the folder is damaged or incomplete") from None
    if model.config.num_labels != num_labels:
        raise TeacherError(
            f"teacher.model: '{name_or_path}' predicts {model.config.num_labels} labels but the task has "
            f"{num_labels}; pick the teacher fine-tuned on this task"
        )
    if adapter:
        model = merge_adapter(model, adapter)
    if (Path(path) / ADAPTER_DIR / "adapter_config.json").is_file():  # a LoRA-recovered quantized student of an
        apply_saved_adapter(model, Path(path) / ADAPTER_DIR)  # earlier stage: its adapter is part of the model
    source = resolve_model_name(tokenizer) if tokenizer else path
    try:
        tok = AutoTokenizer.from_pretrained(source, revision=revision)
    except Exception as exc:  # a damaged tokenizer.json: name the folder, not the JSON parser
        key = "teacher.tokenizer" if tokenizer else "teacher.model"
        raise TeacherError(f"{key}: the tokenizer of '{tokenizer or name_or_path}' cannot be loaded "
                           f"({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    return HFTeacher(model.to(device=device, dtype=getattr(torch, dtype)), tok, max_length=max_length,
                     name=name_or_path, adapter=adapter)


def _adapter_saves_head(adapter: str) -> bool:
    """Whether the adapter's ``modules_to_save`` holds a trained classification head."""
    folder = adapter_folder(adapter)
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")) if folder else {}
    except (OSError, ValueError):
        return False
    saved = config.get("modules_to_save") or []
    return any(name in ("classifier", "score") for name in saved) or config.get("task_type") == "SEQ_CLS"


def load_plugin_teacher(dotted: str, kwargs: dict, *, num_labels: int, tokenizer: str | None = None,
                        max_length: int = 128, device: torch.device | str = "cpu",
                        require_fingerprint: bool = True) -> Teacher:
    """Build a teacher from ``package.module:Callable`` (a class or factory called with ``kwargs``).

    The callable may return a :class:`Teacher` (texts in, logits out) or a ``PreTrainedModel``, which is
    wrapped in :class:`HFTeacher` with ``tokenizer`` (required then).
    """
    factory = import_object(dotted)
    try:
        obj = factory(**kwargs)
    except TypeError as exc:
        raise TeacherError(f"teacher.kwargs: calling plug-in '{dotted}' failed: {exc}") from None
    if isinstance(obj, PreTrainedModel):
        if tokenizer is None:
            raise TeacherError(f"teacher.tokenizer: plug-in '{dotted}' returned a model; name its tokenizer")
        obj = HFTeacher(obj.to(device), AutoTokenizer.from_pretrained(resolve_model_name(tokenizer)),
                        max_length=max_length, name=dotted)
    if not callable(obj):
        raise TeacherError(f"teacher.model: plug-in '{dotted}' returned {type(obj).__name__}, which is not callable")
    if not hasattr(obj, "fingerprint"):
        if not isinstance(obj, torch.nn.Module) and require_fingerprint:
            raise TeacherError(
                f"teacher.model: plug-in '{dotted}' must define fingerprint() (a string that changes when its "
                "outputs change) so its logits can be cached; or set cache.enabled=false"
            )
        if isinstance(obj, torch.nn.Module):
            module = obj
            obj.fingerprint = lambda: fingerprint_module(module, dotted)  # type: ignore[method-assign]
    declared = getattr(obj, "num_labels", None)
    if declared is not None and int(declared) != num_labels:
        raise TeacherError(f"teacher.model: plug-in '{dotted}' predicts {declared} labels but the task has {num_labels}")
    if declared is None:
        obj.num_labels = num_labels
    return obj
