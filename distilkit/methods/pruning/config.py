"""``student.kind: pruned``: what structural pruning removes (:mod:`distilkit.methods.pruning`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilkit.core.sections import Section
from distilkit.models.config import VocabConfig


class PrunedStudentConfig(Section):
    """The teacher itself, structurally pruned, then recovered by distillation (``distilkit.methods.pruning``).

    Targets count from the unpruned teacher: ``heads: 0.4`` removes 40% of all its attention heads (ranked
    globally by Michel et al. 2019 importance), ``ffn`` a fraction of FFN neurons (Taylor importance),
    ``layers`` whole blocks (drop-one importance), ``max_params`` prunes heads and neurons until the model
    fits. ``rounds > 1`` reaches the targets in equal steps, each recovered by ``train.epochs`` of
    distillation from the unpruned teacher (iterative pruning); ``train.epochs: 0`` is one-shot pruning
    without recovery.
    """

    kind: Literal["pruned"]
    tokenizer: str | None = None
    max_length: int = Field(default=128, gt=0)
    heads: float = Field(default=0.0, ge=0, le=1)
    ffn: float = Field(default=0.0, ge=0, le=1)
    layers: int = Field(default=0, ge=0)
    max_params: int | None = Field(default=None, gt=0)
    rounds: int = Field(default=1, gt=0)
    importance_examples: int = Field(default=256, gt=0)
    """Transfer-set examples the importance scores are computed on (labels: gold, else the teacher's)."""
    importance_batch_size: int = Field(default=32, gt=0)
    start_from: str | None = None
    """Prune this saved model instead of a copy of the teacher (set by iterative rounds)."""
    round_fraction: float = Field(default=1.0, gt=0, le=1)
    """Fraction of the way to the targets this run goes (set by iterative rounds: r / rounds)."""
    vocab: VocabConfig | None = None
    """Trim the vocabulary to the transfer set's tokens after pruning (iterative: in the last round)."""

    @model_validator(mode="after")
    def _targets(self):
        if not (self.heads or self.ffn or self.layers or self.max_params):
            raise ValueError("nothing to prune: set heads, ffn, layers and/or max_params")
        return self
