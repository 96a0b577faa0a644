"""Choosing what to prune from importance scores: global ranking by fraction, layer choice, parameter budgets.

Pure functions of the scores computed by :mod:`distilkit.methods.pruning` (Michel et al. 2019 rank heads globally
across layers, sec. 4); they return plans ``{layer: [indices]}`` for ``prune_heads``/``prune_ffn``.
"""

from __future__ import annotations

import torch
from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.core.measure import count_parameters as count_params
from distilkit.methods.pruning.pruned import encoder_layers, ffn_parts, head_size, model_family


def _family(model: nn.Module) -> str:
    family = model_family(getattr(model, "config", None))
    if family is None:
        got = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise RecipeError(f"pruning supports bert, roberta, distilbert; got {got}")
    return family


def _select_global(rows: list[torch.Tensor], fraction: float) -> dict[int, list[int]]:
    """Globally least important ``fraction`` of units, skipping any that would empty its layer."""
    if not 0.0 <= fraction <= 1.0:
        raise RecipeError(f"pruning fraction must be in [0, 1]; got {fraction}")
    target = round(fraction * sum(len(r) for r in rows))
    candidates = sorted((float(s), layer, i) for layer, row in enumerate(rows) for i, s in enumerate(row))
    chosen: dict[int, list[int]] = {}
    for _, layer, i in candidates:
        if sum(len(v) for v in chosen.values()) >= target:
            break
        if len(chosen.get(layer, [])) + 1 < len(rows[layer]):
            chosen.setdefault(layer, []).append(i)
    return {layer: sorted(v) for layer, v in sorted(chosen.items())}


def _head_rows(scores: torch.Tensor) -> list[torch.Tensor]:
    return [row[~torch.isnan(row)] for row in scores]  # NaN pads uneven layers (trailing entries only)


def select_heads(scores: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """Least important ``fraction`` of all heads ranked globally (Michel et al. Sec. 4); one stays per layer."""
    return _select_global(_head_rows(scores), fraction)


def select_ffn(scores: list[torch.Tensor], fraction: float) -> dict[int, list[int]]:
    """Least important ``fraction`` of all FFN neurons ranked globally; one neuron stays per layer."""
    return _select_global(list(scores), fraction)


def select_layers(scores: torch.Tensor, n: int) -> list[int]:
    """The ``n`` layers whose removal hurt least (lowest :func:`layer_importance`)."""
    if not 0 <= n < len(scores):
        raise RecipeError(f"select_layers: n must be in 0..{len(scores) - 1} (one layer must stay); got {n}")
    return sorted(int(i) for i in torch.argsort(scores)[:n])


def select_for_budget(model: nn.Module, head_scores: torch.Tensor, ffn_scores: list[torch.Tensor],
                      max_params: int) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Greedy plan to reach ``max_params``: remove heads/neurons with the lowest score per parameter saved.

    Scores of the two kinds come from different criteria; the per-layer L2 normalization of both puts them
    on a comparable scale, but the trade-off is a heuristic.

    Returns:
        ``(heads, neurons)`` plans for :func:`prune_heads` and :func:`prune_ffn`.

    Raises:
        RecipeError: Even one head and one neuron per layer exceed ``max_params`` (drop layers first).
    """
    family = _family(model)
    layers = encoder_layers(model)
    hidden = ffn_parts(layers[0], family)[0].in_features
    excess = count_params(model) - max_params
    heads: dict[int, list[int]] = {}
    neurons: dict[int, list[int]] = {}
    if excess <= 0:
        return heads, neurons
    units = []
    for layer, row in enumerate(_head_rows(head_scores)):
        cost = head_size(layers[layer], family) * (4 * hidden + 3)  # Q, K, V rows + biases, output columns
        units += [(float(s) / cost, cost, heads, layer, i, len(row)) for i, s in enumerate(row)]
    for layer, row in enumerate(ffn_scores):
        cost = 2 * hidden + 1  # first-projection row + bias, second-projection column
        units += [(float(s) / cost, cost, neurons, layer, i, len(row)) for i, s in enumerate(row)]
    saved = 0
    for _, cost, plan, layer, i, size in sorted(units, key=lambda u: u[:1] + u[3:5]):
        if saved >= excess:
            break
        if len(plan.get(layer, [])) + 1 < size:
            plan.setdefault(layer, []).append(i)
            saved += cost
    if saved < excess:
        raise RecipeError(f"max_params={max_params} is out of reach by pruning heads and FFN neurons (at best "
                          f"{count_params(model) - saved}); drop layers first (drop_layers)")
    return ({k: sorted(v) for k, v in heads.items()}, {k: sorted(v) for k, v in neurons.items()})
