"""``student.kind: linear_attention``: which linear variant replaces softmax attention.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distilkit.core.sections import Section

#: ``model_type`` values whose attention can be swapped (checked in preflight from ``config.json``); a twin is
#: another family's network under another name (XLM-R is RoBERTa with a SentencePiece vocabulary).
MODEL_TYPE_TWINS = {"xlm-roberta": "roberta"}
LINEAR_ATTENTION_MODEL_TYPES = ("bert", "roberta", *MODEL_TYPE_TWINS)


class LinearAttentionStudentConfig(Section):
    """The teacher with its softmax attention swapped for a linear variant (``distilkit.methods.linear_attention``)."""

    kind: Literal["linear_attention"]
    tokenizer: str | None = None
    max_length: int = Field(default=128, gt=0)
    """Also the sequence length Linformer's projections cover."""
    variant: Literal["elu", "performer", "hedgehog", "linformer", "sinkhorn", "star"] = "elu"
    features: int = Field(default=64, gt=0)
    """Random features (performer) or projected length k (linformer); unused by elu, hedgehog, sinkhorn, star."""
    seed: int = 0
    feature_lr: float | None = Field(default=None, gt=0)
    """Learning rate of the new feature-map parameters (hedgehog W, linformer E/F, sinkhorn's SortNet);
    ``train.lr`` if unset.
    They start from scratch (or the identity), so they want a far larger step than the pretrained weights."""
    block_size: int = Field(default=16, gt=0)
    """sinkhorn: tokens per block (Tay et al. 2020's B); at most ``max_length`` (recipe check)."""
    sinkhorn_iters: int = Field(default=8, ge=0)
    """sinkhorn: rounds of row and column normalisation balancing the sorting matrix."""
    temperature: float = Field(default=1.0, gt=0)
    """sinkhorn: divides the sorting logits; lower gives a harder (closer to 0/1) block permutation."""
    star_window: int = Field(default=1, ge=0)
    """star: neighbours on each side a token attends to beside the relay (Guo et al. 2019's ring: 1); below
    ``max_length`` (recipe check)."""
