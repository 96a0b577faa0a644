"""The builders of the built-in student kinds (``bilstm``, ``transformer``, ``copy``) from their recipe section.

Every kind's builder takes the same two arguments, ``build(spec, inputs)``
(:class:`distilkit.core.method_spec.StudentKind`), so :func:`distilkit.run.students.make_student` builds any
kind without naming it. The networks themselves live in :mod:`distilkit.models.bilstm`,
:mod:`distilkit.models.transformer` and :mod:`distilkit.models.shared_layers`.
"""

from __future__ import annotations

from transformers import AutoConfig

from distilkit.core.errors import RecipeError
from distilkit.core.method_spec import StudentInputs
from distilkit.models.bilstm_build import build_bilstm_student
from distilkit.models.config import SentencePieceConfig
from distilkit.models.model_names import resolve_model_name
from distilkit.models.sentencepiece_vocab import piece_embeddings
from distilkit.models.shared_layers import layer_groups, share_layers
from distilkit.models.transformer import build_copy_student, build_transformer_student, student_depth


def _labels(inputs: StudentInputs) -> dict:
    return {"num_labels": inputs.task.num_labels, "problem_type": inputs.task.problem_type}


def build_bilstm(spec, inputs: StudentInputs):
    """Tang et al.'s BiLSTM; its word vectors start from the teacher's (each trained piece: the mean vector of the
    teacher tokens it spells) unless ``init_embeddings_from_teacher: false`` or a named tokenizer of its own."""
    teacher, tokenizer = inputs.teacher, inputs.tokenizer
    trained = spec.tokenizer if isinstance(spec.tokenizer, SentencePieceConfig) else None
    embeddings, counts = None, None
    if spec.init_embeddings_from_teacher and teacher is not None and (trained or not spec.tokenizer):
        embeddings = teacher.model.get_input_embeddings().weight.detach().float().cpu().clone()
        if trained is not None:
            embeddings, counts = piece_embeddings(tokenizer, teacher.tokenizer, embeddings, seed=inputs.seed)
    model = build_bilstm_student(
        tokenizer=tokenizer, is_pair=inputs.task.is_pair, embedding_dim=spec.embedding_dim,
        hidden_size=spec.hidden_size, mlp_hidden_size=spec.mlp_hidden_size, dropout=spec.dropout,
        teacher_embeddings=embeddings, freeze_embeddings=spec.freeze_embeddings,
        project_embeddings=spec.init_embeddings_from_teacher == "pca", pooling=spec.pooling, **_labels(inputs))
    if trained is not None:  # recorded in config.json and metrics.json, as vocabulary trimming is
        model.config.distilkit_vocab = {"trained": trained.train, "model_type": trained.model_type,
                                        "pieces": len(tokenizer), "vocab_size": trained.vocab_size}
        if counts is not None:
            model.config.distilkit_vocab["from_teacher"] = counts["from_teacher"]
    return model


def build_copy(spec, inputs: StudentInputs):
    """The teacher itself (same architecture and weights)."""
    return build_copy_student(teacher_model=inputs.teacher.model if inputs.teacher else None)


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


def build_transformer(spec, inputs: StudentInputs):
    """A shallower (optionally narrower) copy of the teacher's architecture, its layers picked from the teacher's;
    with ``share_layers``, ALBERT's cross-layer sharing of those layers."""
    teacher = inputs.teacher
    if teacher is not None and not spec.config_from:
        teacher_config, teacher_model = teacher.model.config, teacher.model
    elif spec.config_from:
        teacher_config, teacher_model = AutoConfig.from_pretrained(resolve_model_name(spec.config_from)), None
    else:
        raise RecipeError("student.config_from: the teacher is a plug-in; name a base config for the student")
    init = spec.init_from_teacher_layers if teacher_model is not None else None
    groups = _share_groups(spec, teacher_config)
    if groups is not None and isinstance(spec.share_layers.init, list) and teacher_model is not None:
        # One teacher layer per group: every layer of group g starts as teacher layer init[g].
        init = [spec.share_layers.init[g] for g, group in enumerate(groups) for _ in group]
    model = build_transformer_student(
        teacher_config=teacher_config, num_layers=spec.num_layers, hidden_size=spec.hidden_size,
        num_attention_heads=spec.num_attention_heads, intermediate_size=spec.intermediate_size,
        init_from_teacher_layers=init, teacher_model=teacher_model, **_labels(inputs))
    if groups is not None:
        # Averaging fresh random layers would shrink their variance by the group size: without teacher
        # layers a group's block is its first layer.
        how = "average" if spec.share_layers.init == "average" and init is not None else "first"
        try:
            model = share_layers(model, spec.share_layers.group_size, how)
        except ValueError as exc:  # an architecture without a shared class (e.g. ELECTRA)
            raise RecipeError(f"student.share_layers: {exc}") from None
    return model
