"""Distillation as a method of the registry (:data:`distilkit.run.methods.METHODS`): it owns the ``loss`` section
and its rules; the training loop itself computes the loss, so it has no hooks."""

from __future__ import annotations

from distilkit.core.method_spec import Method
from distilkit.methods.distillation import checks
from distilkit.methods.distillation.config import LossConfig

METHOD = Method(
    name="distillation",
    sections={"loss": LossConfig},
    defaults=("loss",),
    meaningless=checks.MEANINGLESS,
    conflicts=checks.CONFLICTS,
)
