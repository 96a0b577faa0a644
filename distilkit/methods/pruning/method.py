"""Pruning in the method registry (:data:`distilkit.run.methods.METHODS`)."""

from __future__ import annotations

from distilkit.core.method_spec import Method, StudentKind
from distilkit.methods.pruning import checks
from distilkit.methods.pruning.config import PrunedStudentConfig

METHOD = Method(
    name="pruning",
    students=(StudentKind(PrunedStudentConfig, build="distilkit.methods.pruning.student:build_student",
                          encode="distilkit.models.transformer:encode_transformer", teacher_network=True,
                          no_sharing="structural pruning leaves layers of different shapes, which cannot share "
                                     "one block"),),
    preflight=checks.preflight,
    hooks="distilkit.methods.pruning.hooks:from_recipe",
    metrics="distilkit.methods.pruning.hooks:metrics",
    auto_classes="distilkit.methods.pruning.pruned:PRUNED_CLASSES",
)
