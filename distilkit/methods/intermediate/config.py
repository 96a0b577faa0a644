"""The recipe's ``intermediate:`` section: intermediate-layer distillation (:mod:`distilkit.methods.intermediate`).

Free of torch, so that ``distilkit validate`` and preflight read it without importing a model library.

Layer maps (``layer_map``) pair 0-based *transformer layers* ``[student, teacher]``: layer ``i`` is the output
of block ``i``, i.e. ``hidden_states[i + 1]`` of a Hugging Face forward (``hidden_states[0]`` is the
embedding output, which the ``embedding`` term reads). ``uniform`` pairs student layer ``j`` of ``M`` with
teacher layer ``ceil(N (j + 1) / M) - 1`` of ``N`` (TinyBERT's ``g(m) = m N / M``: 6 -> 2 gives
``[[0, 2], [1, 5]]``), the same layers ``student.init_from_teacher_layers: uniform`` copies; ``last`` pairs
the last student layer with the last teacher layer (MiniLM). Maps pair layers by depth whatever the student was
initialised from (with ``init_from_teacher_layers: bottom``, the pairs ``[[j, j], ...]`` keep each student layer
learning from the teacher layer it started as).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, field_validator, model_validator

from distilkit.core.sections import Section

LayerMap = Literal["uniform", "last"] | list[tuple[NonNegativeInt, NonNegativeInt]]


def _pairs(value):
    if isinstance(value, list) and not value:
        raise ValueError("an empty list pairs no layers; give [[student, teacher], ...], 'uniform' or 'last'")
    return value


class HiddenTerm(Section):
    """Hidden states of mapped layers (TinyBERT, Jiao et al. 2020, eq. 8; DistilBERT's cosine loss)."""

    weight: float = Field(default=1.0, gt=0)
    layer_map: LayerMap = "uniform"
    """``uniform``, ``last`` or explicit ``[[student, teacher], ...]`` (0-based transformer layers)."""
    loss: Literal["mse", "cosine"] = "mse"
    """``mse``: TinyBERT's ``MSE(H_S W_h, H_T)``; ``cosine``: DistilBERT's ``1 - cos(H_S W_h, H_T)`` per token."""
    _check_pairs = field_validator("layer_map")(_pairs)


class AttentionTerm(Section):
    """Self-attention distributions of mapped layers, KL(teacher || student) (MiniLM, Wang et al. 2020, eq. 6)."""

    weight: float = Field(default=1.0, gt=0)
    layer_map: LayerMap = "last"
    """``last`` (MiniLM's choice: the student is free in depth), ``uniform`` or explicit pairs."""
    _check_pairs = field_validator("layer_map")(_pairs)


class ValueRelationTerm(Section):
    """MiniLM's value relation of the last layers, KL of ``softmax(V V^T / sqrt(d_r))`` (Wang et al. 2020,
    eq. 7-9)."""

    weight: float = Field(default=1.0, gt=0)
    relation_heads: int | None = Field(default=None, gt=0)
    """The value vectors of both models are split into this many relation heads (MiniLM v2's relation heads),
    so a student with another head count or width still compares head for head; default: the teacher's head
    count. It must divide the value width of both last layers (checked in preflight and before training)."""


class EmbeddingTerm(Section):
    """The embedding-layer output (``hidden_states[0]``), ``MSE(E_S W_e, E_T)`` (TinyBERT, eq. 9)."""

    weight: float = Field(default=1.0, gt=0)


class ClsTerm(Section):
    """Patient distillation of the normalised ``[CLS]`` states of mapped layers (BERT-PKD, Sun et al. 2019, eq. 3)."""

    weight: float = Field(default=1.0, gt=0)
    layer_map: LayerMap = "uniform"
    """Which student layer's ``[CLS]`` learns from which teacher layer's (PKD-skip: ``uniform``)."""
    _check_pairs = field_validator("layer_map")(_pairs)


class StagesConfig(Section):
    """TinyBERT's two-stage schedule (Jiao et al. 2020, section 3.2): intermediate layers first, then logits."""

    intermediate_fraction: float = Field(gt=0, lt=1)
    """The first ``round(fraction * total_steps)`` optimizer steps train the intermediate terms alone (the logit
    loss weighs 0 and those evaluations do not compete for the best model); the rest train the logit loss
    alone (no teacher forward for the inside then)."""


class IntermediateConfig(Section):
    """Intermediate-layer distillation of a transformer student (``distilkit.methods.intermediate``): each term
    given is added, weighted, to the logit loss and logged as ``train/<term>``."""

    hidden: HiddenTerm | None = None
    attention: AttentionTerm | None = None
    value_relation: ValueRelationTerm | None = None
    embedding: EmbeddingTerm | None = None
    cls: ClsTerm | None = None
    stages: StagesConfig | None = None
    """Absent: every term and the logit loss train together on every step."""
    projection: Literal["drop", "keep"] = "drop"
    """Learned projections (student width -> teacher width, for ``hidden``, ``embedding`` and ``cls`` when the
    widths differ) are training-only modules: ``drop`` saves the student without them (a stock model);
    ``keep`` writes them into ``model.safetensors`` too, as ``distilkit_intermediate.<term>.weight/bias``
    (ignored when the model is loaded with ``from_pretrained``; read them with
    :func:`distilkit.methods.intermediate.projection.saved_projections`)."""

    @model_validator(mode="after")
    def _some_term(self):
        if not self.terms():
            raise ValueError("no term: give at least one of hidden, attention, value_relation, embedding, cls")
        return self

    def terms(self) -> list[str]:
        """The names of the terms the section switches on, in a fixed order."""
        return [name for name in TERMS if getattr(self, name) is not None]


#: Every term, in the order they are computed and logged.
TERMS = ("hidden", "attention", "value_relation", "embedding", "cls")

#: Terms that compare per-token hidden vectors and may need a projection when the widths differ.
PROJECTED_TERMS = ("hidden", "embedding", "cls")

#: Terms that read the attention module (its probabilities or its value vectors).
ATTENTION_TERMS = ("attention", "value_relation")
