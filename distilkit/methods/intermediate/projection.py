"""Learned projections from the student's width to the teacher's (TinyBERT's ``W_h`` and ``W_e``, Jiao et al.
2020, eq. 8-9), one per term that compares token vectors (``hidden``, ``embedding``, ``cls``).

The projections are registered as a submodule of the student (``student.distilkit_intermediate``), so that
``student.parameters()`` hands them to the optimizer, Accelerate moves and (with several processes) wraps them
with the student, and a checkpoint saves and resumes them with it. They are training-only modules:
``intermediate.projection: drop`` (the default) lists their keys in the student's ``_keys_to_ignore_on_save``,
so ``save_pretrained`` writes a stock model; ``keep`` writes them into ``model.safetensors`` beside it
(``from_pretrained`` ignores them; :func:`saved_projections` reads them back).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

#: The student submodule holding the projections (also the prefix of their saved keys).
PROJECTION_MODULE = "distilkit_intermediate"


def add_projections(student: nn.Module, terms: list[str], student_width: int, teacher_width: int,
                    keep: bool) -> list[str]:
    """Give ``student`` one ``Linear(student_width, teacher_width)`` per term (none when the widths match).

    Args:
        student: A Hugging Face ``PreTrainedModel`` (its ``_keys_to_ignore_on_save`` decides what is saved).
        terms: The terms that need a projection (``hidden``, ``embedding``, ``cls``).
        student_width: The student's hidden width.
        teacher_width: The teacher's hidden width.
        keep: Save the projections with the student (``intermediate.projection: keep``).

    Returns:
        The terms that got a projection.
    """
    if student_width == teacher_width or not terms:
        return []
    projections = nn.ModuleDict({term: nn.Linear(student_width, teacher_width) for term in terms})
    student.add_module(PROJECTION_MODULE, projections)
    if not keep:
        keys = {f"{PROJECTION_MODULE}.{name}" for name in projections.state_dict()}
        student._keys_to_ignore_on_save = set(getattr(student, "_keys_to_ignore_on_save", None) or ()) | keys
    return list(terms)


def projection(student: nn.Module, term: str) -> nn.Module:
    """The term's projection, or the identity when the widths match."""
    projections = getattr(student, PROJECTION_MODULE, None)
    if projections is None or term not in projections:
        return nn.Identity()
    return projections[term]


def saved_projections(model_dir: str | Path) -> dict[str, nn.Linear]:
    """The projections saved with a student (``intermediate.projection: keep``), by term; ``{}`` if none.

    Args:
        model_dir: A saved student folder (``model/`` of a run) holding ``model.safetensors``.
    """
    state = load_file(str(Path(model_dir) / "model.safetensors"))
    prefix = PROJECTION_MODULE + "."
    found: dict[str, nn.Linear] = {}
    for term in sorted({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)}):
        weight, bias = state[f"{prefix}{term}.weight"], state.get(f"{prefix}{term}.bias")
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        found[term] = linear
    return found
