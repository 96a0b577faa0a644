"""The recipe's ``loss`` section: the distillation objective (:mod:`distilkit.methods.distillation.losses`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from distilkit.core.sections import Section


class MutualConfig(Section):
    """``loss.mutual``: deep mutual learning (Zhang et al. 2018), several students trained together, each also
    distilling from the others' predictions (:mod:`distilkit.methods.distillation.mutual`)."""

    students: int = 2
    """How many students train together, the main one included (``K >= 2``); the main student is the one
    evaluated and saved, the ``K - 1`` peers help it."""
    weight: float = Field(default=1.0, ge=0)
    """Weight of each student's mutual term, the mean over the other students of ``KL(p_other || p_self)``
    (classification, at ``temperature``, times ``T^2``) or of the squared error to their predictions
    (regression); added to the student's distillation loss against the teacher."""
    temperature: float = Field(default=1.0, gt=0)
    """Softening temperature of the mutual KL (Zhang et al. use plain softmax: 1)."""
    seed: int | None = None
    """Peer ``k`` (1 .. K-1) draws its fresh weights from ``seed + k``; ``null``: ``train.seed + k``."""
    init: Literal["auto", "copy"] = "auto"
    """``auto``: each peer redraws, from its own seed, the weights the student did not take from the teacher
    (see docs/design.md); ``copy``: peers start as exact copies and differ only by their dropout masks."""
    save_peers: bool = False
    """Also save the peers (as trained at the end) to ``output_dir/peers/<k>/``."""

    @field_validator("students")
    @classmethod
    def _at_least_two(cls, students: int) -> int:
        if students < 2:
            raise ValueError(f"mutual learning trains at least 2 students (the main one and a peer), got {students}; "
                             "use students: 2 or more, or drop loss.mutual")
        return students


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
    mutual: MutualConfig | None = None
    """Deep mutual learning: peers trained beside the student, each distilling from the teacher and the others
    (:mod:`distilkit.methods.distillation.mutual`)."""
