"""Linear attention in the method registry (:data:`distilkit.run.methods.METHODS`)."""

from __future__ import annotations

from distilkit.core.method_spec import Method, StudentKind
from distilkit.methods.linear_attention import checks
from distilkit.methods.linear_attention.config import LinearAttentionStudentConfig

METHOD = Method(
    name="linear_attention",
    students=(StudentKind(LinearAttentionStudentConfig,
                          build="distilkit.methods.linear_attention.swap:build_student",
                          encode="distilkit.models.transformer:encode_transformer", teacher_network=True,
                          no_sharing="its attention modules are swapped per layer after the teacher is copied"),),
    meaningless=checks.MEANINGLESS,
    conflicts=checks.CONFLICTS,
    preflight=checks.preflight,
    hooks="distilkit.methods.linear_attention.hooks:from_recipe",
    auto_classes="distilkit.methods.linear_attention.linear:LINEAR_CLASSES",
)
