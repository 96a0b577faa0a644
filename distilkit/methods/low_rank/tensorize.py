"""Tensor-train and block-term factorisation of chosen linears: factor shapes, rank rules, checks, replacement.

:func:`plan_tensorized` checks everything and picks the shapes and ranks (before any layer changes);
:func:`apply_tensorized` replaces the layers and reports them. ``factorize_model`` calls both for
``kind: tt`` and ``kind: block_term``.

Factor shapes: ``in_factors``/``out_factors`` given as a list apply to every chosen layer (their product must be
its in/out features), as a mapping ``{features: list}`` to the layers of that width; a layer they leave out gets
:func:`balanced_factors` of its features into ``tt_cores`` factors. The ``k``-th output factor is paired with the
``k``-th input factor (mode ``k`` of the TT-matrix tensor, Novikov et al. 2015).

TT ranks from a budget (``keep``): the cores hold at most ``keep`` of the chosen linears' weights. Every bond of
every layer starts at rank 1; one more rank goes, greedily, to the (layer, bond) with the largest gain in ``log``
kept energy per added weight, as the SVD path's budget does (Zhang et al. 2016's product of kept energies). A
layer's kept energy is estimated from its unfoldings' spectra as ``E = prod_k E_k(r_k)`` with ``E_k(r) = sum_{j
<= r} sigma_{k,j}^2 / ||W||_F^2`` of unfolding ``k``: ``log E`` is then a sum over bonds, each concave in its
rank, and ``E >= 1 - sum_k (1 - E_k)``, the kept energy Oseledets 2011 Theorem 2.2 guarantees. Raising ``r_k`` by
one costs ``r_{k-1} m_k n_k + m_{k+1} n_{k+1} r_{k+1}`` weights, which depends on the neighbouring ranks, so the
greedy is a heuristic rather than the exact optimum of the estimate. Block-term ranks from a budget: per layer,
the largest ``bt_rank`` whose ``bt_blocks`` blocks fit in ``keep`` of its weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.methods.low_rank.block_term import BlockTermLinear, bt_parameters, mode_ranks
from distilkit.methods.low_rank.storage import set_module
from distilkit.methods.low_rank.tensor_train import TTLinear, tt_parameters, unfolding_spectra

Factors = list[int] | dict[int, list[int]] | None


def balanced_factors(features: int, count: int) -> list[int]:
    """``features`` as a product of ``count`` factors as equal as the primes allow, largest first: each prime,
    largest first, multiplies the currently smallest factor (384 into 3: ``[8, 8, 6]``; 1536: ``[16, 12, 8]``)."""
    primes, rest, p = [], features, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    factors = [1] * count
    for prime in sorted(primes, reverse=True):
        smallest = min(range(count), key=lambda i: factors[i])
        factors[smallest] *= prime
    return sorted(factors, reverse=True)


@dataclass
class TensorPlan:
    """One chosen linear: its factor shapes and ranks (``ranks``: TT bond ranks, or ``[bt_rank]``)."""

    out_factors: list[int]
    in_factors: list[int]
    ranks: list[int] = field(default_factory=list)
    spectra: list[torch.Tensor] = field(default_factory=list)
    energy: float = 0.0

    @property
    def modes(self) -> list[int]:
        return [m * n for m, n in zip(self.out_factors, self.in_factors, strict=True)]


def _factors_for(spec: Factors, features: int, cores: int, key: str, name: str, side: str) -> list[int]:
    chosen = spec.get(features) if isinstance(spec, dict) else spec
    if chosen is None:
        return balanced_factors(features, cores)
    if math.prod(chosen) != features:
        raise RecipeError(f"factorize.{key}: {list(chosen)} multiply to {math.prod(chosen)}, but {name} has "
                          f"{features} {side}")
    if any(f < 1 for f in chosen):
        raise RecipeError(f"factorize.{key}: {list(chosen)} must be positive integers")
    return list(chosen)


def rank_caps(plan: TensorPlan, ranks: list[int]) -> list[int]:
    """For each bond ``k``: ``min(r_{k-1} m_k n_k, prod_{i>k} m_i n_i)``, the most TT-SVD's ``k``-th step can keep
    (its matrix is ``(r_{k-1} m_k n_k) x (m_{k+1} n_{k+1} ... m_d n_d)``)."""
    modes, bonds = plan.modes, [1, *ranks]
    return [min(bonds[k] * modes[k], math.prod(modes[k + 1:])) for k in range(len(ranks))]


def plan_tensorized(linears: dict[str, nn.Linear], *, kind: str, keep: float | None, tt_ranks: int | list[int] | None,
                    in_factors: Factors, out_factors: Factors, tt_cores: int, bt_blocks: int,
                    bt_rank: int | None) -> dict[str, TensorPlan]:
    """Shapes and ranks for every chosen linear, every check done first (see the module doc).

    Raises:
        RecipeError: naming the ``factorize`` key -- ``tt_cores`` below 2, factor shapes that do not multiply to a
            layer's features or have a length other than the cores', ``tt_ranks`` of the wrong length, below 1 or
            above what an unfolding allows, ``bt_rank`` above every mode, a ``keep`` too small for rank 1.
    """
    if tt_cores < 2:
        raise RecipeError(f"factorize.tt_cores: {tt_cores} must be at least 2 (one core is the dense matrix)")
    if bt_blocks < 1:
        raise RecipeError(f"factorize.bt_blocks: {bt_blocks} must be at least 1")
    plans: dict[str, TensorPlan] = {}
    for name, linear in linears.items():
        out_features, in_features = linear.weight.shape
        cores = next((len(f) for f in _listed(in_factors, in_features) + _listed(out_factors, out_features)), tt_cores)
        outs = _factors_for(out_factors, out_features, cores, "out_factors", name, "outputs")
        ins = _factors_for(in_factors, in_features, cores, "in_factors", name, "inputs")
        if len(outs) != len(ins):
            raise RecipeError(f"factorize.in_factors: {ins} and factorize.out_factors: {outs} of {name} have "
                              "different lengths (one factor of each per core)")
        if len(ins) < 2:
            raise RecipeError(f"factorize.in_factors: {ins} for {name}: at least 2 factors (cores) are needed")
        plans[name] = TensorPlan(outs, ins)
    if kind == "tt":
        _plan_tt(plans, linears, keep, tt_ranks)
    else:
        _plan_block_term(plans, linears, keep, bt_blocks, bt_rank)
    return plans


def _listed(spec: Factors, features: int) -> list[list[int]]:
    chosen = spec.get(features) if isinstance(spec, dict) else spec
    return [chosen] if chosen is not None else []


def _plan_tt(plans: dict[str, TensorPlan], linears: dict[str, nn.Linear], keep: float | None,
             tt_ranks: int | list[int] | None) -> None:
    for name, plan in plans.items():
        plan.spectra = unfolding_spectra(linears[name].weight, plan.out_factors, plan.in_factors)
        if tt_ranks is None:
            continue
        bonds = len(plan.in_factors) - 1
        ranks = [tt_ranks] * bonds if isinstance(tt_ranks, int) else list(tt_ranks)
        if len(ranks) != bonds:
            raise RecipeError(f"factorize.tt_ranks: {ranks} has {len(ranks)} ranks, but {name} has {bonds + 1} cores "
                              f"({bonds} bonds)")
        if min(ranks) < 1:
            raise RecipeError(f"factorize.tt_ranks: {ranks} must be at least 1")
        for k, (rank, cap) in enumerate(zip(ranks, rank_caps(plan, ranks), strict=True)):
            if rank > cap:
                raise RecipeError(
                    f"factorize.tt_ranks: r_{k + 1} = {rank} of {name} ({plan.out_factors} x {plan.in_factors}) "
                    f"is above what its unfolding allows: min(r_{k} m_{k + 1} n_{k + 1}, m_{k + 2} n_{k + 2} ... "
                    f"m_d n_d) = {cap}")
        plan.ranks = ranks
    if tt_ranks is None:
        budget = keep * sum(linear.weight.numel() for linear in linears.values())
        _tt_budget_ranks(plans, budget, keep)
    for plan in plans.values():
        total = float(plan.spectra[0].sum())
        bound = sum(float(s[r:].sum()) for s, r in zip(plan.spectra, plan.ranks, strict=True))
        plan.energy = max(0.0, 1 - bound / total) if total > 0 else 1.0  # Theorem 2.2: kept energy at least this


def _tt_budget_ranks(plans: dict[str, TensorPlan], budget: float, keep: float) -> None:
    for plan in plans.values():
        plan.ranks = [1] * (len(plan.in_factors) - 1)
    spent = sum(tt_parameters(p.out_factors, p.in_factors, p.ranks) for p in plans.values())
    if spent > budget:
        raise RecipeError(f"factorize.keep: {keep} is too small: TT rank 1 for each of the {len(plans)} layers "
                          f"already takes {spent} weights, more than the budget of {math.floor(budget)}")

    cumulative = {name: [torch.cumsum(g, 0) for g in plan.spectra] for name, plan in plans.items()}

    def score(name: str, k: int) -> tuple[float, int] | None:
        plan = plans[name]
        r, modes, bonds = plan.ranks[k], plan.modes, [1, *plan.ranks, 1]
        kept = cumulative[name][k]
        if r >= rank_caps(plan, plan.ranks)[k] or r >= len(kept) or float(kept[r - 1]) <= 0 \
                or float(kept[r]) <= float(kept[r - 1]):
            return None  # at its cap, or nothing left to gain (a rank-deficient or all-zero weight)
        gain = math.log(float(kept[r])) - math.log(float(kept[r - 1]))
        cost = bonds[k] * modes[k] + modes[k + 1] * bonds[k + 2]
        return gain / cost, cost

    candidates = {(name, k): score(name, k) for name, plan in plans.items() for k in range(len(plan.ranks))}
    candidates = {key: value for key, value in candidates.items() if value is not None}
    while candidates:
        (name, k), (_, cost) = max(candidates.items(), key=lambda item: item[1][0])
        if spent + cost > budget:  # costs only grow with the neighbours' ranks: this bond is done
            del candidates[(name, k)]
            continue
        plans[name].ranks[k] += 1
        spent += cost
        for j in (k - 1, k, k + 1):  # the neighbours' costs and caps changed
            if 0 <= j < len(plans[name].ranks):
                value = score(name, j)
                if value is None:
                    candidates.pop((name, j), None)
                else:
                    candidates[(name, j)] = value


def _plan_block_term(plans: dict[str, TensorPlan], linears: dict[str, nn.Linear], keep: float | None,
                     blocks: int, bt_rank: int | None) -> None:
    for name, plan in plans.items():
        modes = plan.modes
        full = max(mode_ranks(modes, max(modes)))
        if bt_rank is not None:
            if bt_rank < 1:
                raise RecipeError(f"factorize.bt_rank: {bt_rank} must be at least 1")
            if bt_rank > full:
                raise RecipeError(f"factorize.bt_rank: {bt_rank} is above what every mode of {name} "
                                  f"({plan.out_factors} x {plan.in_factors}, modes {modes}) allows: {full}")
            plan.ranks = [bt_rank]
            continue
        allowed = keep * linears[name].weight.numel()
        fits = [r for r in range(1, full + 1) if bt_parameters(modes, blocks, r) <= allowed]
        if not fits:
            raise RecipeError(f"factorize.keep: {keep} is too small: {blocks} block(s) of rank 1 for {name} take "
                              f"{bt_parameters(modes, blocks, 1)} weights, more than {math.floor(allowed)}")
        plan.ranks = [max(fits)]


def apply_tensorized(model: nn.Module, linears: dict[str, nn.Linear], plans: dict[str, TensorPlan], kind: str,
                     bt_blocks: int) -> dict[str, dict]:
    """Replace each planned linear by its TT or block-term layer; the report's per-layer entries."""
    layers = {}
    for name, linear in linears.items():
        plan = plans[name]
        if kind == "tt":
            factored = TTLinear.from_linear(linear, plan.in_factors, plan.out_factors, plan.ranks)
        else:
            factored = BlockTermLinear.from_linear(linear, plan.in_factors, plan.out_factors, bt_blocks, plan.ranks[0])
        with torch.no_grad():
            original = linear.weight.detach().double()
            error = float((factored.weight.detach().double() - original).pow(2).sum())
            total = float(original.pow(2).sum())
        set_module(model, name, factored)
        entry = {"shape": list(linear.weight.shape), "kind": kind, "out_factors": plan.out_factors,
                 "in_factors": plan.in_factors, "rank": plan.ranks if kind == "tt" else plan.ranks[0],
                 "energy": round(1 - error / total, 6) if total > 0 else 1.0,
                 "params_before": sum(p.numel() for p in linear.parameters()),
                 "params_after": sum(p.numel() for p in factored.parameters())}
        if kind == "tt":
            entry["energy_bound"] = round(plan.energy, 6)
        else:
            entry["blocks"] = bt_blocks
        layers[name] = entry
    return layers
