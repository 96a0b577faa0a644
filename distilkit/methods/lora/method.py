"""LoRA recovery in the method registry (:data:`distilkit.run.methods.METHODS`, where it comes last)."""

from __future__ import annotations

from distilkit.core.method_spec import Method
from distilkit.methods.lora import checks
from distilkit.methods.lora.config import LoraRecoveryConfig

METHOD = Method(
    name="lora",
    sections={"train.lora": LoraRecoveryConfig},
    conflicts=checks.CONFLICTS,
    preflight=checks.preflight,
    hooks="distilkit.methods.lora.hooks:from_recipe",
)
