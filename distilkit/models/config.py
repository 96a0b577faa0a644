"""Recipe sections owned by the models layer: the teacher (and its fine-tuning) and the built-in students.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from distilkit.core.sections import Section


class LoraSettings(Section):
    """LoRA adapters (Hu et al. 2021, eq. 3: ``h = W0 x + (alpha / r) B A x``, ``A`` ``r x in`` and ``B``
    ``out x r``, ``B`` starting at zero so training starts from the unchanged model). Used by
    ``teacher.finetune.lora`` (via peft) and ``train.lora`` (:mod:`distilkit.methods.lora`)."""

    r: int = Field(default=8, gt=0)
    """Rank of every adapter."""
    alpha: float = Field(default=16.0, gt=0)
    """Scale numerator: the update is ``alpha / r * B A``."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the adapter's input (training only)."""
    target_modules: list[str] = Field(default_factory=lambda: ["query", "key", "value", "dense"], min_length=1)
    """Linear layers that get adapters: a full module name or its last parts (``query`` matches every
    ``...attention.self.query``), as peft matches them. BERT's default here: every encoder linear and the pooler."""
    modules_to_save: list[str] = Field(default_factory=lambda: ["classifier"])
    """Modules trained in full beside the adapters (the freshly trained classification head)."""


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
    lora: LoraSettings | None = None
    """Fine-tune LoRA adapters (and ``modules_to_save``) instead of every weight, through peft; the adapters are
    merged (``merge_and_unload``) and the merged teacher is what is cached, labels and is fingerprinted. The
    trainable and total parameter counts go to ``finetune.json``. ``lr`` applies to the adapters (LoRA usually
    wants ~10x a full fine-tune's)."""
    group_by_length: bool = False
    """Batch examples of similar length together: 1.9x the examples/s on SST-2 (far less padding), but a short
    run can suffer (1 epoch on 4,000 SST-2 sentences: 0.7970 dev accuracy against 0.8268 without), so it is
    off unless the task's settings (``teacher_finetune``, used for the GLUE table) or the recipe turn it on."""


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
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Precision the teacher labels in. ``bfloat16`` labelled SST-2 1.5-1.8x faster on a 2-core CPU with AMX
    (``scripts/bench_speed.py``), but its logits differ from float32's (max |difference| 0.036, 0.1% of
    argmaxes); the cache keeps the two apart."""
    finetune: FinetuneConfig | None = None
    adapter: str | None = None
    """A PEFT adapter (local folder or Hub id; LoRA or any PEFT type) loaded onto ``model`` with peft's own
    ``PeftModel.from_pretrained`` and merged (``merge_and_unload``) before labelling. Preflight reads its
    ``adapter_config.json`` (:func:`distilkit.models.teacher_adapters.adapter_problems`); the adapter's
    weights are part of the teacher's fingerprint, so each adapter has its own logit-cache entry."""


class EnsembleTeacherConfig(TeacherConfig):
    """One teacher of an ensemble (``teacher:`` written as a list): today's teacher section plus its share.

    Combined as ``loss.ensemble`` says (:mod:`distilkit.methods.distillation.ensemble`)."""

    weight: float | None = Field(default=None, gt=0)
    """Relative weight of this teacher; weights are normalised to sum to 1 (default: equal)."""
    temperature: float | None = Field(default=None, gt=0)
    """This teacher's softening temperature (default: ``loss.temperature``)."""


class VocabConfig(Section):
    """Vocabulary trimming (``distilkit.models.vocab``): keep only the word-embedding rows and WordPiece tokens the
    transfer set uses, plus special tokens and printable-ASCII characters (so ASCII words never become
    ``[UNK]``). The saved tokenizer holds exactly the kept tokens."""

    max_tokens: int | None = Field(default=None, gt=0)
    """Size of the kept vocabulary, always-kept tokens included; ``None`` keeps every token seen
    ``min_count`` times. The most frequent transfer-set tokens fill the room."""
    min_count: int = Field(default=1, gt=0)
    """Fewest transfer-set occurrences for a token to be kept."""


class SentencePieceConfig(Section):
    """A student vocabulary of its own (``distilkit.models.sentencepiece_vocab``): a SentencePiece model trained on
    the transfer set's texts (train split plus augmented texts), deterministic given ``train.seed``, cached."""

    train: Literal["sentencepiece"]
    vocab_size: int = Field(default=8000, gt=0)
    """Most pieces (``<pad>`` and ``<unk>`` included); at least one per distinct character of the texts. A
    unigram model of a small corpus may stop below it."""
    model_type: Literal["unigram", "bpe"] = "unigram"
    """Unigram language model (Kudo 2018) or byte-pair encoding (Sennrich et al. 2016)."""


#: The tags of the ``student.tokenizer`` union (a model name or a trained vocabulary), which pydantic puts in
#: error locations and :mod:`distilkit.run.recipe_io` leaves out (users never wrote them).
TOKENIZER_TAGS = ("name", "trained")

StudentTokenizer = Annotated[
    Annotated[str, Tag("name")] | Annotated[SentencePieceConfig, Tag("trained")],
    # A mapping is a trained vocabulary, so its errors are about its keys, not "input should be a string".
    Discriminator(lambda value: "name" if isinstance(value, str) else "trained"),
]


