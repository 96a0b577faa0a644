"""Linear attention's recipe rules and preflight (torch-free: they run before any model loads)."""

from __future__ import annotations

from distilkit.core.recipe_rules import Rule, written
from distilkit.methods.linear_attention.config import LINEAR_ATTENTION_MODEL_TYPES
from distilkit.models.architectures import unsupported_architecture


def _linear(recipe) -> bool:
    return recipe.student.kind == "linear_attention"


MEANINGLESS = (
    Rule("student.features", "student.variant",
         lambda r, t: _linear(r) and written(r.student, "features")
         and r.student.variant in ("elu", "hedgehog", "sinkhorn", "star"),
         "only performer (random features) and linformer (projected length) have a feature count"),
    Rule("student.feature_lr", "student.variant",
         lambda r, t: _linear(r) and r.student.feature_lr is not None
         and r.student.variant in ("elu", "performer", "star"),
         "elu and star have no feature map and performer's random features are fixed: nothing trains at "
         "feature_lr"),
    Rule("student.seed", "student.variant",
         lambda r, t: _linear(r) and written(r.student, "seed")
         and r.student.variant in ("elu", "hedgehog", "sinkhorn", "star"),
         "only performer's random features and linformer's projections are drawn from the seed"),
    *(Rule(f"student.{name}", "student.variant",
           lambda r, t, name=name: _linear(r) and written(r.student, name) and r.student.variant != "sinkhorn",
           "only sinkhorn sorts blocks")
      for name in ("block_size", "sinkhorn_iters", "temperature")),
    Rule("student.star_window", "student.variant",
         lambda r, t: _linear(r) and written(r.student, "star_window") and r.student.variant != "star",
         "only star attends within a window of neighbours"),
)

CONFLICTS = (
    Rule("loss.attention_weight", "student.kind",
         lambda r, t: bool(r.loss.attention_weight) and not _linear(r),
         "attention transfer trains linear_attention students only"),
    Rule("student.block_size", "student.max_length",
         lambda r, t: _linear(r) and r.student.variant == "sinkhorn" and r.student.block_size > r.student.max_length,
         "a block longer than the longest input would make Sinkhorn attention one block of plain softmax "
         "attention; use a block_size of at most max_length (e.g. max_length / 8)"),
    Rule("student.star_window", "student.max_length",
         lambda r, t: _linear(r) and r.student.variant == "star" and r.student.star_window >= r.student.max_length,
         "a window reaching past the longest input lets every token see every other: softmax attention plus a "
         "relay, at quadratic cost; use a star_window below max_length (Guo et al. use 1)"),
)


def preflight(recipe, teacher_exists: bool = True) -> list[str]:
    """The teacher's ``model_type`` (its ``config.json``) must be one whose attention can be swapped."""
    if not _linear(recipe):
        return []
    return unsupported_architecture(recipe, teacher_exists, LINEAR_ATTENTION_MODEL_TYPES, "linear attention")
