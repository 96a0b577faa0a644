"""How many rank units each chosen linear keeps: a fixed rank, an energy threshold, or a global budget.

Every layer is described by its *spectrum*: ``gains[j]``, the squared singular values ``sigma_{j+1}^2`` of its
rank unit ``j`` (summed over the input blocks in the block-diagonal form, where one unit adds one rank to every
block), and ``cost``, the weights one unit adds (``out + in``; ``k out + in`` with ``k`` blocks). A rank-``r``
factorisation keeps the energy ``sum_{j<r} gains[j]`` out of ``||W||_F^2`` (its Frobenius error is the rest,
Eckart-Young).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Spectrum:
    """One chosen linear: its squared singular values per rank unit, and the weights one unit costs."""

    gains: torch.Tensor
    """``[full_rank]`` float64, non-increasing."""
    cost: int

    @property
    def full_rank(self) -> int:
        return len(self.gains)

    def kept(self, rank: int) -> float:
        """Fraction of the layer's energy ``||W||_F^2`` a rank-``rank`` factorisation keeps."""
        total = float(self.gains.sum())
        return float(self.gains[:rank].sum()) / total if total > 0 else 1.0


def energy_rank(spectrum: Spectrum, energy: float) -> int:
    """The smallest rank keeping at least ``energy`` of the layer's squared singular values,
    ``min r : sum_{j<=r} sigma_j^2 >= energy * sum_j sigma_j^2`` (the PCA-energy criterion of Zhang et al. 2016,
    per layer)."""
    cumulative = torch.cumsum(spectrum.gains, 0)
    total = float(cumulative[-1])
    if total <= 0:  # an all-zero weight: rank 1 holds it exactly
        return 1
    # A relative tolerance so energy: 1.0 is reached at full rank despite float64 rounding in the cumsum.
    reached = cumulative >= energy * total * (1 - 1e-12)
    return int(torch.nonzero(reached)[0]) + 1


def budget_ranks(spectra: dict[str, Spectrum], budget: float) -> dict[str, int]:
    """Ranks whose factors hold at most ``budget`` weights in all, allocated greedily by energy per weight.

    Zhang et al. 2016 (TPAMI, "Accelerating Very Deep Convolutional Networks for Classification and Detection",
    rank selection) maximise the product of the layers' kept PCA energies under a complexity budget, i.e.
    ``sum_l log E_l(r_l)`` with ``E_l(r) = sum_{j<r} sigma_{l,j}^2 / ||W_l||_F^2``. Each layer's gains are
    non-increasing, so ``log E_l`` is concave in ``r`` and the greedy choice -- one more rank unit to the layer
    with the largest ``(log E_l(r+1) - log E_l(r)) / cost_l`` -- allocates the budget as the Lagrangian
    solution does (up to the last unit). Every layer starts at rank 1. The sensitivity measure is the spectrum,
    not a measured loss: a layer whose energy is spread over many singular values loses most by truncation and
    keeps more rank.

    Raises:
        ValueError: the budget cannot give every layer rank 1 (the caller names its recipe key).
    """
    ranks = {name: 1 for name in spectra}
    spent = sum(s.cost for s in spectra.values())
    if spent > budget:
        raise ValueError(f"rank 1 for each of the {len(spectra)} layers already takes {spent} weights, more than "
                         f"the budget of {math.floor(budget)}")
    cumulative = {name: torch.cumsum(s.gains, 0) for name, s in spectra.items()}

    def push(name: str) -> None:
        c, r = cumulative[name], ranks[name]
        if r >= spectra[name].full_rank or float(c[r]) <= float(c[r - 1]) or float(c[r - 1]) <= 0:
            return  # full rank, or nothing left to gain (a rank-deficient or all-zero weight)
        gain = math.log(float(c[r])) - math.log(float(c[r - 1]))
        heapq.heappush(heap, (-gain / spectra[name].cost, name))  # a min-heap: the largest gain per weight first

    heap: list[tuple[float, str]] = []
    for name in spectra:
        push(name)
    while heap:
        _, name = heapq.heappop(heap)
        if spent + spectra[name].cost > budget:
            continue  # this layer cannot grow; a cheaper one still may
        ranks[name] += 1
        spent += spectra[name].cost
        push(name)
    return ranks
