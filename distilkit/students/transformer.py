"""Small-transformer student: the teacher's architecture with fewer layers, optionally initialised from
chosen teacher layers (the "skip" initialisation of PKD, Sun et al. 2019, and DistilBERT, Sanh et al. 2019).

The student is a stock ``AutoModelForSequenceClassification`` (e.g. ``BertForSequenceClassification``), so
its ``save_pretrained`` output reloads with plain transformers, no remote code.
"""

from __future__ import annotations

import re
from typing import Literal

from transformers import AutoModelForSequenceClassification, PreTrainedConfig, PreTrainedModel

# Config attribute names differ across the BERT family (DistilBERT says n_layers/dim/n_heads/hidden_dim).
_LAYERS = ("num_hidden_layers", "n_layers")
_WIDTH = ("hidden_size", "dim")
_HEADS = ("num_attention_heads", "n_heads")
_FFN = ("intermediate_size", "hidden_dim")
_LAYER_KEY = re.compile(r"^(.*?\.layer\.)(\d+)(\..*)$")


def _set(config: PreTrainedConfig, names: tuple[str, ...], value) -> None:
    for name in names:
        if name in config.to_dict():
            setattr(config, name, value)
            return
    setattr(config, names[0], value)


def _get(config: PreTrainedConfig, names: tuple[str, ...]):
    data = config.to_dict()
    return next(data[name] for name in names if name in data)


def uniform_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Evenly spaced teacher layers ending with the last one, e.g. 12 -> 4: [2, 5, 8, 11]."""
    step = teacher_layers / student_layers
    return [round(step * (i + 1)) - 1 for i in range(student_layers)]


def build_transformer_student(*, teacher_config: PreTrainedConfig, num_labels: int, problem_type: str,
                              num_layers: int, hidden_size: int | None = None,
                              num_attention_heads: int | None = None, intermediate_size: int | None = None,
                              init_from_teacher_layers: list[int] | Literal["uniform"] | None = None,
                              teacher_model: PreTrainedModel | None = None) -> PreTrainedModel:
    """Build a shallower copy of the teacher.

    Args:
        teacher_config: The teacher's config (any BERT-family encoder).
        num_labels: Outputs of the head (1 for regression).
        problem_type: ``single_label_classification`` or ``regression``.
        num_layers: Student depth.
        hidden_size, num_attention_heads, intermediate_size: Optional narrower widths (no layer init then).
        init_from_teacher_layers: Teacher layer indices to copy (one per student layer) or ``"uniform"``.
        teacher_model: The teacher (bare encoder or classifier) to copy weights from.

    Raises:
        ValueError: init requested with a different width, wrong number of indices, or an index out of range.
    """
    config = teacher_config.__class__.from_dict(teacher_config.to_dict())
    teacher_layers = _get(teacher_config, _LAYERS)
    _set(config, _LAYERS, num_layers)
    for names, value in ((_WIDTH, hidden_size), (_HEADS, num_attention_heads), (_FFN, intermediate_size)):
        if value is not None:
            _set(config, names, value)
    config.num_labels, config.problem_type = num_labels, problem_type
    config.architectures = None
    model = AutoModelForSequenceClassification.from_config(config)
    if init_from_teacher_layers is None:
        return model
    if teacher_model is None:
        raise ValueError("init_from_teacher_layers needs the teacher model")
    if _get(config, _WIDTH) != _get(teacher_config, _WIDTH) or _get(config, _FFN) != _get(teacher_config, _FFN):
        raise ValueError("init_from_teacher_layers needs the student to keep the teacher's hidden and FFN sizes")
    layers = (uniform_layers(teacher_layers, num_layers) if init_from_teacher_layers == "uniform"
              else list(init_from_teacher_layers))
    if len(layers) != num_layers:
        raise ValueError(f"init_from_teacher_layers has {len(layers)} indices for {num_layers} student layers")
    if any(not 0 <= i < teacher_layers for i in layers):
        raise ValueError(f"init_from_teacher_layers {layers} out of range for a {teacher_layers}-layer teacher")

    # Map teacher keys onto the student's names: strip the teacher's base prefix (a bare encoder has none),
    # renumber the chosen layers, drop the rest.
    prefix = model.base_model_prefix + "."
    student_state = model.state_dict()
    teacher_state = teacher_model.state_dict()
    teacher_prefix = prefix if any(k.startswith(prefix) for k in teacher_state) else ""
    new_index = {t: s for s, t in enumerate(layers)}
    copied = {}
    for key, value in teacher_state.items():
        if teacher_prefix and not key.startswith(teacher_prefix):
            name = key  # the teacher's own head (classifier, pre_classifier)
        else:
            name = prefix + key[len(teacher_prefix):]
        match = _LAYER_KEY.match(name)
        if match:
            layer = int(match.group(2))
            if layer not in new_index:
                continue
            name = f"{match.group(1)}{new_index[layer]}{match.group(3)}"
        if name in student_state and student_state[name].shape == value.shape:
            copied[name] = value
    model.load_state_dict(copied, strict=False)
    return model


def encode_transformer(tokenizer, texts_a: list[str], texts_b: list[str] | None, max_length: int) -> dict:
    """Standard pair encoding (``[CLS] a [SEP] b [SEP]``), padded to the longest in the batch."""
    return dict(tokenizer(list(texts_a), None if texts_b is None else list(texts_b), truncation=True,
                          max_length=max_length, padding=True, return_tensors="pt"))
