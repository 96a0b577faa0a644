"""A model's architecture read from its ``config.json`` without loading weights (torch-free, for preflight).

The methods that rebuild the teacher's own network (pruning, linear attention) check its ``model_type`` here
before the teacher has labelled the transfer set.
"""

from __future__ import annotations

import json
from pathlib import Path

from distilkit.core.errors import DistilkitError
from distilkit.core.plugins import is_plugin_path
from distilkit.models.model_names import resolve_model_name
from distilkit.models.teacher_adapters import module_names

#: Why a method cannot work on a model type a teacher commonly has (the message adds the supported types).
UNSUPPORTED_WHY = {
    "albert": "ALBERT shares one set of layer weights across all its layers (Lan et al. 2020), so a head or "
              "neuron cannot be removed from one layer alone",
    "deberta-v2": "DeBERTa-v2/v3's disentangled attention (He et al. 2021) adds relative-position projections "
                  "and scores that the head masks and the attention swap do not handle",
}


def saved_config(name: str | None) -> dict | None:
    """The ``config.json`` of a local, aliased or cached Hub model, or ``None`` (other checks name why)."""
    if not name or is_plugin_path(name):
        return None
    try:
        path = Path(resolve_model_name(name)).expanduser() / "config.json"
        if not path.is_file() and not name.startswith(("/", ".", "~")):  # a Hub id: its cached copy, if any
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
            path = Path(cached) if isinstance(cached, str) else path
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (DistilkitError, OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def unsupported_architecture(recipe, teacher_exists: bool, supported: tuple[str, ...], method: str) -> list[str]:
    """A student kind that rebuilds the teacher's network (``recipe.student.kind``) against the ``model_type`` of
    the model it starts from (``student.start_from``, else the first teacher): one message naming the supported
    types when it is not one of ``supported``, else ``[]`` (also when the ``config.json`` cannot be read).

    Args:
        recipe: The validated recipe.
        teacher_exists: ``False`` for a pipeline stage whose teacher an earlier stage writes.
        supported: The ``model_type`` values the method handles.
        method: The method's name in the message (``pruning``, ``block pruning``, ``linear attention``).
    """
    start = getattr(recipe.student, "start_from", None)
    key, source = ("student.start_from", start) if start else ("teacher.model", recipe.primary_teacher.model)
    config = saved_config(source if start or teacher_exists else None)
    model_type = str((config or {}).get("model_type", ""))
    own = model_type.removeprefix("distilkit-pruned-").removeprefix("distilkit-linear-")
    if config is None or own in supported:
        return []
    why = UNSUPPORTED_WHY.get(own)
    return [f"student.kind: {recipe.student.kind} ({method}) supports model types {', '.join(supported)}; {key} "
            f"'{source}' is model type '{model_type}'" + (f": {why}" if why else "")
            + "; distil it into a transformer or BiLSTM student, or use quantize or factorize, which handle it"]


def lora_target_problem(key: str, targets: list[str], model: str) -> str | None:
    """``targets`` (LoRA ``target_modules`` at recipe key ``key``) against the module names of ``model``'s
    architecture (built from its ``config.json`` on the meta device). As in peft, at least one name must match;
    ``None`` when one does or when the architecture cannot be read (other checks name why)."""
    config = saved_config(model)
    names = module_names(config) if config is not None else None
    if names is None or any(n == t or n.endswith("." + t) for n in names for t in targets):
        return None
    return (f"{key}: {targets} match no module of teacher.model '{model}' ({config.get('model_type')}); e.g. "
            f"{sorted({n.rsplit('.', 1)[-1] for n in names})[:12]}")
