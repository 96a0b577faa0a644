"""Quantization grids and quantization-aware training (QAT) with fake quantization.

A *grid* maps a float weight to integers ``q`` and a scale (and, for asymmetric grids, a zero point) with
``w ~= (q - zero_point) * scale`` (Jacob et al. 2018, "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", eq. 1). The same :func:`quantize_weight` is used while
training (fake quantization) and when the trained weights are converted to real integers
(:mod:`distilkit.methods.quantization`), so the converted model computes exactly what the trained one did.

Grids:
  * ``int<b>`` uniform: symmetric ``q in [-(2^(b-1)-1), 2^(b-1)-1]``, ``scale = max|w| / qmax``, or asymmetric
    ``q in [0, 2^b - 1]`` with ``scale = (max - min) / (2^b - 1)`` and an integer zero point.
  * ``ternary``: ``q in {-1, 0, 1}``, threshold ``delta = 0.7 * mean|w|`` and ``scale = mean(|w| : |w| > delta)``
    (Li et al. 2016, "Ternary Weight Networks", eqs. 5-6).
  * ``binary``: ``q = sign(w) in {-1, 1}``, ``scale = mean|w|`` (Rastegari et al. 2016, XNOR-Net, BWN eq. 4).

Scales are per output channel (row) or per tensor. Fake quantization rounds in the forward pass and passes
gradients straight through (the straight-through estimator of Bengio et al. 2013, as in BinaryConnect,
Courbariaux et al. 2015): ``dequant(quant(w)) + (w - w.detach())``. Activations can be fake-quantized
per token to 8 bits, the dynamic scheme the CPU int8 kernels of :mod:`distilkit.methods.quantization` run.

Rounding (``quantize.rounding``, :mod:`distilkit.methods.quantization.rounding`): ``nearest`` or
``stochastic``. With ``stochastic`` the fake-quant modules round weights stochastically in *training*
forwards only (Gupta et al. 2015 train with stochastic rounding; BinaryConnect with stochastic binarization),
the gradient still passing straight through; in eval mode they round to nearest, as the conversion after QAT
does, so the saved model computes what evaluation measured and is deterministic. Activations are always
rounded to nearest: that is what the int8 kernels do to them at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from distilkit.core.module_names import skipped
from distilkit.methods.quantization.rounding import (
    binary_levels,
    check_rounding,
    round_to_int,
    ternary_levels,
)

MODES = ("uniform", "ternary", "binary")


@dataclass(frozen=True)
class Grid:
    """A weight quantization grid.

    Attributes:
        bits: Bits per stored weight (2 for ternary and binary).
        mode: ``uniform``, ``ternary`` or ``binary``.
        symmetric: Zero maps to integer 0 (no zero point); required by the int8 matmul kernels.
        per_channel: One scale per output row instead of one per tensor.
    """

    bits: int = 8
    mode: str = "uniform"
    symmetric: bool = True
    per_channel: bool = True

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode != "uniform" and (self.bits != 2 or not self.symmetric):
            raise ValueError(f"{self.mode} weights are stored symmetric in 2 bits")
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be in [2, 8], got {self.bits}")

    @property
    def qmin(self) -> int:
        """Smallest storable integer (the packing offset)."""
        return -(2 ** (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.symmetric else 2 ** self.bits - 1

    def to_dict(self) -> dict:
        return {"bits": self.bits, "mode": self.mode, "symmetric": self.symmetric, "per_channel": self.per_channel}


def _reduce(x: torch.Tensor, per_channel: bool, fn) -> torch.Tensor:
    """Reduce over everything but dim 0 (per channel) or over all (per tensor); keep [rows, 1] shape."""
    if per_channel:
        return fn(x.reshape(x.shape[0], -1), dim=1, keepdim=True)
    return fn(x.reshape(1, -1), dim=1, keepdim=True).expand(x.shape[0], 1)


def quantize_weight(w: torch.Tensor, grid: Grid, rounding: str = "nearest",
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Integers, scales and zero points of a 2-D weight ``[rows, cols]`` on ``grid``.

    Args:
        w: The weight, rows first.
        grid: Its grid.
        rounding: ``nearest`` or ``stochastic`` (unbiased; see :mod:`distilkit.methods.quantization.rounding`).
            Scales and zero points do not depend on it.
        generator: Random numbers of stochastic rounding (``None``: torch's global generator).

    Returns:
        ``(q, scale, zero_point)``: ``q`` int16 ``[rows, cols]``, ``scale`` float32 ``[rows]``, ``zero_point``
        float32 ``[rows]`` for asymmetric grids else ``None``. ``w ~= (q - zero_point) * scale[:, None]``.
    """
    w = w.detach().float()
    tiny = torch.finfo(torch.float32).tiny
    if grid.mode == "binary":
        scale = _reduce(w.abs(), grid.per_channel, torch.mean).clamp_min(tiny)
        q = binary_levels(w, scale, rounding, generator)
        return q.to(torch.int16), scale.flatten(), None
    if grid.mode == "ternary":
        delta = 0.7 * _reduce(w.abs(), grid.per_channel, torch.mean)
        keep = w.abs() > delta
        if grid.per_channel:
            scale = (w.abs() * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp_min(1)
        else:
            scale = ((w.abs() * keep).sum() / keep.sum().clamp_min(1)).reshape(1, 1).expand(w.shape[0], 1)
        scale = scale.clamp_min(tiny)
        q = ternary_levels(w, scale, keep, rounding, generator)
        return q.to(torch.int16), scale.flatten(), None
    if grid.symmetric:
        scale = (_reduce(w.abs(), grid.per_channel, torch.amax) / grid.qmax).clamp_min(tiny)
        q = round_to_int(w / scale, rounding, generator).clamp(-grid.qmax, grid.qmax)
        return q.to(torch.int16), scale.flatten(), None
    lo = _reduce(w, grid.per_channel, torch.amin).clamp(max=0)  # keep 0 exactly representable
    hi = _reduce(w, grid.per_channel, torch.amax).clamp(min=0)
    scale = ((hi - lo) / grid.qmax).clamp_min(tiny)
    zero = torch.round(-lo / scale).clamp(0, grid.qmax)  # part of the grid: always nearest
    q = torch.clamp(round_to_int(w / scale, rounding, generator) + zero, 0, grid.qmax)
    return q.to(torch.int16), scale.flatten(), zero.flatten()


def dequantize_weight(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None) -> torch.Tensor:
    """``(q - zero_point) * scale`` per row, as float32."""
    q = q.float()
    if zero_point is not None:
        q = q - zero_point[:, None]
    return q * scale[:, None]


def fake_quantize(w: torch.Tensor, grid: Grid, rounding: str = "nearest",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Quantize-dequantize ``w`` (any shape, rows = dim 0) with a straight-through gradient.

    ``rounding``/``generator``: as in :func:`quantize_weight`; the gradient is the same either way.
    """
    flat = w.reshape(w.shape[0], -1)
    q, scale, zero = quantize_weight(flat, grid, rounding, generator)
    hat = dequantize_weight(q, scale, zero).to(w.dtype).reshape(w.shape)
    # Forward value exactly ``hat`` (w - w.detach() is exactly 0), gradient exactly that of ``w``.
    return hat + (w - w.detach())


def quantize_activation(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-token dynamic quantization of activations ``[..., features]`` (int8 kernels' input).

    Returns:
        ``(q, scale)`` with ``q`` int8 and ``scale`` float ``[..., 1]``.
    """
    qmax = 2 ** (bits - 1) - 1
    scale = x.detach().abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-8) / qmax
    return torch.round(x / scale).clamp(-qmax, qmax).to(torch.int8), scale


def fake_quantize_activation(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Per-token fake quantization of activations with a straight-through gradient."""
    q, scale = quantize_activation(x, bits)
    return q.to(x.dtype) * scale.to(x.dtype) + (x - x.detach())


def _forward_rounding(module: nn.Module) -> str:
    """The rounding of a fake-quant module's forward: its own while training, nearest in eval mode (what the
    conversion after QAT uses, so evaluation measures the model that will be saved)."""
    return module.rounding if module.training else "nearest"


class FakeQuantLinear(nn.Linear):
    """``nn.Linear`` that trains through fake-quantized weights (and optionally activations).

    Parameter names are those of ``nn.Linear``, so ``save_pretrained`` writes the float latent weights under
    the usual keys and :mod:`distilkit.methods.quantization` later converts them with the same grid.
    """

    grid: Grid
    activation_bits: int | None
    rounding: str = "nearest"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation_bits:
            x = fake_quantize_activation(x, self.activation_bits)
        return F.linear(x, fake_quantize(self.weight, self.grid, _forward_rounding(self)), self.bias)


class FakeQuantEmbedding(nn.Embedding):
    """``nn.Embedding`` reading rows through row-wise fake quantization (the stored int8/int4 embedding)."""

    grid: Grid
    rounding: str = "nearest"

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, fake_quantize(self.weight, self.grid, _forward_rounding(self)), self.padding_idx)


class FakeQuantLSTM(nn.LSTM):
    """``nn.LSTM`` whose weight matrices are fake-quantized each forward (biases stay float)."""

    grid: Grid
    rounding: str = "nearest"

    def forward(self, input, hx=None):  # noqa: A002 - nn.LSTM's own signature
        saved = self._flat_weights
        rounding = _forward_rounding(self)
        # LSTM.forward hands ``_flat_weights`` to the fused kernel; swap in the fake-quantized tensors.
        self._flat_weights = [fake_quantize(w, self.grid, rounding) if name.startswith("weight") else w
                              for name, w in zip(self._flat_weights_names, saved)]
        try:
            return super().forward(input, hx)
        finally:
            self._flat_weights = saved


_FAKE = {nn.Linear: FakeQuantLinear, nn.Embedding: FakeQuantEmbedding, nn.LSTM: FakeQuantLSTM}


def prepare_fake_quant(model: nn.Module, linear: Grid | None, embedding: Grid | None,
                       skip_modules=("classifier",), activation_bits: int | None = 8,
                       rounding: str = "nearest") -> list[str]:
    """Turn ``nn.Linear``/``nn.LSTM`` (``linear`` grid) and ``nn.Embedding`` (``embedding`` grid) into
    fake-quant modules *in place* (their class changes; parameters and state-dict keys stay the same).

    ``rounding``: of the weights in training forwards (``stochastic`` draws from torch's global generator);
    eval-mode forwards always round to nearest (see the module docstring).

    Returns:
        The names of the converted modules.
    """
    check_rounding(rounding)
    done = []
    for name, module in model.named_modules():
        cls = _FAKE.get(type(module))
        grid = embedding if cls is FakeQuantEmbedding else linear
        if cls is None or grid is None or skipped(name, skip_modules):
            continue
        module.__class__ = cls
        module.grid = grid
        module.rounding = rounding
        if cls is FakeQuantLinear:
            module.activation_bits = activation_bits
        done.append(name)
    return done
