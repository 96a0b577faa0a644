"""``student.kind: pruned``: what structural pruning removes (:mod:`distilkit.methods.pruning`), and the
``student.blocks`` subsection of block pruning during training (:mod:`distilkit.methods.pruning.blocks`).

Free of torch: preflight checks block sizes against a teacher's ``config.json`` with
:func:`block_problems` before any model is loaded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilkit.core.sections import Section
from distilkit.models.config import VocabConfig


class BlockPruningConfig(Section):
    """Block pruning while the student distils (Lagunas et al. 2021, "Block Pruning For Faster Transformers";
    :mod:`distilkit.methods.pruning.blocks`): ``sparsity`` of the rows, columns or ``size x size`` blocks of
    the attention and FFN weights go to zero on Zhu & Gupta's cubic schedule, ranked by ``magnitude`` (block
    L2 norm) or ``movement`` (Sanh et al. 2020: accumulated ``-W * dL/dW``). After training, heads and FFN
    neurons left empty are removed structurally (real speed); other pruned blocks stay as zeros.
    """

    granularity: Literal["rows", "columns", "blocks"]
    """``rows``: output rows of query/key/value and the FFN's first projection (head dimensions, neurons);
    ``columns``: input columns of the attention output and the FFN's second projection (the same units seen
    from the other side); ``blocks``: ``size x size`` tiles of all six matrices."""
    size: int | None = Field(default=None, gt=0)
    """``blocks`` only: the side of the square tiles; it must divide both dimensions of every pruned weight."""
    score: Literal["magnitude", "movement"] = "movement"
    sparsity: float = Field(ge=0, lt=1)
    """Fraction of the units (rows, columns or blocks) removed at the end of the schedule."""
    scope: Literal["layer", "global"] = "layer"
    """``layer``: every weight matrix loses the same fraction; ``global``: units of all matrices ranked together."""
    parts: list[Literal["attention", "ffn"]] = Field(default_factory=lambda: ["attention", "ffn"], min_length=1)
    start: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of training steps before pruning starts (movement scores accumulate from the first step)."""
    end: float = Field(default=0.75, gt=0, le=1)
    """Fraction of training steps at which ``sparsity`` is reached; the rest recovers by distillation."""
    every: int = Field(default=10, gt=0)
    """Steps between mask updates."""

    @model_validator(mode="after")
    def _consistent(self):
        if self.granularity == "blocks" and self.size is None:
            raise ValueError("granularity 'blocks' needs size (the side of the square blocks, e.g. 32)")
        if self.granularity != "blocks" and self.size is not None:
            raise ValueError(f"size applies to granularity 'blocks' only; drop it for '{self.granularity}'")
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must come after start ({self.start})")
        if len(set(self.parts)) != len(self.parts):
            raise ValueError(f"parts lists a part twice: {self.parts}")
        return self


#: ``model_type`` values structural and block pruning handle (checked in preflight from ``config.json``); a
#: twin is another family's network under another name (XLM-R is RoBERTa with a SentencePiece vocabulary).
#: ``pruned.py`` keeps its own copies (it is remote code); a test holds them equal.
MODEL_TYPE_TWINS = {"xlm-roberta": "roberta"}
PRUNABLE_MODEL_TYPES = ("bert", "roberta", "distilbert", *MODEL_TYPE_TWINS)

# family -> (prefix of the encoder layers, {role: module path inside a layer}); the names ``named_parameters``
# gives a stock or pruned sequence classifier, so preflight names the same weight the run would.
_LAYOUT = {
    "bert": ("bert.encoder.layer", {"query": "attention.self.query", "attention output": "attention.output.dense",
                                    "intermediate": "intermediate.dense", "output": "output.dense"}),
    "roberta": ("roberta.encoder.layer", {"query": "attention.self.query",
                                          "attention output": "attention.output.dense",
                                          "intermediate": "intermediate.dense", "output": "output.dense"}),
    "distilbert": ("distilbert.transformer.layer", {"query": "attention.q_lin", "attention output": "attention.out_lin",
                                                    "intermediate": "ffn.lin1", "output": "ffn.lin2"}),
}


