"""Intermediate-layer distillation in the method registry (:data:`distilkit.run.methods.METHODS`)."""

from __future__ import annotations

from distilkit.core.method_spec import Method
from distilkit.methods.intermediate import checks
from distilkit.methods.intermediate.config import IntermediateConfig
from distilkit.models.architectures import saved_config


def _preflight(recipe, teacher_exists: bool = True) -> list[str]:
    return checks.preflight_problems(recipe, saved_config if teacher_exists else None)


METHOD = Method(
    name="intermediate",
    sections={"intermediate": IntermediateConfig},                   # the recipe's intermediate: section
    problems=lambda recipe, task: checks.recipe_problems(recipe),    # BiLSTM students, plug-in teachers...
    preflight=_preflight,                                            # layer maps against the teacher's config.json
    hooks="distilkit.methods.intermediate.hooks:from_recipe",        # teacher inside per batch, projections
)
