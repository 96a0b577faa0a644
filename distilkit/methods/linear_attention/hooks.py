"""Linear-attention recovery in the recipe program: attention transfer and the feature maps' learning rate."""

from __future__ import annotations

import torch
from torch import nn

from distilkit.core.method_hooks import MethodHooks
from distilkit.methods.linear_attention.swap import (
    attention_transfer_loss,
    enable_attention_transfer,
    parameter_groups,
)


class LinearAttentionHooks(MethodHooks):
    """``student.kind: linear_attention``: ``loss.attention_weight`` adds per-layer attention transfer to the
    logit loss; ``student.feature_lr`` trains the new feature maps at their own learning rate."""

    name = "linear_attention"

    def __init__(self, attention_weight: float, feature_lr: float | None):
        self.attention_weight, self.feature_lr = attention_weight, feature_lr

    def prepare_student(self, student: nn.Module) -> None:
        if self.attention_weight:  # linear-attention layers also learn to mimic softmax attention
            enable_attention_transfer(student)

    def parameter_groups(self, student: nn.Module) -> list[dict] | None:
        return parameter_groups(student, self.feature_lr)

    def extra_losses(self, student: nn.Module, batch: dict | None = None, outputs=None) -> dict[str, torch.Tensor]:
        if not self.attention_weight:
            return {}
        return {"attention": self.attention_weight * attention_transfer_loss(student)}


def from_recipe(recipe) -> LinearAttentionHooks | None:
    """Active for linear-attention students."""
    if recipe.student.kind != "linear_attention":
        return None
    return LinearAttentionHooks(recipe.loss.attention_weight, recipe.student.feature_lr)
