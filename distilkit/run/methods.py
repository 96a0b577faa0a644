"""Built-in compression methods: the one explicit dict of the methods a recipe can switch on.

Each entry maps a name to its ``from_recipe(recipe) -> MethodHooks | None``; the recipe program
(:func:`distilkit.run.distill.run`) asks every entry, in this order, and calls the hooks of those that
answer (see :mod:`distilkit.core.method_hooks`). Methods never import each other; only this layer sees
them all.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.core.method_hooks import MethodHooks
from distilkit.methods.deep_compression import hooks as deep_compression
from distilkit.methods.distillation import hooks as distillation
from distilkit.methods.linear_attention import hooks as linear_attention
from distilkit.methods.lora import hooks as lora
from distilkit.methods.low_rank import hooks as low_rank
from distilkit.methods.pruning import hooks as pruning
from distilkit.methods.quantization import hooks as quantization

METHODS: dict[str, Callable[[object], MethodHooks | None]] = {
    # Mutual learning first: its peers are copies of the student as built, before any method below changes it.
    "mutual": distillation.from_recipe,                # loss.mutual (deep mutual learning, peers beside the student)
    "pruning": pruning.from_recipe,                    # student.kind: pruned with rounds > 1 or blocks
    "linear_attention": linear_attention.from_recipe,  # student.kind: linear_attention
    "low_rank": low_rank.from_recipe,                  # a factorize section (SVD factors, ALBERT embedding)
    "quantization": quantization.from_recipe,          # a quantize section (PTQ or QAT)
    "deep_compression": deep_compression.from_recipe,  # a deep_compression section (prune, share, Huffman)
    # LoRA last, on purpose: its prepare_student must wrap the student *after* pruning built it and QAT made its
    # linears fake-quantized (adapters beside the compressed weights, never quantized themselves), and its
    # after_training must run *after* the quantization converted model/ (it then keeps the adapters beside the
    # integers instead of merging them). tests/test_peft.py holds this order.
    "lora": lora.from_recipe,                          # train.lora (LoRA recovery of a compressed student)
}


def active_methods(recipe) -> list[MethodHooks]:
    """The hooks of every method ``recipe`` uses, in :data:`METHODS` order."""
    return [hooks for from_recipe in METHODS.values() if (hooks := from_recipe(recipe)) is not None]


def parameter_groups(student: nn.Module, methods: list[MethodHooks]) -> list[dict]:
    """The optimizer's parameter groups: one method's, or every trainable parameter in one group."""
    proposals = [(m.name, groups) for m in methods if (groups := m.parameter_groups(student)) is not None]
    if len(proposals) > 1:
        raise RecipeError("methods " + ", ".join(name for name, _ in proposals) + " each set optimizer "
                          "parameter groups; only one may")
    if proposals:
        return proposals[0][1]
    return [{"params": [p for p in student.parameters() if p.requires_grad]}]
