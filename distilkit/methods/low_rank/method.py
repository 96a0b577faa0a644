"""Low-rank factorisation in the method registry (:data:`distilkit.run.methods.METHODS`)."""

from __future__ import annotations

from distilkit.core.method_spec import Method
from distilkit.methods.low_rank import checks
from distilkit.methods.low_rank.config import FactorizeConfig

METHOD = Method(
    name="low_rank",
    sections={"factorize": FactorizeConfig},                      # the recipe's factorize: section
    conflicts=checks.CONFLICTS,                                   # factorize with quantize, deep_compression...
    hooks="distilkit.methods.low_rank.hooks:from_recipe",         # factorise the student, write factorize.json
    metrics="distilkit.methods.low_rank.hooks:metrics",           # metrics.json's student.factorize
    register="distilkit.methods.low_rank.storage:register",       # quant_method: distilkit-low-rank loader
)
