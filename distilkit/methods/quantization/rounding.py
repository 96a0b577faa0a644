"""Putting weights on their grid: round to the nearest level, or round stochastically (unbiased).

``nearest`` (the default) gives each weight the closest level: the smallest error per weight, but the error is
a fixed function of the weight, so errors need not cancel (weights that all sit 0.3 steps above a level all
lose those 0.3 steps). ``stochastic`` rounds up or down at random, with the probabilities that make the
rounded weight right on average:

  * uniform grids (int8, int4, asymmetric ones too), with ``x = w / scale`` (+ zero point):
    ``q = floor(x) + 1`` with probability ``x - floor(x)``, else ``floor(x)``, so ``E[q] = x`` exactly.
    This is the stochastic rounding of Gupta et al. 2015, "Deep Learning with Limited Numerical Precision"
    (round to ``floor(x)`` with probability ``1 - (x - floor(x)) / eps``, to ``floor(x) + eps`` otherwise;
    here the step ``eps`` is one integer of the grid). Both roundings saturate at the ends of the grid: an
    asymmetric grid's rounded zero point can leave its most extreme weight up to half a step outside.
  * ``binary``: ``q = +1`` with probability ``p = clip((1 + w / alpha) / 2, 0, 1)``, else ``-1``:
    the stochastic binarization of BinaryConnect (Courbariaux et al. 2015, "BinaryConnect: Training Deep Neural
    Networks with binary weights during propagations", eqs. 2-3, ``p = hard_sigmoid(w)``), applied to ``w``
    in units of the grid's scale ``alpha = mean|w|`` (XNOR-Net's). ``E[alpha q] = clip(w, -alpha, alpha)``:
    unbiased inside ``[-alpha, alpha]``, the plain sign beyond (BinaryConnect clips its weights there too).
  * ``ternary``: ``q = sign(w)`` with probability ``min(|w| / alpha, 1)``, else ``0``: the stochastic
    ternarization of Lin et al. 2016, "Neural Networks with Few Multiplications" (ternary connect), with the
    grid's scale ``alpha`` (Ternary Weight Networks'). ``E[alpha q] = sign(w) min(|w|, alpha)``.

Scales and zero points are those of the nearest grid: only the integers differ, so a stochastically rounded
model is stored, reloaded and computed exactly like a nearest-rounded one.

Random numbers come from ``generator`` when one is given, drawn on the generator's own device, so a CPU
generator gives the same integers whether the weights live on CPU or GPU (post-training conversion seeds one,
:func:`distilkit.methods.quantization.layers.quantize_model`); without one they come from torch's global
generator, the one a recipe's ``train.seed`` seeds and its checkpoints save, as for dropout (QAT's forwards).
"""

from __future__ import annotations

import torch

ROUNDINGS = ("nearest", "stochastic")


def check_rounding(rounding: str) -> None:
    """Raise ``ValueError`` unless ``rounding`` is one of :data:`ROUNDINGS`."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


def uniform_noise(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Float32 samples of U[0, 1) with ``like``'s shape, on ``like``'s device."""
    if generator is None:
        return torch.rand(like.shape, device=like.device)
    return torch.rand(like.shape, generator=generator, device=generator.device).to(like.device)


def round_to_int(x: torch.Tensor, rounding: str = "nearest",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Round ``x`` to integer values (same dtype): to nearest (ties to even), or stochastically with
    ``P(floor(x) + 1) = x - floor(x)`` (Gupta et al. 2015), so that ``E[round(x)] = x``."""
    check_rounding(rounding)
    if rounding == "nearest":
        return torch.round(x)
    low = torch.floor(x)
    # U < frac happens with probability frac; an integer x (frac 0) never moves.
    return low + (uniform_noise(x, generator) < x - low).to(x.dtype)


def binary_levels(w: torch.Tensor, alpha: torch.Tensor, rounding: str = "nearest",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``{-1, +1}`` levels of ``w`` (``alpha``: the scale, broadcastable): the sign, or BinaryConnect's
    stochastic binarization ``P(+1) = clip((1 + w / alpha) / 2, 0, 1)`` (Courbariaux et al. 2015, eqs. 2-3)."""
    check_rounding(rounding)
    if rounding == "nearest":
        return torch.where(w >= 0, 1, -1)
    p = ((1 + w / alpha) / 2).clamp(0, 1)
    return torch.where(uniform_noise(w, generator) < p, 1, -1)


def ternary_levels(w: torch.Tensor, alpha: torch.Tensor, keep: torch.Tensor, rounding: str = "nearest",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``{-1, 0, +1}`` levels of ``w``: ``sign(w)`` where ``keep`` (nearest, TWN's threshold), or ``sign(w)``
    with probability ``min(|w| / alpha, 1)`` and 0 otherwise (stochastic; Lin et al. 2016)."""
    check_rounding(rounding)
    if rounding == "nearest":
        return torch.sign(w) * keep
    p = (w.abs() / alpha).clamp(max=1)
    return torch.sign(w) * (uniform_noise(w, generator) < p)
