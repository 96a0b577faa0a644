"""Deep Compression in the method registry (:data:`distilkit.run.methods.METHODS`)."""

from __future__ import annotations

from distilkit.core.method_spec import Method
from distilkit.methods.deep_compression import checks
from distilkit.methods.deep_compression.config import DeepCompressionConfig

METHOD = Method(
    name="deep_compression",
    sections={"deep_compression": DeepCompressionConfig},
    conflicts=checks.CONFLICTS,
    hooks="distilkit.methods.deep_compression.hooks:from_recipe",
    metrics="distilkit.methods.deep_compression.hooks:metrics",
    register="distilkit.methods.deep_compression.storage:register",
)
