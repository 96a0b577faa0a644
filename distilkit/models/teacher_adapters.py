"""``teacher.adapter``: a PEFT adapter loaded onto the base teacher and merged before it labels anything.

Loading is peft's own (``PeftModel.from_pretrained`` then ``merge_and_unload``), so every PEFT type peft can
merge works (LoRA, LoHa, LoKr, IA3...). The merged teacher is an ordinary classifier; its fingerprint (the
logit-cache key) hashes its merged weights *and* the adapter files (:func:`adapter_digest`), so a different
adapter is always a different cache entry.

Preflight (:func:`adapter_problems`) reads ``adapter_config.json`` only, plus the teacher's ``config.json``.
Is the adapter made for this base model? ``base_model_name_or_path`` alone is a weak test: the same weights
live under a Hub id, a local copy or a cache folder whose names differ, and a hashed fine-tuned-teacher
folder has no stable name at all. So the check is structural:

1. every entry of ``target_modules`` (list form) must name a module of the teacher (peft matches a list
   entry against the full name or its last parts); a regex string must match at least one module name.
   An adapter trained on another architecture (``q_proj``/``v_proj`` of a Llama on a BERT) fails here,
   even when peft itself would merge the few names that happen to match;
2. ``layers_to_transform`` must index existing layers;
3. when ``base_model_name_or_path`` names a config that can be read without a download, its
   ``model_type``, ``hidden_size``, ``num_hidden_layers`` and ``intermediate_size`` must equal the
   teacher's (same module names, different shapes: BERT-base's adapter on BERT-large).

What the config cannot show (a tensor of the right name but another shape) makes peft's load fail; that is
caught and named as a :class:`TeacherError` before anything is labelled.

torch, transformers and peft are imported inside the functions that need them: preflight imports this module
and must answer before those heavy imports (issue 17).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from distilkit.core.errors import DistilkitError, TeacherError
from distilkit.models.model_names import resolve_model_name

_ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size")


def adapter_folder(adapter: str) -> Path | None:
    """The local folder of ``adapter`` (a path, or a Hub id in the local cache), or ``None``."""
    path = Path(adapter).expanduser()
    if path.is_dir():
        return path
    if adapter.startswith(("/", ".", "~")) or adapter.count("/") != 1:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(adapter, "adapter_config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def _hub_id(name: str) -> bool:
    return not name.startswith(("/", ".", "~")) and name.count("/") == 1 and not Path(name).expanduser().exists()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _read_config(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _model_config(name: str) -> dict | None:
    try:
        path = Path(resolve_model_name(name)).expanduser() / "config.json"
    except DistilkitError:
        return None
    return _read_config(path) if path.is_file() else None


def module_names(config: dict) -> list[str] | None:
    """Module names of the sequence classifier ``config`` describes, built on the meta device (no weights),
    or ``None`` when transformers cannot build it from the config alone (remote code)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    try:
        cfg = AutoConfig.for_model(**{k: v for k, v in config.items()
                                      if k not in ("architectures", "transformers_version")})
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(cfg)
    except Exception:  # an unknown model_type, a remote-code class: the load itself will tell
        return None
    return [name for name, _ in model.named_modules() if name]


def adapter_problems(adapter: str, teacher_model: str) -> list[str]:
    """Why ``adapter`` cannot be applied to ``teacher_model`` (``teacher.adapter: ...`` lines), from the two
    configs only; ``[]`` when it fits or when the teacher's config cannot be read (another check names that)."""
    folder = adapter_folder(adapter)
    if folder is None and _hub_id(adapter) and not _offline():
        return []  # peft downloads it when the teacher loads; a missing repo is a TeacherError then
    if folder is None:
        return [f"teacher.adapter: '{adapter}' does not exist (not a folder, and not a Hub id in the local cache"
                + (" with HF_HUB_OFFLINE set)" if _offline() else ")")]
    config = _read_config(folder / "adapter_config.json")
    if config is None or "peft_type" not in config:
        return [f"teacher.adapter: '{adapter}' has no readable adapter_config.json with a peft_type: not a PEFT "
                "adapter folder (save one with PeftModel.save_pretrained)"]
    teacher = _model_config(teacher_model)
    if teacher is None:
        return []
    problems = []
    base = config.get("base_model_name_or_path")
    base_config = _model_config(base) if base else None
    if base_config is not None:
        differ = [f"{k} {base_config.get(k)} vs {teacher.get(k)}" for k in _ARCH_KEYS
                  if base_config.get(k) != teacher.get(k)]
        if differ:
            problems.append(f"teacher.adapter: '{adapter}' was made for base model '{base}', whose architecture "
                            f"differs from teacher.model '{teacher_model}' ({'; '.join(differ)})")
    names = module_names(teacher)
    targets = config.get("target_modules") if names is not None else None
    if isinstance(targets, str):
        if not any(re.fullmatch(targets, name) for name in names):
            problems.append(f"teacher.adapter: target_modules regex {targets!r} of '{adapter}' matches no module "
                            f"of teacher.model '{teacher_model}': the adapter was made for another base model"
                            + (f" ('{base}')" if base else ""))
    elif targets:
        missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            problems.append(f"teacher.adapter: target modules {missing} of '{adapter}' are not modules of "
                            f"teacher.model '{teacher_model}': the adapter was made for another base model"
                            + (f" ('{base}')" if base else ""))
    layers = config.get("layers_to_transform")
    layers = [layers] if isinstance(layers, int) else layers or []
    depth = teacher.get("num_hidden_layers")
    if depth is not None and any(int(i) >= depth for i in layers):
        problems.append(f"teacher.adapter: layers_to_transform {layers} of '{adapter}' but teacher.model "
                        f"'{teacher_model}' has {depth} layers")
    return problems


def adapter_digest(adapter: str) -> str:
    """Hash of the adapter's config and weight files (part of the teacher fingerprint)."""
    folder = adapter_folder(adapter)
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(folder.iterdir()) if folder else []:
        if path.is_file() and (path.name == "adapter_config.json" or path.suffix in (".safetensors", ".bin")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def merge_adapter(model, adapter: str):
    """Load ``adapter`` onto ``model`` (a ``PreTrainedModel``) with peft and merge it: returns the plain merged
    model.

    Raises:
        TeacherError: peft cannot load it (missing files, or tensors whose shapes differ from the teacher's).
    """
    from peft import PeftModel

    folder = adapter_folder(adapter)
    if folder is None and not _hub_id(adapter):
        raise TeacherError(f"teacher.adapter: '{adapter}' does not exist")
    try:  # a Hub id not cached yet: peft downloads it
        peft_model = PeftModel.from_pretrained(model, str(folder) if folder else adapter, is_trainable=False)
        return peft_model.merge_and_unload()
    except Exception as exc:  # peft and torch raise ValueError, RuntimeError (size mismatch), KeyError...
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise TeacherError(f"teacher.adapter: '{adapter}' cannot be applied to the teacher ({type(exc).__name__}: "
                           f"{first}); it was made for another base model or is damaged") from None
