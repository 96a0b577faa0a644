"""Built-in student kinds, the one explicit dict of short names used by ``student.kind`` in recipes, and how
a recipe's student is built from it (:func:`make_student`; the teacher: :mod:`distilkit.run.teachers`).

The dict sits in the recipe layer because two of its kinds are compression methods (``pruned``,
``linear_attention``); the BiLSTM and transformer students themselves live in :mod:`distilkit.models`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from transformers import AutoConfig, AutoTokenizer

from distilkit.core.errors import RecipeError
from distilkit.data.tasks import TaskSpec
from distilkit.methods.distillation.ensemble import teacher_members
from distilkit.methods.linear_attention.swap import build_linear_attention_student
from distilkit.methods.pruning.student import build_pruned_student
from distilkit.models.bilstm import build_bilstm_student, encode_bilstm
from distilkit.models.config import SentencePieceConfig
from distilkit.models.model_names import resolve_model_name
from distilkit.models.sentencepiece_checks import transfer_texts
from distilkit.models.sentencepiece_vocab import piece_embeddings, student_vocabulary
from distilkit.models.shared_layers import layer_groups, share_layers
from distilkit.models.teachers import HFTeacher
from distilkit.models.transformer import (
    build_copy_student,
    build_transformer_student,
    encode_transformer,
    student_depth,
)
from distilkit.models.vocab import apply_vocab
from distilkit.run.schema import Recipe


@dataclass(frozen=True)
class StudentKind:
    """How to build a student and how to turn raw texts into its inputs.

    Attributes:
        build: Keyword-only builder returning a ``PreTrainedModel`` (see the kind's module for arguments).
        encode: ``encode(tokenizer, texts_a, texts_b, max_length) -> dict[str, Tensor]`` of model inputs.
    """

    build: Callable
    encode: Callable


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


def _share_groups(spec, teacher_config) -> list[list[int]] | None:
    """The student's layer groups under ``student.share_layers`` (``None`` without it), checked against its depth
    (a fractional ``num_layers`` is only known once the teacher's config is)."""
    share = getattr(spec, "share_layers", None)
    if share is None:
        return None
    depth = student_depth(teacher_config, spec.num_layers)
    try:
        groups = layer_groups(depth, share.group_size)
    except ValueError as exc:
        raise RecipeError(f"student.share_layers.group_size: {exc} (student.num_layers: {spec.num_layers} gives "
                          f"{depth})") from None
    if isinstance(share.init, list) and len(share.init) != len(groups):
        raise RecipeError(f"student.share_layers.init: {share.init} has {len(share.init)} teacher layers for "
                          f"{len(groups)} groups of {len(groups[0])} layers; give one per group")
    return groups


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
    common = {"num_labels": task.num_labels, "problem_type": task.problem_type}
    if spec.kind == "bilstm":
        embeddings = None
        if spec.init_embeddings_from_teacher and hf_teacher is not None and (trained or not spec.tokenizer):
            embeddings = hf_teacher.model.get_input_embeddings().weight.detach().float().cpu().clone()
            if trained is not None:  # each piece: the mean teacher vector of the teacher tokens it spells
                embeddings, counts = piece_embeddings(tokenizer, hf_teacher.tokenizer, embeddings,
                                                      seed=recipe.train.seed)
        model = STUDENTS["bilstm"].build(
            tokenizer=tokenizer, is_pair=task.is_pair, embedding_dim=spec.embedding_dim,
            hidden_size=spec.hidden_size, mlp_hidden_size=spec.mlp_hidden_size, dropout=spec.dropout,
            teacher_embeddings=embeddings, freeze_embeddings=spec.freeze_embeddings,
            project_embeddings=spec.init_embeddings_from_teacher == "pca", **common)
    elif spec.kind == "copy":
        model = STUDENTS["copy"].build(teacher_model=hf_teacher.model if hf_teacher else None)
    elif spec.kind == "pruned":
        model = STUDENTS["pruned"].build(spec=spec, hf_teacher=hf_teacher, task=task, rows=train_rows)
    elif spec.kind == "linear_attention":
        model = STUDENTS["linear_attention"].build(spec=spec, hf_teacher=hf_teacher, task=task)
    else:
        if hf_teacher is not None and not spec.config_from:
            teacher_config, teacher_model = hf_teacher.model.config, hf_teacher.model
        elif spec.config_from:
            teacher_config, teacher_model = AutoConfig.from_pretrained(resolve_model_name(spec.config_from)), None
        else:
            raise RecipeError("student.config_from: the teacher is a plug-in; name a base config for the student")
        init = spec.init_from_teacher_layers if teacher_model is not None else None
        groups = _share_groups(spec, teacher_config)
        if groups is not None and isinstance(spec.share_layers.init, list) and teacher_model is not None:
            # One teacher layer per group: every layer of group g starts as teacher layer init[g].
            init = [spec.share_layers.init[g] for g, group in enumerate(groups) for _ in group]
        model = STUDENTS["transformer"].build(
            teacher_config=teacher_config, num_layers=spec.num_layers, hidden_size=spec.hidden_size,
            num_attention_heads=spec.num_attention_heads, intermediate_size=spec.intermediate_size,
            init_from_teacher_layers=init, teacher_model=teacher_model, **common)
        if groups is not None:
            # Averaging fresh random layers would shrink their variance by the group size: without teacher
            # layers a group's block is its first layer.
            how = "average" if spec.share_layers.init == "average" and init is not None else "first"
            try:
                model = share_layers(model, spec.share_layers.group_size, how)
            except ValueError as exc:  # an architecture without a shared class (e.g. ELECTRA)
                raise RecipeError(f"student.share_layers: {exc}") from None
    if trained is not None:  # recorded in config.json and metrics.json, as vocabulary trimming is
        model.config.distilkit_vocab = {"trained": trained.train, "model_type": trained.model_type,
                                        "pieces": len(tokenizer), "vocab_size": trained.vocab_size}
        if spec.init_embeddings_from_teacher and hf_teacher is not None:
            model.config.distilkit_vocab["from_teacher"] = counts["from_teacher"]
    if task.label_names:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    if getattr(spec, "vocab", None) is not None and train_rows:  # last: it picks among built rows
        tokenizer = apply_vocab(spec.vocab, model, tokenizer, train_rows)
    return model, tokenizer
