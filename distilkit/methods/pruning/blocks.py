"""Block pruning: rows, columns or square blocks of the attention and FFN weights go to zero while the student
distils, and the heads and neurons left empty are then removed structurally (:mod:`.compact`).

Scores (one per unit: a row, a column or a ``b x b`` block of a weight matrix):

* ``magnitude`` -- the unit's L2 norm ``||W_B||_2`` (block magnitude pruning, the baseline of Lagunas et al.
  2021, "Block Pruning For Faster Transformers", arXiv:2109.04838, sec. 3).
* ``movement`` -- Sanh et al. 2020, "Movement Pruning: Adaptive Sparsity by Fine-Tuning" (arXiv:2005.07683),
  sec. 3: the score of weight ``W_ij`` after ``T`` updates is ``S_ij = -sum_{t<T} (dL/dW_ij)^(t) W_ij^(t)``
  (the learning rate of the scores only rescales them, so it is left out): weights moving away from zero
  score high. Lagunas et al. share one score among a block's weights, so its gradient, and the accumulated
  score, is the sum over the block: ``S_B = -sum_t sum_{(i,j) in B} (dL/dW_ij)^(t) W_ij^(t)``. Gradients are
  read by tensor hooks during backward (each micro-batch of gradient accumulation counts once); under several
  processes the per-process sums are added with ``all_reduce`` before every mask update, so every replica
  computes the same masks.

Masks follow Zhu & Gupta's cubic schedule (:mod:`distilkit.core.sparsity_schedule`), as Sanh et al. (sec. 5)
do for hard movement pruning, and are applied after every optimizer step. Pruned weights are set to zero
rather than masked in the forward (Sanh et al.'s straight-through estimator lets them return), so a pruned
unit's movement score stops changing; masks therefore only grow, as in gradual magnitude pruning. A row of
query/key/value or of the FFN's first projection that goes entirely empty loses its bias entry too: the unit
then outputs exactly zero and removing it later changes nothing.

Which matrices (``granularity``): ``rows`` prunes output rows of query, key, value and the FFN's first
projection (head dimensions and neurons); ``columns`` prunes input columns of the attention output and the
FFN's second projection (the same units from the consuming side); ``blocks`` tiles all six matrices.

For a benchmark (no recipe, no training): ``prune_blocks(model, sparsity=0.5, granularity="blocks", size=32)``
prunes a BERT/RoBERTa/DistilBERT classifier by block magnitude in place, then
:func:`distilkit.methods.pruning.compact.remove_emptied_units` removes the emptied heads and neurons, so the
model is smaller and faster while computing what the masked one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.methods.pruning.pruned import attention_parts, encoder_layers, ffn_parts
from distilkit.methods.pruning.select import _family

PARTS = ("attention", "ffn")


@dataclass(frozen=True)
class BlockTarget:
    """One pruned weight matrix: its parameter name, its module, the tile shape of a unit, and whether its rows
    are structural units (query/key/value, FFN first projection) whose bias goes with an emptied row."""

    name: str
    linear: nn.Linear
    tile: tuple[int, int]
    rows_are_units: bool


def block_targets(model: nn.Module, granularity: str, size: int | None = None,
                  parts: tuple[str, ...] | list[str] = PARTS) -> list[BlockTarget]:
    """The weight matrices ``granularity`` prunes in every encoder layer of ``model``, in layer order.

    Raises:
        RecipeError: An unsupported model, or a block ``size`` that does not divide a weight (named, with its
            shape, as ``student.blocks.size`` would be in a recipe).
    """
    if granularity not in ("rows", "columns", "blocks"):
        raise RecipeError(f"student.blocks.granularity: expected rows, columns or blocks; got {granularity!r}")
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise RecipeError(f"student.blocks.parts: expected a non-empty subset of {list(PARTS)}; got {list(parts)}")
    family = _family(model)
    names = {id(module): name for name, module in model.named_modules()}
    targets = []
    for layer in encoder_layers(model):
        producers, consumers = [], []
        if "attention" in parts:
            _, qkv, out = attention_parts(layer, family)
            producers += qkv
            consumers.append(out)
        if "ffn" in parts:
            first, second = ffn_parts(layer, family)
            producers.append(first)
            consumers.append(second)
        chosen = {"rows": producers, "columns": consumers, "blocks": producers + consumers}[granularity]
        for linear in chosen:
            name = f"{names[id(linear)]}.weight"
            targets.append(BlockTarget(name, linear, _tile(name, linear, granularity, size), linear in producers))
    return targets


def _tile(name: str, linear: nn.Linear, granularity: str, size: int | None) -> tuple[int, int]:
    out, inp = linear.weight.shape
    if granularity == "rows":
        return 1, inp
    if granularity == "columns":
        return out, 1
    if size is None or size <= 0:
        raise RecipeError(f"student.blocks.size: granularity 'blocks' needs a positive block size; got {size}")
    if out % size or inp % size:
        raise RecipeError(f"student.blocks.size: {size} does not divide {name} ({out} x {inp})")
    return size, size


def tile_sums(values: torch.Tensor, tile: tuple[int, int]) -> torch.Tensor:
    """Sum of ``values`` (shaped like a weight) over every tile: a ``[rows / th, cols / tw]`` grid."""
    (out, inp), (th, tw) = values.shape, tile
    return values.reshape(out // th, th, inp // tw, tw).sum(dim=(1, 3))


def expand_tiles(grid: torch.Tensor, tile: tuple[int, int]) -> torch.Tensor:
    """The per-weight tensor of a per-tile ``grid`` (each entry repeated over its tile)."""
    return grid.repeat_interleave(tile[0], dim=0).repeat_interleave(tile[1], dim=1)


@torch.no_grad()
def magnitude_scores(targets: list[BlockTarget]) -> dict[str, torch.Tensor]:
    """Block magnitude: the L2 norm of every unit's weights."""
    return {t.name: tile_sums(t.linear.weight.detach().float().pow(2), t.tile).sqrt() for t in targets}


