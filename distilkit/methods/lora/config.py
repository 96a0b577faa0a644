"""The recipe's ``train.lora`` section (:mod:`distilkit.methods.lora`).

The keys are those of :class:`distilkit.models.config.LoraSettings` (shared with ``teacher.finetune.lora``):
``r``, ``alpha``, ``dropout``, ``target_modules`` and ``modules_to_save``.
"""

from __future__ import annotations

from distilkit.models.config import LoraSettings


class LoraRecoveryConfig(LoraSettings):
    """LoRA recovery of a compressed student (``train.lora``): its compressed weights stay frozen and only the
    adapters on ``target_modules`` and the modules of ``modules_to_save`` (the classification head) train by
    distillation."""