def _no_trained_tokenizer(value):
    """A ``{train: ...}`` tokenizer on a student that reads the teacher's vocabulary is a named error."""
    if isinstance(value, dict):
        raise ValueError("a trained vocabulary ({train: sentencepiece}) is built for BiLSTM students only (a "
                         "transformer student inherits the teacher's embedding table); name a tokenizer instead")
    return value


class BiLSTMStudentConfig(Section):
    """Tang et al. 2019 BiLSTM student (siamese for sentence pairs)."""

    kind: Literal["bilstm"]
    tokenizer: StudentTokenizer | None = None
    """Defaults to the teacher's tokenizer; a model name, or ``{train: sentencepiece, vocab_size, model_type}``
    for a vocabulary trained on the transfer set (whose embedding rows still start from the teacher's)."""
    max_length: int = Field(default=128, gt=0)
    embedding_dim: int = Field(default=300, gt=0)
    hidden_size: int = Field(default=300, gt=0)
    mlp_hidden_size: int = Field(default=400, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    pooling: Literal["last", "max"] = "last"
    """The sentence vector: ``last``, each direction's last state (Tang et al. 2019); ``max``, the element-wise
    max over the tokens' outputs (BiLSTM-max, Conneau et al. 2017, sec. 3.2.2)."""
    init_embeddings_from_teacher: bool | Literal["pca"] = True
    """Initialise word embeddings from the teacher's (our offline stand-in for word2vec); ``true`` keeps
    the teacher's width (``embedding_dim`` is ignored), ``pca`` projects the rows onto their top
    ``embedding_dim`` principal components (a small student without random word vectors)."""
    freeze_embeddings: bool = False
    vocab: VocabConfig | None = None
    """Trim the vocabulary to the transfer set's tokens (BERT WordPiece tokenizers)."""


class ShareLayersConfig(Section):
    """ALBERT's cross-layer parameter sharing (Lan et al. 2020, section 3.1) for a transformer student: each
    group of ``group_size`` consecutive layers runs one shared block (:mod:`distilkit.models.shared_layers`)."""

    group_size: int | Literal["all"] = "all"
    """Layers per shared block; it must divide the student's depth. ``all``: one block for every layer (ALBERT)."""
    init: Literal["average", "first"] | list[int] = "average"
    """Where each shared block starts: ``average``, the element-wise mean of the teacher layers mapped to the
    group's layers by ``init_from_teacher_layers``; ``first``, the first of them; or a list of one teacher layer
    index per group. A student without teacher layers (``init_from_teacher_layers: null``) starts each block
    as its group's first, freshly initialised layer."""

    @field_validator("group_size")
    @classmethod
    def _positive(cls, value):
        if value != "all" and value < 1:
            raise ValueError(f"{value} layers per shared block: give a whole number >= 1 or 'all'")
        return value

    @field_validator("init")
    @classmethod
    def _layer_list(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("an empty list names no teacher layer; give one teacher layer index per group")
        if isinstance(value, list) and min(value) < 0:
            raise ValueError(f"{value}: teacher layer indices count from 0")
        return value


class TransformerStudentConfig(Section):
    """A shallower (optionally narrower) copy of the teacher's architecture."""

    @model_validator(mode="after")
    def _fraction(self):
        if isinstance(self.num_layers, float) and self.num_layers >= 1:
            raise ValueError(f"num_layers: {self.num_layers} is neither a layer count (a whole number) nor a "
                             "fraction of the teacher's layers (below 1)")
        return self

    kind: Literal["transformer"]
    tokenizer: str | None = None
    _trained_tokenizer = field_validator("tokenizer", mode="before")(_no_trained_tokenizer)
    max_length: int = Field(default=128, gt=0)
    num_layers: int | float = Field(default=4, gt=0)
    """Student layers, or a fraction of the teacher's below 1 (``0.25``: 6 of BERT-large's 24, 2 of MiniLM-L6's 6)."""
    hidden_size: int | None = Field(default=None, gt=0)
    num_attention_heads: int | None = Field(default=None, gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    init_from_teacher_layers: list[int] | Literal["uniform", "bottom"] | None = "uniform"
    """Which teacher layer each student layer starts as: ``uniform``, evenly spaced layers ending with the
    teacher's last (DistilBERT, BERT-PKD skip); ``bottom``, the first ``num_layers`` (the teacher truncated to
    the student's depth: the plain baseline); a list of one teacher layer index per student layer; or ``null``,
    fresh random layers."""
    config_from: str | None = None
    """Base config (Hub id or path) when the teacher is a plug-in without a Hugging Face config."""
    vocab: VocabConfig | None = None
    """Trim the vocabulary to the transfer set's tokens (BERT WordPiece tokenizers)."""
    share_layers: ShareLayersConfig | None = None
    """Cross-layer parameter sharing (ALBERT): groups of consecutive layers share one block."""


class CopyStudentConfig(Section):
    """The teacher itself, same architecture and weights: the starting point of quantization stages
    (post-training with ``train.epochs: 0``, or quantization-aware distillation from the float teacher)."""

    kind: Literal["copy"]
    tokenizer: str | None = None
    _trained_tokenizer = field_validator("tokenizer", mode="before")(_no_trained_tokenizer)
    max_length: int = Field(default=128, gt=0)
    vocab: VocabConfig | None = None
    """Trim the vocabulary to the transfer set's tokens (BERT WordPiece tokenizers)."""
