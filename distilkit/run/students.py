"""How a recipe's teacher and student are built (:func:`load_teacher`, :func:`make_student`).

The student kinds (``student.kind``) are the explicit dict :data:`distilkit.run.methods.STUDENTS`: the built-in
ones of :mod:`distilkit.models` and those the methods add (``pruned``, ``linear_attention``). Every kind builds
from ``build(spec, inputs)``, so :func:`make_student` names none.
"""

from __future__ import annotations

from accelerate import Accelerator
from transformers import AutoTokenizer

from distilkit.core.errors import RecipeError
from distilkit.core.method_spec import StudentInputs
from distilkit.core.plugins import is_plugin_path, resolve
from distilkit.data.tasks import TaskSpec, load_split
from distilkit.methods.distillation.ensemble import TeacherEnsemble
from distilkit.models.config import SentencePieceConfig, TeacherConfig
from distilkit.models.finetune import finetune_teacher
from distilkit.models.model_names import resolve_model_name
from distilkit.models.sentencepiece_checks import transfer_texts
from distilkit.models.sentencepiece_vocab import student_vocabulary
from distilkit.models.teachers import HFTeacher, load_hf_teacher, load_plugin_teacher
from distilkit.models.vocab import apply_vocab
from distilkit.run.methods import STUDENTS, get_student_kind
from distilkit.run.schema import Recipe

__all__ = ["STUDENTS", "encode_for_student", "get_student_kind", "load_teacher", "make_student"]


def encode_for_student(kind: str, tokenizer, texts_a: list[str], texts_b: list[str] | None,
                       max_length: int) -> dict:
    """Tokenize texts the way student ``kind`` reads them (:attr:`~distilkit.core.method_spec.StudentKind.encode`)."""
    return resolve(get_student_kind(kind).encode)(tokenizer, texts_a, texts_b, max_length)


def load_teacher(recipe: Recipe, task: TaskSpec, train_ds, eval_ds, accelerator: Accelerator):
    """The recipe's teacher, fine-tuned first when ``teacher.finetune`` is set, with ``teacher.adapter`` merged;
    for a list of teachers a :class:`~distilkit.methods.distillation.ensemble.TeacherEnsemble` combining them as
    ``loss.ensemble`` says."""
    if not isinstance(recipe.teacher, list):
        return load_one_teacher(recipe, recipe.teacher, task, train_ds, eval_ds, accelerator)
    members = [load_one_teacher(recipe, cfg, task, train_ds, eval_ds, accelerator) for cfg in recipe.teachers]
    return TeacherEnsemble(members, weights=recipe.teacher_weights, temperatures=recipe.teacher_temperatures,
                           mode=recipe.loss.ensemble, temperature=recipe.loss.temperature,
                           problem_type=task.problem_type, names=[cfg.model for cfg in recipe.teachers])


def load_one_teacher(recipe: Recipe, cfg: TeacherConfig, task: TaskSpec, train_ds, eval_ds,
                     accelerator: Accelerator):
    """One teacher section (``recipe.teacher`` or one member of its list), fine-tuned first when asked."""
    if is_plugin_path(cfg.model):
        return load_plugin_teacher(cfg.model, cfg.kwargs, num_labels=task.num_labels, tokenizer=cfg.tokenizer,
                                   max_length=cfg.max_length, device=accelerator.device,
                                   require_fingerprint=recipe.cache.enabled)
    model = cfg.model
    if cfg.finetune is not None:
        # The teacher learns from the labelled train split, sized by finetune.max_examples, independently of
        # the transfer set: students distilled on other transfer-set sizes then reuse the same teacher.
        limit = cfg.finetune.max_examples or recipe.data.max_train_examples
        if limit != recipe.data.max_train_examples:
            train_ds = load_split(task, recipe.data.train_split or task.train_split, data_dir=recipe.data.dir,
                                  max_examples=limit, seed=cfg.finetune.seed)
        model = str(finetune_teacher(cfg, task, train_ds, eval_ds, cache_dir=recipe.cache.dir,
                                     accelerator=accelerator))
    return load_hf_teacher(model, num_labels=task.num_labels, problem_type=task.problem_type,
                           tokenizer=None if cfg.finetune else cfg.tokenizer,
                           revision=None if cfg.finetune else cfg.revision,
                           max_length=cfg.max_length, device=accelerator.device, dtype=cfg.dtype,
                           adapter=cfg.adapter)


def make_student(recipe: Recipe, task: TaskSpec, teacher, train_rows: list[dict] | None = None):
    """Build the student and its tokenizer from ``recipe.student`` (teacher's tokenizer by default).

    ``train_rows`` (the labelled transfer set) is where a pruned student's importance scores come from, and
    whose tokens a ``student.vocab`` trimming keeps (the returned tokenizer is then the trimmed one), and whose
    texts a trained vocabulary (``student.tokenizer: {train: sentencepiece}``) is learnt from (the returned
    tokenizer is then the SentencePiece one, cached under ``cache.dir/sentencepiece``).
    """
    spec = recipe.student
    if isinstance(teacher, TeacherEnsemble):  # the first teacher's tokenizer, vocabulary and network
        teacher = teacher.members[0]
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
