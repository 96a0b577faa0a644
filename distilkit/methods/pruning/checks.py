"""Pruning's preflight (torch-free: it reads the teacher's ``config.json``, never its weights)."""

from __future__ import annotations

from distilkit.methods.pruning.config import PRUNABLE_MODEL_TYPES, block_problems
from distilkit.models.architectures import saved_config, unsupported_architecture


def preflight(recipe, teacher_exists: bool = True) -> list[str]:
    """A pruned student's teacher must have an architecture pruning handles (its ``model_type``), and a block
    size must divide every weight block pruning tiles (``student.blocks.size``)."""
    if recipe.student.kind != "pruned":
        return []
    blocks = recipe.student.blocks
    method = "pruning" if blocks is None else "block pruning"
    problems = unsupported_architecture(recipe, teacher_exists, PRUNABLE_MODEL_TYPES, method)
    if blocks is not None:
        source = recipe.student.start_from or (recipe.primary_teacher.model if teacher_exists else None)
        problems += block_problems(blocks, recipe.train.epochs, saved_config(source))
    return problems
