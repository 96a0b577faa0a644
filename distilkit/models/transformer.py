"""Small-transformer student: the teacher's architecture with fewer (optionally narrower) layers,
optionally initialised from chosen teacher layers, as in DistilBERT (Sanh et al. 2019, which takes one
layer out of two) and the "skip" strategy of BERT-PKD (Sun et al. 2019), or from the teacher's first layers
(``bottom``: the teacher truncated to the student's depth, the plain baseline).

The student is a stock ``AutoModelForSequenceClassification`` (e.g. ``BertForSequenceClassification``),
so its ``save_pretrained`` output reloads with plain transformers and no remote code.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Literal

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel

from distilkit.core.errors import RecipeError
from distilkit.models.shared_layers import stock_config

# Config attribute names differ across the BERT family: DistilBERT says n_layers/dim/n_heads/hidden_dim.
_LAYERS = ("num_hidden_layers", "n_layers")
_WIDTH = ("hidden_size", "dim")
_HEADS = ("num_attention_heads", "n_heads")
_FFN = ("intermediate_size", "hidden_dim")
# "<anything>.layer.<i>.<rest>": BERT/RoBERTa/ELECTRA ("encoder.layer.i") and DistilBERT ("transformer.layer.i").
_LAYER_KEY = re.compile(r"^(.*?\.layer\.)(\d+)(\..*)$")


def _find(config: PreTrainedConfig, names: tuple[str, ...]) -> str:
    """The name this config family uses for a setting (first of ``names`` it serialises)."""
    fields = config.to_dict()
    return next((name for name in names if name in fields), names[0])


def _get(config: PreTrainedConfig, names: tuple[str, ...]):
    return getattr(config, _find(config, names), None)


def uniform_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers ending with the last one, e.g. 12 -> 4 gives ``[2, 5, 8, 11]``.

    Ending on the top layer keeps the representation the teacher's classifier was trained on; with more
    student than teacher layers some teacher layers repeat.
    """
    # ceil(teacher * (i + 1) / student) - 1 in integer arithmetic (no float or banker's-rounding surprises).
    return [-(-teacher_layers * (i + 1) // student_layers) - 1 for i in range(student_layers)]


def bottom_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher's first layers, e.g. 12 -> 4 gives ``[0, 1, 2, 3]``: the teacher truncated to the student's
    depth (the plain baseline a user tries first: keep the bottom of the network, fine-tune a fresh top).

    Raises:
        ValueError: the student is deeper than the teacher (there is no truncation then; use ``uniform``,
            which repeats layers, or a list).
    """
    if student_layers > teacher_layers:
        raise ValueError(f"init_from_teacher_layers: 'bottom' truncates the teacher, but the student has "
                         f"{student_layers} layers and the teacher only {teacher_layers}; use 'uniform' or a list")
    return list(range(student_layers))


def student_depth(teacher_config: PreTrainedConfig, num_layers: int | float) -> int:
    """The student's layer count: ``num_layers`` itself, or that fraction of the teacher's depth (half up, >= 1)."""
    if isinstance(num_layers, float):  # a fraction of the teacher's depth, so one recipe fits any teacher
        return max(1, int(num_layers * _get(teacher_config, _LAYERS) + 0.5))
    return num_layers


def build_transformer_student(*, teacher_config: PreTrainedConfig, num_labels: int, problem_type: str,
                              num_layers: int | float, hidden_size: int | None = None,
                              num_attention_heads: int | None = None, intermediate_size: int | None = None,
                              init_from_teacher_layers: list[int] | Literal["uniform", "bottom"] | None = None,
                              teacher_model: PreTrainedModel | None = None,
                              id2label: Mapping[int, str] | None = None) -> PreTrainedModel:
    """Build a shallower copy of the teacher's architecture.

    Args:
        teacher_config: The teacher's config (any BERT-family encoder: bert, roberta, distilbert, electra,
            ...). It is copied, never modified.
        num_labels: Outputs of the head (1 for regression).
        problem_type: ``"single_label_classification"`` or ``"regression"``.
        num_layers: Student depth, or a fraction of the teacher's (``0.25``: 6 of BERT-large's 24, 2 of
            MiniLM-L6's 6; rounded half up, at least 1).
        hidden_size: Narrower width (no layer initialisation possible then).
        num_attention_heads: Heads per layer when narrowing.
        intermediate_size: Feed-forward width when narrowing.
        init_from_teacher_layers: One teacher layer index per student layer (student layer ``j`` starts
            as teacher layer ``init[j]``), ``"uniform"`` for evenly spaced layers ending with the last, or
            ``"bottom"`` for the first ``num_layers`` teacher layers (the teacher truncated to the student's
            depth; the student may not be deeper than the teacher then).
            The teacher's embeddings and pooler are copied too; the classification head is copied only
            when the teacher has one of the same shape, else it stays freshly initialised.
        teacher_model: The teacher to copy from: a bare encoder (e.g. ``BertModel``) or a
            ``*ForSequenceClassification``. Required when ``init_from_teacher_layers`` is set.
        id2label: Class names for the student's config.

    Returns:
        A stock ``*ForSequenceClassification`` model in float32.

    Raises:
        ValueError: init requested without a teacher model, with a different width/FFN size/head count,
            with the wrong number of indices or an index out of range, or when the teacher's weights do
            not fit the student's.
    """
    config = copy.deepcopy(stock_config(teacher_config))  # a shared teacher's groups do not fit the student
    teacher_layers = _get(teacher_config, _LAYERS)
    num_layers = student_depth(teacher_config, num_layers)
    setattr(config, _find(config, _LAYERS), num_layers)
    for names, value in ((_WIDTH, hidden_size), (_HEADS, num_attention_heads), (_FFN, intermediate_size)):
        if value is not None:
            setattr(config, _find(config, names), value)
    config.architectures = None
    # Reset problem_type first: the config refuses single-label classification with one label.
    config.problem_type = None
    if id2label is not None:
        if len(id2label) != num_labels:
            raise ValueError(f"id2label has {len(id2label)} names for num_labels={num_labels}")
        config.id2label = {int(i): name for i, name in id2label.items()}
        config.label2id = {name: i for i, name in config.id2label.items()}
    else:
        config.num_labels = num_labels
    config.problem_type = problem_type
    # transformers 5 builds from_config models in config.dtype, which is the teacher's (maybe fp16) dtype;
    # students train in float32 (mixed precision is Accelerate's job).
    config.dtype = torch.float32
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    if init_from_teacher_layers is None:
        return model
    layers = _check_init(init_from_teacher_layers, teacher_model, config, teacher_config, teacher_layers,
                         num_layers)
    _copy_teacher_weights(model, teacher_model, layers)
    return model


def _check_init(init, teacher_model, config, teacher_config, teacher_layers: int, num_layers: int) -> list[int]:
    """Validate ``init_from_teacher_layers`` and resolve ``"uniform"`` and ``"bottom"`` to indices."""
    if teacher_model is None:
        raise ValueError("init_from_teacher_layers needs the teacher model (teacher_model=...)")
    for names, what in ((_WIDTH, "hidden size"), (_FFN, "FFN size"), (_HEADS, "attention heads")):
        student, teacher = _get(config, names), _get(teacher_config, names)
        if student != teacher:
            raise ValueError(f"init_from_teacher_layers needs the student to keep the teacher's hidden and FFN "
                             f"sizes and heads: {what} is {student} but the teacher's is {teacher}; "
                             f"drop the width overrides or set init_from_teacher_layers to null")
    if isinstance(init, str):
        named = {"uniform": uniform_layers, "bottom": bottom_layers}
        if init not in named:
            raise ValueError(f"init_from_teacher_layers: expected a list of layer indices, 'uniform' or 'bottom', "
                             f"got {init!r}")
        return named[init](teacher_layers, num_layers)
    layers = [int(i) for i in init]
    if len(layers) != num_layers:
        raise ValueError(f"init_from_teacher_layers has {len(layers)} indices for {num_layers} student layers")
    bad = [i for i in layers if not 0 <= i < teacher_layers]
    if bad:
        raise ValueError(f"init_from_teacher_layers {layers}: {bad} out of range for a {teacher_layers}-layer "
                         f"teacher (valid: 0..{teacher_layers - 1})")
    return layers


def _copy_teacher_weights(model: PreTrainedModel, teacher_model: PreTrainedModel, layers: list[int]) -> None:
    """Load the teacher's embeddings, chosen layers, pooler and (if it fits) head into ``model``.

    Teacher keys are mapped onto the student's names: add the base prefix when the teacher is a bare
    encoder (its keys have none), renumber ``...layer.{layers[j]}.`` to ``...layer.{j}.`` and drop the
    teacher layers nobody chose.
    """
    prefix = model.base_model_prefix + "."
    student_state = model.state_dict()
    teacher_state = teacher_model.state_dict()
    is_bare = not any(key.startswith(prefix) for key in teacher_state)
    targets: dict[int, list[int]] = {}
    for student_layer, teacher_layer in enumerate(layers):
        targets.setdefault(teacher_layer, []).append(student_layer)

    copied: dict[str, torch.Tensor] = {}
    for key, value in teacher_state.items():
        name = prefix + key if is_bare else key  # non-prefixed keys of a classifier are its head
        match = _LAYER_KEY.match(name)
        names = [name] if match is None else [
            f"{match.group(1)}{j}{match.group(3)}" for j in targets.get(int(match.group(2)), [])]
        for target in names:
            if target not in student_state:
                continue
            if student_state[target].shape != value.shape:
                if not target.startswith(prefix):
                    continue  # a head of another shape (other num_labels): keep the fresh one
                raise ValueError(f"init_from_teacher_layers: teacher weight {key} has shape {tuple(value.shape)} "
                                 f"but the student's {target} has {tuple(student_state[target].shape)}")
            copied[target] = value
    # Everything in the encoder body must come from the teacher; only the head (and a pooler the teacher
    # lacks) may stay fresh. Anything else means the teacher is not the architecture of the config.
    missing = [k for k in student_state
               if k.startswith(prefix) and k not in copied and ".pooler." not in k]
    if missing:
        raise ValueError(f"init_from_teacher_layers: the teacher model has no weights for {missing[:3]}"
                         f"{' ...' if len(missing) > 3 else ''}; is teacher_model the model of teacher_config?")
    model.load_state_dict(copied, strict=False)


def encode_transformer(tokenizer, texts_a: list[str], texts_b: list[str] | None, max_length: int) -> dict:
    """Standard pair encoding (``[CLS] a [SEP] b [SEP]``), truncated and padded to the longest in the batch.

    Args:
        tokenizer: The student's (usually the teacher's) tokenizer.
        texts_a: First sentences.
        texts_b: Second sentences, or ``None`` for single-sentence tasks.
        max_length: Maximum total length in tokens.

    Returns:
        The tokenizer's tensors (``input_ids``, ``attention_mask`` and, for BERT, ``token_type_ids``).
    """
    return dict(tokenizer(list(texts_a), None if texts_b is None else list(texts_b), truncation=True,
                          max_length=max_length, padding=True, return_tensors="pt"))


def build_copy_student(*, teacher_model) -> PreTrainedModel:
    """The teacher itself (float32 copy on CPU): what quantization and pruning stages start from."""
    if teacher_model is None:
        raise RecipeError("student.kind: 'copy' needs a Hugging Face teacher model to copy, not a plug-in")
    return copy.deepcopy(teacher_model).float().cpu().train()
