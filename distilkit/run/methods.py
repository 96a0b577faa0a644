"""The method registry: the one explicit dict of the compression methods a recipe can use, and of the student
kinds.

Each method folder describes itself once, as ``METHOD`` in ``methods/<name>/method.py``
(:class:`distilkit.core.method_spec.Method`); adding a method is its folder plus one line here. The recipe schema
(:mod:`distilkit.run.schema`), the recipe checks, preflight, pipeline stages, ``metrics.json`` and the Auto-class
registration of ``import distilkit`` loop over :data:`METHODS`. The recipe program asks every method, in this
order, for its hooks (:func:`active_methods`; see :mod:`distilkit.core.method_hooks`). Methods never import each
other; only this layer sees them all.

Importing this module is cheap (no torch): hooks, builders and registration are dotted paths, resolved when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distilkit.core.errors import RecipeError
from distilkit.core.method_spec import Method, StudentKind
from distilkit.core.plugins import resolve
from distilkit.methods.deep_compression import method as deep_compression
from distilkit.methods.distillation import method as distillation
from distilkit.methods.intermediate import method as intermediate
from distilkit.methods.linear_attention import method as linear_attention
from distilkit.methods.lora import method as lora
from distilkit.methods.low_rank import method as low_rank
from distilkit.methods.pruning import method as pruning
from distilkit.methods.quantization import method as quantization
from distilkit.models.config import BiLSTMStudentConfig, CopyStudentConfig, TransformerStudentConfig

if TYPE_CHECKING:
    from torch import nn

    from distilkit.core.method_hooks import MethodHooks

METHODS: dict[str, Method] = {
    "distillation": distillation.METHOD,          # the loss section (the loop itself distils)
    "pruning": pruning.METHOD,                    # student.kind: pruned (blocks: hooks; rounds: pipeline stages)
    "linear_attention": linear_attention.METHOD,  # student.kind: linear_attention
    "low_rank": low_rank.METHOD,                  # a factorize section (SVD factors, ALBERT embedding)
    "quantization": quantization.METHOD,          # a quantize section (PTQ or QAT)
    "deep_compression": deep_compression.METHOD,  # a deep_compression section (prune, share, Huffman)
    "intermediate": intermediate.METHOD,          # an intermediate section (TinyBERT / MiniLM inside terms)
    # LoRA last, on purpose: its prepare_student must wrap the student *after* pruning built it and QAT made its
    # linears fake-quantized (adapters beside the compressed weights, never quantized themselves), and its
    # after_training must run *after* the quantization converted model/ (it then keeps the adapters beside the
    # integers instead of merging them). tests/test_peft.py holds this order.
    "lora": lora.METHOD,                          # train.lora (LoRA recovery of a compressed student)
}

_TRANSFORMER_ENCODE = "distilkit.models.transformer:encode_transformer"

#: The student kinds of the models layer; a method adds its own (:attr:`Method.students`).
BUILT_IN_STUDENTS: dict[str, StudentKind] = {
    "bilstm": StudentKind(BiLSTMStudentConfig, build="distilkit.models.student_kinds:build_bilstm",
                          encode="distilkit.models.bilstm:encode_bilstm",
                          no_sharing="a BiLSTM has no stack of transformer layers to share"),
    "transformer": StudentKind(TransformerStudentConfig, build="distilkit.models.student_kinds:build_transformer",
                               encode=_TRANSFORMER_ENCODE),
    "copy": StudentKind(CopyStudentConfig, build="distilkit.models.student_kinds:build_copy",
                        encode=_TRANSFORMER_ENCODE, teacher_network=True,
                        no_sharing="the teacher's own layers are distinct; use kind: transformer with share_layers"),
}

def _every_kind() -> dict[str, StudentKind]:
    kinds = dict(BUILT_IN_STUDENTS)
    for method in METHODS.values():
        for kind in method.students:
            if kind.name in kinds:
                raise TypeError(f"student.kind '{kind.name}' of method {method.name} is already a kind")
            kinds[kind.name] = kind
    return kinds


#: Every ``student.kind``: the built-in ones, then the methods'.
STUDENTS: dict[str, StudentKind] = _every_kind()


def get_student_kind(name: str) -> StudentKind:
    """Look up a student kind.

    Raises:
        RecipeError: ``name`` is not a kind (the message lists the available ones).
    """
    if name not in STUDENTS:
        raise RecipeError(f"student.kind: unknown kind '{name}'; available: {', '.join(STUDENTS)}")
    return STUDENTS[name]


def active_methods(recipe) -> list[MethodHooks]:
    """The hooks of every method ``recipe`` uses, in :data:`METHODS` order."""
    found = (resolve(m.hooks)(recipe) for m in METHODS.values() if m.hooks is not None)
    return [hooks for hooks in found if hooks is not None]


def parameter_groups(student: nn.Module, methods: list[MethodHooks]) -> list[dict]:
    """The optimizer's parameter groups: one method's, or every trainable parameter in one group."""
    proposals = [(m.name, groups) for m in methods if (groups := m.parameter_groups(student)) is not None]
    if len(proposals) > 1:
        raise RecipeError("methods " + ", ".join(name for name, _ in proposals) + " each set optimizer "
                          "parameter groups; only one may")
    if proposals:
        return proposals[0][1]
    return [{"params": [p for p in student.parameters() if p.requires_grad]}]
