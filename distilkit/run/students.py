"""How a recipe's student is built (:func:`make_student`; the teacher: :mod:`distilkit.run.teachers`).

The student kinds (``student.kind``) are the explicit dict :data:`distilkit.run.methods.STUDENTS`: the built-in
ones of :mod:`distilkit.models` and those the methods add (``pruned``, ``linear_attention``). Every kind builds
from ``build(spec, inputs)``, so :func:`make_student` names none.
"""

from __future__ import annotations

from transformers import AutoTokenizer

from distilkit.core.errors import RecipeError
from distilkit.core.method_spec import StudentInputs
from distilkit.core.plugins import resolve
from distilkit.data.tasks import TaskSpec
from distilkit.methods.distillation.ensemble import teacher_members
from distilkit.models.config import SentencePieceConfig
from distilkit.models.model_names import resolve_model_name
from distilkit.models.sentencepiece_checks import transfer_texts
from distilkit.models.sentencepiece_vocab import student_vocabulary
from distilkit.models.teachers import HFTeacher
from distilkit.models.vocab import apply_vocab
from distilkit.run.methods import STUDENTS, get_student_kind
from distilkit.run.schema import Recipe

__all__ = ["STUDENTS", "encode_for_student", "get_student_kind", "make_student"]


def encode_for_student(kind: str, tokenizer, texts_a: list[str], texts_b: list[str] | None,
                       max_length: int) -> dict:
    """Tokenize texts the way student ``kind`` reads them (:attr:`~distilkit.core.method_spec.StudentKind.encode`)."""
    return resolve(get_student_kind(kind).encode)(tokenizer, texts_a, texts_b, max_length)


def make_student(recipe: Recipe, task: TaskSpec, teacher, train_rows: list[dict] | None = None):
    """Build the student and its tokenizer from ``recipe.student`` (teacher's tokenizer by default).

    ``train_rows`` (the labelled transfer set) is where a pruned student's importance scores come from, and
    whose tokens a ``student.vocab`` trimming keeps (the returned tokenizer is then the trimmed one), and whose
    texts a trained vocabulary (``student.tokenizer: {train: sentencepiece}``) is learnt from (the returned
    tokenizer is then the SentencePiece one, cached under ``cache.dir/sentencepiece``).
    """
    spec = recipe.student
    teacher = teacher_members(teacher)[0]  # an ensemble: the first teacher's tokenizer, vocabulary and network
    hf_teacher = teacher if isinstance(teacher, HFTeacher) else None
    trained = spec.tokenizer if isinstance(spec.tokenizer, SentencePieceConfig) else None
    if trained is not None:  # a vocabulary of the student's own, learnt from the transfer set's texts
        if not train_rows:
            raise RecipeError("student.tokenizer: a trained vocabulary needs the transfer set's texts")
        cache_dir = recipe.cache.dir if recipe.cache.enabled else None
        tokenizer = student_vocabulary(transfer_texts(train_rows), trained, seed=recipe.train.seed,
                                       cache_dir=cache_dir, model_max_length=spec.max_length)
    elif spec.tokenizer:  # short names (minilm) resolve through the same alias table as teacher.model
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_name(spec.tokenizer))
    elif hf_teacher is not None:
        tokenizer = hf_teacher.tokenizer
    else:
        raise RecipeError("student.tokenizer: the teacher is a plug-in without a Hugging Face tokenizer; name one")
    inputs = StudentInputs(task=task, teacher=hf_teacher, tokenizer=tokenizer, rows=train_rows, seed=recipe.train.seed)
    model = resolve(get_student_kind(spec.kind).build)(spec, inputs)
    if task.label_names:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    if getattr(spec, "vocab", None) is not None and train_rows:  # last: it picks among built rows
        tokenizer = apply_vocab(spec.vocab, model, tokenizer, train_rows)
    return model, tokenizer