def _layer_shapes(config: dict) -> tuple[str, list[tuple[int, int, int]]] | None:
    """``(family, [(hidden, attention width, intermediate width) per layer])`` from a ``config.json``."""
    family = str(config.get("model_type", "")).removeprefix("distilkit-pruned-")
    family = MODEL_TYPE_TWINS.get(family, family)
    if family not in _LAYOUT:
        return None
    if family == "distilbert":
        hidden, heads, width, layers = config["dim"], config["n_heads"], config["hidden_dim"], config["n_layers"]
    else:
        hidden, heads = config["hidden_size"], config["num_attention_heads"]
        width, layers = config["intermediate_size"], config["num_hidden_layers"]
    head_size = hidden // heads
    recorded = config.get("distilkit_pruning") or {}
    counts = recorded.get("heads") or [heads] * layers
    widths = recorded.get("intermediate_sizes") or [width] * layers
    return family, [(hidden, n * head_size, w) for n, w in zip(counts, widths)]


def block_problems(blocks: BlockPruningConfig, epochs: int, model_config: dict | None = None) -> list[str]:
    """What makes ``student.blocks`` unusable before anything runs, one message per problem.

    Args:
        blocks: The validated subsection.
        epochs: ``train.epochs``; 0 prunes once, by magnitude, as the student is built.
        model_config: The ``config.json`` of the model pruned (the teacher, or ``student.start_from``) to check
            that ``size`` divides every pruned weight; ``None`` skips that check (the run makes it again on the
            built student, before training).
    """
    problems = []
    if epochs == 0 and blocks.score == "movement":
        problems.append("student.blocks.score: 'movement' accumulates -W * dL/dW over training steps but "
                        "train.epochs is 0; use score: magnitude for one-shot block pruning")
    if blocks.granularity != "blocks" or model_config is None:
        return problems
    try:
        shapes = _layer_shapes(model_config)
    except (KeyError, TypeError, ZeroDivisionError):  # a damaged config: the run names it when it loads the model
        return problems
    if shapes is None:
        return problems
    family, layers = shapes
    prefix, paths = _LAYOUT[family]
    roles = ([("query", 1, 0), ("attention output", 0, 1)] if "attention" in blocks.parts else []) + \
        ([("intermediate", 2, 0), ("output", 0, 2)] if "ffn" in blocks.parts else [])
    for role, rows, cols in roles:  # (rows, cols) index (hidden, attention width, intermediate width)
        for i, dims in enumerate(layers):
            shape = (dims[rows], dims[cols])
            if shape[0] % blocks.size or shape[1] % blocks.size:
                problems.append(f"student.blocks.size: {blocks.size} does not divide "
                                f"{prefix}.{i}.{paths[role]}.weight ({shape[0]} x {shape[1]})")
                break  # one line per kind of weight: the other layers repeat it
    return problems


class PrunedStudentConfig(Section):
    """The teacher itself, structurally pruned, then recovered by distillation (``distilkit.methods.pruning``).

    Targets count from the unpruned teacher: ``heads: 0.4`` removes 40% of all its attention heads (ranked
    globally by Michel et al. 2019 importance), ``ffn`` a fraction of FFN neurons (Taylor importance),
    ``layers`` whole blocks (drop-one importance), ``max_params`` prunes heads and neurons until the model
    fits. ``rounds > 1`` reaches the targets in equal steps, each recovered by ``train.epochs`` of
    distillation from the unpruned teacher (iterative pruning); ``train.epochs: 0`` is one-shot pruning
    without recovery.
    """

    kind: Literal["pruned"]
    tokenizer: str | None = None
    max_length: int = Field(default=128, gt=0)
    heads: float = Field(default=0.0, ge=0, le=1)
    ffn: float = Field(default=0.0, ge=0, le=1)
    layers: int = Field(default=0, ge=0)
    max_params: int | None = Field(default=None, gt=0)
    rounds: int = Field(default=1, gt=0)
    importance_examples: int = Field(default=256, gt=0)
    """Transfer-set examples the importance scores are computed on (labels: gold, else the teacher's)."""
    importance_batch_size: int = Field(default=32, gt=0)
    start_from: str | None = None
    """Prune this saved model instead of a copy of the teacher (set by iterative rounds)."""
    round_fraction: float = Field(default=1.0, gt=0, le=1)
    """Fraction of the way to the targets this run goes (set by iterative rounds: r / rounds)."""
    vocab: VocabConfig | None = None
    """Trim the vocabulary to the transfer set's tokens after pruning (iterative: in the last round)."""
    blocks: BlockPruningConfig | None = None
    """Block pruning during the recovery distillation (after any heads/ffn/layers pruned up front)."""

    @model_validator(mode="after")
    def _targets(self):
        if not (self.heads or self.ffn or self.layers or self.max_params or self.blocks):
            raise ValueError("nothing to prune: set heads, ffn, layers, max_params and/or blocks")
        if self.blocks is not None and self.rounds > 1:
            raise ValueError("blocks prune during one run's training; use rounds: 1 (the cubic schedule is "
                             "already gradual)")
        return self
