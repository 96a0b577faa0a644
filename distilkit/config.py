"""Recipe files: the typed schema (loading, overrides and validation: :mod:`distilkit.recipe_io`).

A recipe holds *values* only. Plug-ins (a custom teacher) are dotted import paths such as
``my_pkg.teachers:MyTeacher``; the built-in short names live in explicit dicts
(:data:`distilkit.students.STUDENTS`, :data:`distilkit.teachers.TEACHER_ALIASES`).

Unknown keys fail loudly, naming the file and the dotted key, with a "did you mean" hint, in the spirit of
llm-compressor's pydantic modifiers: a typo in ``train.epocs`` must never silently train with defaults.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(Section):
    """Teacher-labelled transfer set built with Tang et al. (2019) rules, section 3.3 (``distilkit.augment``)."""

    p_mask: float = Field(default=0.1, ge=0, le=1)
    """Per-word probability of masking."""
    p_pos: float = Field(default=0.1, ge=0, le=1)
    """Per-word probability of POS-guided replacement."""
    p_ng: float = Field(default=0.25, ge=0, le=1)
    """Per-sample probability of keeping only a random n-gram."""
    max_ngram: int = Field(default=5, gt=0)
    n_iter: int | None = Field(default=None, gt=0)
    """Samples per example; default 20, or 10 for pair tasks with more than 100k examples."""
    pair_mode: Literal["rotate", "a", "b", "both"] = "rotate"
    """Which sentence of a pair the rules modify; ``rotate`` cycles a, b, both."""
    keep_original: bool = True
    seed: int = 0
    tagger: str = "auto"
    """``auto`` (installed spaCy English pipeline), ``spacy:<pipeline>`` or ``pkg.module:Callable``."""
    mask_token: str | None = None
    """Defaults to the teacher tokenizer's mask token (``[MASK]`` for BERT)."""

    @model_validator(mode="after")
    def _rates(self):
        if self.p_mask + self.p_pos > 1:
            raise ValueError(f"p_mask + p_pos must be <= 1 (got {self.p_mask} + {self.p_pos})")
        return self


class DataConfig(Section):
    """Where the task's examples come from."""

    dir: str | None = None
    """Root of the original GLUE TSV layout (``SST-2/train.tsv`` ...). ``None`` reads the task's Hub dataset."""
    max_train_examples: int | None = Field(default=None, gt=0)
    """Deterministic random subset of the training split (handy on CPU)."""
    max_eval_examples: int | None = Field(default=None, gt=0)
    train_split: str | None = None
    """Defaults to the task's ``train_split``."""
    eval_splits: list[str] | None = None
    """Defaults to the task's ``eval_splits``; the first one selects the best checkpoint."""
    labels: Literal["gold", "none"] = "gold"
    """``none`` drops gold labels from the training data: the student learns from teacher logits only."""
    augment: AugmentConfig | None = None
    """Replace the transfer set by a Tang et al. augmented one, labelled by the teacher (issue 3)."""


