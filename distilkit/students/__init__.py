"""Built-in student kinds: the one explicit dict of short names used by ``student.kind`` in recipes.

Importing this package also registers the BiLSTM with the Auto classes, so with distilkit installed a saved
BiLSTM loads through ``AutoModelForSequenceClassification.from_pretrained(dir)`` without
``trust_remote_code`` (the copied modeling file serves machines without distilkit).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from distilkit.errors import RecipeError
from distilkit.students.bilstm import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    build_bilstm_student,
    encode_bilstm,
)
from distilkit.students.linear import LINEAR_CLASSES
from distilkit.students.pruned import PRUNED_CLASSES
from distilkit.students.transformer import build_transformer_student, encode_transformer

__all__ = [
    "STUDENTS",
    "BiLSTMConfig",
    "BiLSTMForSequenceClassification",
    "StudentKind",
    "encode_for_student",
    "get_student_kind",
]


@dataclass(frozen=True)
class StudentKind:
    """How to build a student and how to turn raw texts into its inputs.

    Attributes:
        build: Keyword-only builder returning a ``PreTrainedModel`` (see the kind's module for arguments).
        encode: ``encode(tokenizer, texts_a, texts_b, max_length) -> dict[str, Tensor]`` of model inputs.
    """

    build: Callable
    encode: Callable


def build_copy_student(*, teacher_model) -> PreTrainedModel:
    """The teacher itself (float32 copy on CPU): what quantization and pruning stages start from."""
    if teacher_model is None:
        raise RecipeError("student.kind: 'copy' needs a Hugging Face teacher model to copy, not a plug-in")
    return copy.deepcopy(teacher_model).float().cpu().train()


def build_pruned_student(**kwargs) -> PreTrainedModel:
    """``student.kind: pruned``: see :func:`distilkit.prune_run.build_pruned_student`."""
    from distilkit.prune_run import build_pruned_student as build  # recipe-level module: imported on use

    return build(**kwargs)


def build_linear_attention_student(**kwargs) -> PreTrainedModel:
    """``student.kind: linear_attention``: see :func:`distilkit.linear_attention.build_linear_attention_student`."""
    from distilkit.linear_attention import build_linear_attention_student as build

    return build(**kwargs)


STUDENTS: dict[str, StudentKind] = {
    "bilstm": StudentKind(build=build_bilstm_student, encode=encode_bilstm),
    "transformer": StudentKind(build=build_transformer_student, encode=encode_transformer),
    "copy": StudentKind(build=build_copy_student, encode=encode_transformer),
    "pruned": StudentKind(build=build_pruned_student, encode=encode_transformer),
    "linear_attention": StudentKind(build=build_linear_attention_student, encode=encode_transformer),
}


def get_student_kind(name: str) -> StudentKind:
    """Look up a built-in student kind.

    Raises:
        RecipeError: ``name`` is not a built-in kind (the message lists the available ones).
    """
    if name not in STUDENTS:
        raise RecipeError(f"student.kind: unknown kind '{name}'; available: {', '.join(STUDENTS)}")
    return STUDENTS[name]


def encode_for_student(kind: str, tokenizer, texts_a: list[str], texts_b: list[str] | None,
                       max_length: int) -> dict:
    """Tokenize texts the way student ``kind`` reads them (see :class:`StudentKind`)."""
    return get_student_kind(kind).encode(tokenizer, texts_a, texts_b, max_length)


def _register_auto_classes() -> None:
    """Map ``model_type: distilkit-bilstm`` and ``distilkit-pruned-*`` to our classes; idempotent."""
    AutoConfig.register(BiLSTMConfig.model_type, BiLSTMConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification, exist_ok=True)
    for config_class, model_class in [*PRUNED_CLASSES.values(), *LINEAR_CLASSES.values()]:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModelForSequenceClassification.register(config_class, model_class, exist_ok=True)


_register_auto_classes()
