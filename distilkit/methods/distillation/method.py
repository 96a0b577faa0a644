"""Distillation as a method of the registry (:data:`distilkit.run.methods.METHODS`): it owns the ``loss`` section
and its rules. The training loop itself computes the logit loss; the hooks are deep mutual learning's
(``loss.mutual``: the peers trained beside the student)."""

from __future__ import annotations

from distilkit.core.method_spec import Method
from distilkit.methods.distillation import checks
from distilkit.methods.distillation.config import LossConfig
from distilkit.methods.distillation.mutual_checks import mutual_problems

METHOD = Method(
    name="distillation",
    sections={"loss": LossConfig},
    defaults=("loss",),
    meaningless=checks.MEANINGLESS,
    conflicts=checks.CONFLICTS,
    problems=mutual_problems,                                   # loss.mutual with resume, epochs: 0...
    hooks="distilkit.methods.distillation.hooks:from_recipe",   # loss.mutual: peers beside the student
    metrics="distilkit.methods.distillation.hooks:metrics",     # metrics.json student.mutual (the peers)
)
