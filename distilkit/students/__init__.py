"""Built-in student kinds: the one explicit dict of short names used by ``student.kind`` in recipes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import AutoConfig, AutoModelForSequenceClassification

from distilkit.errors import RecipeError
from distilkit.students.bilstm import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    build_bilstm_student,
    encode_bilstm,
)
from distilkit.students.transformer import build_transformer_student, encode_transformer


@dataclass(frozen=True)
class StudentKind:
    """How to build a student and how to turn raw texts into its inputs."""

    build: Callable
    encode: Callable


STUDENTS: dict[str, StudentKind] = {
    "bilstm": StudentKind(build=build_bilstm_student, encode=encode_bilstm),
    "transformer": StudentKind(build=build_transformer_student, encode=encode_transformer),
}


def get_student_kind(name: str) -> StudentKind:
    """Look up a built-in student kind, naming the available ones on a miss."""
    if name not in STUDENTS:
        raise RecipeError(f"student.kind: unknown kind '{name}'; available: {', '.join(STUDENTS)}")
    return STUDENTS[name]


# With distilkit installed the BiLSTM loads through the Auto classes without trust_remote_code.
try:
    AutoConfig.register(BiLSTMConfig.model_type, BiLSTMConfig)
    AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification)
except ValueError:  # already registered (module reloaded)
    pass
