"""The recipe's ``loss`` section: the distillation objective (:mod:`distilkit.methods.distillation.losses`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distilkit.core.sections import Section


class LossConfig(Section):
    """Distillation objective: ``(1 - alpha) * soft(kind) + alpha * hard-label``."""

    kind: Literal["mse", "kl"] = "mse"
    temperature: float = Field(default=1.0, gt=0)
    alpha: float = Field(default=0.0, ge=0, le=1)
    ensemble: Literal["average", "each"] = "average"
    """With several teachers: ``average`` distils from one combined target (their weighted softened class
    probabilities, or mean prediction for regression); ``each`` sums one weighted distillation loss per teacher
    (:mod:`distilkit.methods.distillation.ensemble`)."""
    attention_weight: float = Field(default=0.0, ge=0)
    """linear_attention students: weight of per-layer attention transfer to softmax attention (added)."""