class FinetuneConfig(Section):
    """Fine-tune the teacher on the task before distilling (e.g. a bare pretrained encoder)."""

    epochs: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=32, gt=0)
    lr: float = Field(default=5e-5, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    max_length: int = Field(default=128, gt=0)
    max_examples: int | None = Field(default=None, gt=0)
    """Fine-tune on this many examples of the labelled train split (default: ``data.max_train_examples``).

    Independent of the transfer set, so several students can share one fine-tuned teacher."""
    seed: int = 42


class TeacherConfig(Section):
    """The model whose logits the student learns from."""

    model: str
    """A Hub id, a local directory, a short name from ``TEACHER_ALIASES`` or ``package.module:Callable``."""
    tokenizer: str | None = None
    """Defaults to ``model``. Teacher and student tokenizers are independent."""
    revision: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for a plug-in callable."""
    max_length: int = Field(default=128, gt=0)
    batch_size: int = Field(default=64, gt=0)
    finetune: FinetuneConfig | None = None


class VocabConfig(Section):
    """Vocabulary trimming (``distilkit.vocab``): keep only the word-embedding rows and WordPiece tokens the
    transfer set uses, plus special tokens and printable-ASCII characters (so ASCII words never become
    ``[UNK]``). The saved tokenizer holds exactly the kept tokens."""

    max_tokens: int | None = Field(default=None, gt=0)
    """Size of the kept vocabulary, always-kept tokens included; ``None`` keeps every token seen
    ``min_count`` times. The most frequent transfer-set tokens fill the room."""
    min_count: int = Field(default=1, gt=0)
    """Fewest transfer-set occurrences for a token to be kept."""


class BiLSTMStudentConfig(Section):
    """Tang et al. 2019 BiLSTM student (siamese for sentence pairs)."""

    kind: Literal["bilstm"]
    tokenizer: str | None = None
    """Defaults to the teacher's tokenizer."""
    max_length: int = Field(default=128, gt=0)
    embedding_dim: int = Field(default=300, gt=0)
    hidden_size: int = Field(default=300, gt=0)
    mlp_hidden_size: int = Field(default=400, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    init_embeddings_from_teacher: bool | Literal["pca"] = True
    """Initialise word embeddings from the teacher's (our offline stand-in for word2vec); ``true`` keeps
    the teacher's width (``embedding_dim`` is ignored), ``pca`` projects the rows onto their top
    ``embedding_dim`` principal components (a small student without random word vectors)."""
    freeze_embeddings: bool = False
    vocab: VocabConfig | None = None
    """Trim the vocabulary to the transfer set's tokens (BERT WordPiece tokenizers)."""


class TransformerStudentConfig(Section):
    """A shallower (optionally narrower) copy of the teacher's architecture."""

    kind: Literal["transformer"]
    tokenizer: str | None = None
    max_length: int = Field(default=128, gt=0)
    num_layers: int = Field(default=4, gt=0)
    hidden_size: int | None = Field(default=None, gt=0)
    num_attention_heads: int | None = Field(default=None, gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    init_from_teacher_layers: list[int] | Literal["uniform"] | None = "uniform"
    config_from: str | None = None
    """Base config (Hub id or path) when the teacher is a plug-in without a Hugging Face config."""
    vocab: VocabConfig | None = None
    """Trim the vocabulary to the transfer set's tokens (BERT WordPiece tokenizers)."""


class PrunedStudentConfig(Section):
    """The teacher itself, structurally pruned, then recovered by distillation (``distilkit.prune``).

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

    @model_validator(mode="after")
    def _targets(self):
        if not (self.heads or self.ffn or self.layers or self.max_params):
            raise ValueError("nothing to prune: set heads, ffn, layers and/or max_params")
        return self


class CopyStudentConfig(Section):
    """The teacher itself, same architecture and weights: the starting point of quantization stages
    (post-training with ``train.epochs: 0``, or quantization-aware distillation from the float teacher)."""

    kind: Literal["copy"]
    tokenizer: str | None = None
    max_length: int = Field(default=128, gt=0)
    vocab: VocabConfig | None = None
    """Trim the vocabulary to the transfer set's tokens (BERT WordPiece tokenizers)."""


class LinearAttentionStudentConfig(Section):
    """The teacher with its softmax attention swapped for a linear variant (``distilkit.linear_attention``)."""

    kind: Literal["linear_attention"]
    tokenizer: str | None = None
    max_length: int = Field(default=128, gt=0)
    """Also the sequence length Linformer's projections cover."""
    variant: Literal["elu", "performer", "hedgehog", "linformer"] = "elu"
    features: int = Field(default=64, gt=0)
    """Random features (performer) or projected length k (linformer); unused by elu and hedgehog."""
    seed: int = 0
    feature_lr: float | None = Field(default=None, gt=0)
    """Learning rate of the new feature-map parameters (hedgehog W, linformer E/F); ``train.lr`` if unset.
    They start from scratch (or the identity), so they want a far larger step than the pretrained weights."""


STUDENT_CONFIGS = (BiLSTMStudentConfig, TransformerStudentConfig, PrunedStudentConfig,
                   LinearAttentionStudentConfig, CopyStudentConfig)
STUDENT_KINDS = tuple(cls.model_fields["kind"].annotation.__args__[0] for cls in STUDENT_CONFIGS)
StudentConfig = Annotated[
    BiLSTMStudentConfig | TransformerStudentConfig | PrunedStudentConfig | LinearAttentionStudentConfig
    | CopyStudentConfig,
    Field(discriminator="kind"),
]


class LossConfig(Section):
    """Distillation objective: ``(1 - alpha) * soft(kind) + alpha * hard-label``."""

    kind: Literal["mse", "kl"] = "mse"
    temperature: float = Field(default=1.0, gt=0)
    alpha: float = Field(default=0.0, ge=0, le=1)
    attention_weight: float = Field(default=0.0, ge=0)
    """linear_attention students: weight of per-layer attention transfer to softmax attention (added)."""


class TrainConfig(Section):
    """Optimisation and bookkeeping of the student's training loop."""

    epochs: int = Field(default=3, ge=0)
    """0: no training; the student is evaluated and saved as built (post-training quantization of a copy)."""
    max_steps: int | None = Field(default=None, gt=0)
    """Stop after this many optimizer steps (overrides ``epochs``)."""
    batch_size: int = Field(default=32, gt=0)
    """Per process; the global batch is ``batch_size * num_processes * grad_accum``."""
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    grad_accum: int = Field(default=1, gt=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    seed: int = 42
    eval_every_epoch: bool = True
    checkpoint_every: int | None = Field(default=None, gt=0)
    """Save the full training state every N optimizer steps (and at each epoch end)."""
    keep_checkpoints: int = Field(default=2, gt=0)
    resume_from: str | None = None
    """A checkpoint directory, or ``latest`` for the newest one under ``output_dir/checkpoints``."""
    log_with: list[str] = Field(default_factory=lambda: ["jsonl"])
    """Accelerate trackers: ``jsonl`` (built in, offline) plus any Accelerate name (tensorboard, wandb...)."""
    log_every: int = Field(default=10, gt=0)
    record_batch_ids: bool = False
    """Write the example ids each process trained on to ``logs/`` (for audits and tests)."""


class CacheConfig(Section):
    """Teacher-logit cache (a ``datasets`` table per teacher x data fingerprint)."""

    enabled: bool = True
    dir: str = "~/.cache/distilkit"


class MeasureConfig(Section):
    """What to measure for ``metrics.json`` after training."""

    latency: bool = True
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 32])
    repeats: int = Field(default=10, gt=0)
    num_threads: int | None = Field(default=None, gt=0)


LINEAR_SCHEMES = ("int8", "int4", "ternary", "binary", "bnb8", "bnb4-nf4", "bnb4-fp4")
EMBEDDING_SCHEMES = ("int8", "int4")


class QuantizeConfig(Section):
    """Quantization of the best student after training (``distilkit.quantize``).

    With ``qat: true`` the student trains through fake-quantized weights (straight-through estimator) while
    the float teacher teaches it, and the trained weights are converted on the same grids afterwards.
    """

    linear: Literal["int8", "int4", "ternary", "binary", "bnb8", "bnb4-nf4", "bnb4-fp4"] | None = "int8"
    """Grid of linear (and LSTM) weights; ``bnb*`` are bitsandbytes layers for GPU users. ``null``: float."""
    embedding: Literal["int8", "int4"] | None = None
    """Row-wise grid of word-embedding tables (saved quantized; bitsandbytes embeddings cannot be)."""
    symmetric: bool = True
    """Symmetric grids run on int8 kernels; asymmetric ones are stored quantized and computed in float."""
    per_channel: bool = True
    backend: Literal["fbgemm", "int_mm", "torchao"] = "fbgemm"
    """Kernel of symmetric linears: PyTorch's quantized CPU engine (fastest on CPU), ``torch._int_mm``
    (CPU/CUDA; what QAT simulates) or torchao's ``Int8Tensor``."""
    skip_modules: list[str] = Field(default_factory=lambda: ["classifier"])
    """Modules (names or last name parts) left in float; the classification head by default."""
    qat: bool = False
    activation_bits: int | None = Field(default=8, ge=2, le=8)
    """QAT only: per-token fake quantization of linear inputs, as the int8 kernels quantize them."""

    @model_validator(mode="after")
    def _combinations(self):
        bnb = (self.linear or "").startswith("bnb")
        if self.linear is None and self.embedding is None:
            raise ValueError("nothing to quantize: set linear and/or embedding")
        if bnb and self.embedding:
            raise ValueError("bitsandbytes embeddings cannot be saved; use linear: int8 with embedding: int8")
        if bnb and self.qat:
            raise ValueError("qat trains on distilkit grids (int8, int4, ternary, binary), not bitsandbytes")
        if self.linear in ("ternary", "binary") and not self.symmetric:
            raise ValueError(f"{self.linear} weights are symmetric by definition; drop symmetric: false")
        if self.backend == "torchao" and (self.linear != "int8" or not self.symmetric):
            raise ValueError("backend torchao runs symmetric int8 linear weights only")
        return self


class HubConfig(Section):
    """Publishing the result to the Hugging Face Hub with a measured model card (``distilkit.hub``)."""

    push: bool = False
    repo: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    """``user/name`` on the Hub; the token comes from ``HF_TOKEN`` or ``huggingface-cli login``."""
    private: bool = False

    @model_validator(mode="after")
    def _repo(self):
        if self.push and not self.repo:
            raise ValueError("push: true needs repo: user/name")
        return self


class Recipe(Section):
    """A complete distillation recipe (see ``recipes/``)."""

    description: str | None = None
    task: str
    """A built-in task name (``sst2``) or a path to a task YAML file."""
    output_dir: str
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherConfig
    student: StudentConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    quantize: QuantizeConfig | None = None
    hub: HubConfig | None = None
