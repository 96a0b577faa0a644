"""Quantization in the method registry (:data:`distilkit.run.methods.METHODS`)."""

from __future__ import annotations

from distilkit.core.method_spec import Method
from distilkit.methods.quantization import checks
from distilkit.methods.quantization.config import QuantizeConfig

METHOD = Method(
    name="quantization",
    sections={"quantize": QuantizeConfig},
    meaningless=checks.MEANINGLESS,
    conflicts=checks.CONFLICTS,
    preflight=checks.preflight,
    hooks="distilkit.methods.quantization.hooks:from_recipe",
    metrics="distilkit.methods.quantization.hooks:metrics",
    register="distilkit.methods.quantization.hf_quantizer:register",
)
