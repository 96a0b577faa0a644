"""The recipe's ``quantize`` section (:mod:`distilkit.methods.quantization`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilkit.core.sections import Section

LINEAR_SCHEMES = ("int8", "int4", "ternary", "binary", "bnb8", "bnb4-nf4", "bnb4-fp4")

EMBEDDING_SCHEMES = ("int8", "int4")


class QuantizeConfig(Section):
    """Quantization of the best student after training (``distilkit.methods.quantization``).

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
    rounding: Literal["nearest", "stochastic"] = "nearest"
    """How weights go onto the distilkit grids (linear and embedding): ``stochastic`` rounds up or down with
    the probabilities that make it unbiased (Gupta et al. 2015; BinaryConnect's stochastic binarization;
    :mod:`distilkit.methods.quantization.rounding`). Post-training: the conversion rounds stochastically,
    seeded by ``train.seed`` (reproducible). QAT: training forwards round stochastically, while evaluation
    and the conversion after training round to nearest, so the saved model is what evaluation measured."""

    @model_validator(mode="after")
    def _combinations(self):
        bnb = (self.linear or "").startswith("bnb")
        if self.linear is None and self.embedding is None:
            raise ValueError("nothing to quantize: set linear and/or embedding")
        if bnb and self.embedding:
            raise ValueError("bitsandbytes embeddings cannot be saved; use linear: int8 with embedding: int8")
        if bnb and self.rounding == "stochastic":
            raise ValueError("rounding: stochastic rounds onto distilkit grids (int8, int4, ternary, binary); "
                             "bitsandbytes rounds its own way: drop rounding or use a distilkit grid")
        if bnb and self.qat:
            raise ValueError("qat trains on distilkit grids (int8, int4, ternary, binary), not bitsandbytes")
        if self.linear in ("ternary", "binary") and not self.symmetric:
            raise ValueError(f"{self.linear} weights are symmetric by definition; drop symmetric: false")
        if self.backend == "torchao" and (self.linear != "int8" or not self.symmetric):
            raise ValueError("backend torchao runs symmetric int8 linear weights only")
        return self