@torch.no_grad()
def emptied_units(targets: list[BlockTarget]) -> dict[str, torch.Tensor]:
    """``True`` for every unit whose weights are all zero (how a resumed run recovers its masks)."""
    return {t.name: tile_sums(t.linear.weight.detach().abs().float(), t.tile) == 0 for t in targets}


class MovementScores:
    """Accumulates Sanh et al.'s movement score ``S = -sum_t dL/dW * W`` per unit from backward hooks.

    Non-finite gradients (an fp16 step the loss scaler skips) add nothing. Under fp16 the gradients the hooks
    see are loss-scaled; the ranking is unaffected while the scale stays put.
    """

    def __init__(self, targets: list[BlockTarget]):
        self.targets = targets
        self.totals: dict[str, torch.Tensor] = {}
        self.pending: dict[str, torch.Tensor] = {}  # since the last all_reduce
        self.handles = [t.linear.weight.register_hook(partial(self._accumulate, t)) for t in targets]

    @torch.no_grad()
    def _accumulate(self, target: BlockTarget, grad: torch.Tensor) -> None:
        movement = tile_sums((target.linear.weight.detach() * grad).float(), target.tile).neg_()
        movement.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # no host sync, unlike a finiteness test
        held = self.pending.get(target.name)
        if held is not None and held.device == movement.device:
            held += movement
        else:
            self.pending[target.name] = movement if held is None else held.to(movement.device) + movement

    @staticmethod
    def _held(store: dict[str, torch.Tensor], target: BlockTarget, device: torch.device) -> torch.Tensor:
        grid = store.get(target.name)
        if grid is not None:
            return grid.to(device)
        (out, inp), (th, tw) = target.linear.weight.shape, target.tile
        return torch.zeros(out // th, inp // tw, device=device)

    @torch.no_grad()
    def scores(self) -> dict[str, torch.Tensor]:
        """The accumulated scores of every target, summed over processes (call on every process at once)."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1
        for t in self.targets:
            device = t.linear.weight.device
            pending = self._held(self.pending, t, device)
            if distributed:
                torch.distributed.all_reduce(pending)
            self.totals[t.name] = self._held(self.totals, t, device) + pending
            self.pending[t.name] = torch.zeros_like(pending)
        return dict(self.totals)

    def remove(self) -> None:
        """Detach the backward hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles = []


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean tensor marking the ``count`` lowest entries (ties broken by position, never all of them)."""
    flat = scores.reshape(-1)
    count = max(0, min(count, flat.numel() - 1))
    marked = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    marked[torch.argsort(flat, stable=True)[:count]] = True
    return marked.reshape(scores.shape)


@torch.no_grad()
def select_pruned(scores: dict[str, torch.Tensor], already: dict[str, torch.Tensor], sparsity: float,
                  scope: str = "layer") -> dict[str, torch.Tensor]:
    """Which units are pruned at ``sparsity`` (``True``: pruned), given scores and the units pruned so far.

    Units pruned before rank first (masks only grow). ``layer``: each matrix loses ``round(sparsity * units)``;
    ``global``: ``round(sparsity * all units)`` ranked together. Every matrix keeps its best unit, so no
    weight ever goes entirely empty.
    """
    if scope not in ("layer", "global"):
        raise RecipeError(f"student.blocks.scope: expected layer or global; got {scope!r}")
    ranked = {name: s.float().masked_fill(already[name].to(s.device), float("-inf")) for name, s in scores.items()}
    if scope == "layer":
        pruned = {name: _lowest(s, round(sparsity * s.numel())) for name, s in ranked.items()}
    else:
        flat = torch.cat([s.reshape(-1).cpu() for s in ranked.values()])
        marked, offset, pruned = _lowest(flat, round(sparsity * flat.numel())), 0, {}
        for name, s in ranked.items():
            pruned[name] = marked[offset:offset + s.numel()].reshape(s.shape).to(s.device)
            offset += s.numel()
    for name, marked in pruned.items():
        marked |= already[name].to(marked.device)
        if marked.all():  # keep the best unit: an empty matrix is a layer that no longer computes anything
            marked.view(-1)[ranked[name].reshape(-1).argmax()] = False
    return pruned


class BlockMasks:
    """Pruned units of every target, expanded to weight masks once and applied after every optimizer step."""

    def __init__(self, targets: list[BlockTarget], pruned: dict[str, torch.Tensor]):
        self.targets, self.pruned = targets, pruned
        self.active = any(bool(p.any()) for p in pruned.values())  # before the schedule starts: nothing to do
        self._weights: dict[str, torch.Tensor] = {}
        self._biases: dict[str, torch.Tensor] = {}
        for t in targets:
            keep = expand_tiles(~pruned[t.name], t.tile)
            self._weights[t.name] = keep
            if t.rows_are_units and t.linear.bias is not None:
                self._biases[t.name] = keep.any(dim=1)

    @torch.no_grad()
    def apply(self) -> None:
        """Zero every pruned weight (and the bias of every emptied unit row)."""
        if not self.active:
            return
        for t in self.targets:
            weight = t.linear.weight
            mask = self._weights[t.name]
            if mask.device != weight.device or mask.dtype != weight.dtype:  # once, after the student moved
                mask = self._weights[t.name] = mask.to(device=weight.device, dtype=weight.dtype)
            weight.mul_(mask)
            if t.name in self._biases:
                bias = self._biases[t.name]
                if bias.device != weight.device or bias.dtype != weight.dtype:
                    bias = self._biases[t.name] = bias.to(device=weight.device, dtype=weight.dtype)
                t.linear.bias.mul_(bias)

    @property
    def fraction(self) -> float:
        """Fraction of all units that are pruned."""
        total = sum(p.numel() for p in self.pruned.values())
        return sum(int(p.sum()) for p in self.pruned.values()) / max(1, total)


def zero_fraction(targets: list[BlockTarget]) -> float:
    """Fraction of the targets' weights that are exactly zero."""
    zeros = sum(int((t.linear.weight == 0).sum()) for t in targets)
    return zeros / max(1, sum(t.linear.weight.numel() for t in targets))


def prune_blocks(model: nn.Module, *, sparsity: float, granularity: str, size: int | None = None,
                 parts: tuple[str, ...] | list[str] = PARTS, scope: str = "layer",
                 scores: dict[str, torch.Tensor] | None = None) -> BlockMasks:
    """One-shot block pruning of ``model`` in place (the benchmark entry point; a recipe prunes gradually).

    Args:
        model: A BERT, RoBERTa or DistilBERT classifier (pruned ones too).
        sparsity: Fraction of units removed, in ``[0, 1)``.
        granularity: ``rows``, ``columns`` or ``blocks`` (see the module doc).
        size: Side of the square blocks (``blocks`` only); must divide every pruned weight.
        parts: ``attention`` and/or ``ffn``.
        scope: ``layer`` (every matrix loses the same fraction) or ``global``.
        scores: Per-unit scores by parameter name (e.g. :meth:`MovementScores.scores`); default: magnitude.

    Returns:
        The applied :class:`BlockMasks` (``.fraction``: units pruned). Then
        :func:`distilkit.methods.pruning.compact.remove_emptied_units` removes emptied heads and neurons.
    """
    if not 0 <= sparsity < 1:
        raise RecipeError(f"student.blocks.sparsity: must be in [0, 1); got {sparsity}")
    targets = block_targets(model, granularity, size, parts)
    scores = scores if scores is not None else magnitude_scores(targets)
    masks = BlockMasks(targets, select_pruned(scores, emptied_units(targets), sparsity, scope))
    masks.apply()
    return masks
