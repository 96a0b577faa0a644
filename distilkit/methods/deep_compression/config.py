"""The recipe's ``deep_compression`` section (:mod:`distilkit.methods.deep_compression`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilkit.core.sections import Section


class PruneConfig(Section):
    """Magnitude pruning of individual weights (:mod:`distilkit.methods.deep_compression.magnitude`)."""

    sparsity: float = Field(ge=0, lt=1)
    """Fraction of the compressed weights removed at the end of the schedule."""
    scope: Literal["std", "global", "layer"] = "std"
    """``std``: one threshold on ``|w| / std(W)`` over all tensors (Han et al. 2015); ``global``: on ``|w|``;
    ``layer``: the same sparsity in every tensor."""
    schedule: Literal["one_shot", "gradual"] = "one_shot"
    start: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of training steps before pruning starts (dense training, with the regularisation, until then)."""
    end: float = Field(default=0.75, gt=0, le=1)
    """``gradual``: fraction of training steps at which ``sparsity`` is reached (Zhu & Gupta's ``t_0 + n dt``)."""
    every: int = Field(default=10, gt=0)
    """``gradual``: steps between mask updates (Zhu & Gupta's ``dt``)."""
    regularization: Literal["l1", "l2"] | None = None
    """Han et al. 2015's L1 or L2 penalty on the compressed weights, through all of training."""
    regularization_weight: float = Field(default=1e-5, gt=0)

    @model_validator(mode="after")
    def _window(self):
        if self.schedule == "gradual" and self.end <= self.start:
            raise ValueError(f"end ({self.end}) must come after start ({self.start})")
        return self


class ShareConfig(Section):
    """Weight sharing through k-means codebooks (:mod:`distilkit.methods.deep_compression.kmeans`)."""

    bits: int = Field(ge=1, le=8)
    """``2**bits`` shared values per weight tensor."""
    init: Literal["linear", "density", "random"] = "linear"
    iterations: int = Field(default=50, gt=0)
    start: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of training steps before the weights are clustered (after pruning: Han et al. retrain the
    pruned network first); from then on they train as shared weights."""


class DeepCompressionConfig(Section):
    """Han et al. 2016's Deep Compression: prune, share weights through k-means codebooks and retrain by
    distillation, then Huffman-code what is saved (``distilkit.methods.deep_compression``). Any subset of the
    three stages may run in one recipe; in a pipeline each stage usually does one. The saved model reloads
    with ``AutoModelForSequenceClassification.from_pretrained`` once distilkit is installed."""

    prune: PruneConfig | None = None
    share: ShareConfig | None = None
    huffman: bool = False
    """Huffman-code codebook indices and sparse-index gaps in the saved file (needs a ``share`` or ``prune``
    stage here or in the model this run starts from)."""
    embeddings: bool = True
    """Compress word-embedding tables too (for most encoders the largest tensors)."""
    skip_modules: list[str] = Field(default_factory=lambda: ["classifier"])
    """Modules (names or last name parts) left dense and float; the classification head by default."""

    @model_validator(mode="after")
    def _something(self):
        if self.prune is None and self.share is None and not self.huffman:
            raise ValueError("nothing to do: set prune, share and/or huffman")
        if self.prune is not None and self.share is not None:
            pruned_by = self.prune.end if self.prune.schedule == "gradual" else self.prune.start
            if self.share.start < pruned_by:
                raise ValueError(f"share.start ({self.share.start}) comes before pruning ends ({pruned_by}); "
                                 "masks must be final before weights are clustered")
        return self
