"""Weight pruning by magnitude: Deep Compression's first stage (Han et al. 2015, "Learning both Weights and
Connections for Efficient Neural Networks"; Han et al. 2016, section 2).

Connections whose weights are smallest in magnitude are removed (set to zero and kept there while the rest
retrains). ``scope: layer`` removes the same fraction from every tensor; ``scope: global`` ranks all
compressed weights together, so layers with many small weights (word embeddings, usually) give more.

Schedules:

* ``one_shot`` -- the whole target at once, at ``start`` (a fraction of training; 0 prunes the model as built),
  then recovery by distillation for the remaining steps. Han et al. 2015 (section 3.3) prune after training
  with L1 or L2 regularisation (``regularization``), then retrain.
* ``gradual`` -- Zhu & Gupta 2017 ("To prune, or not to prune", eq. 1): the sparsity rises as
  ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n dt))^3`` from ``start`` to ``end`` of training, updated
  every ``every`` steps: fast while many redundant weights remain, slowly near the target.

Which tensors: every ``nn.Linear`` weight, every ``nn.LSTM`` weight matrix, and ``nn.Embedding`` tables unless
``embeddings: false``; modules named in ``skip_modules`` (the classifier head by default) stay dense.
"""

from __future__ import annotations

import torch
from torch import nn

from distilkit.core.module_names import skipped


def target_parameters(model: nn.Module, skip_modules=("classifier",), embeddings: bool = True) -> dict[str, nn.Parameter]:
    """The weight tensors Deep Compression works on, by full parameter name."""
    found = {}
    for name, module in model.named_modules():
        if not name or skipped(name, skip_modules):
            continue
        if isinstance(module, nn.Linear) or (embeddings and isinstance(module, nn.Embedding)):
            found[f"{name}.weight"] = module.weight
        elif isinstance(module, nn.LSTM):
            found.update({f"{name}.{p}": param for p, param in module.named_parameters() if p.startswith("weight")})
    return found


@torch.no_grad()
def magnitude_masks(params: dict[str, nn.Parameter], sparsity: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Boolean keep-masks removing the ``sparsity`` fraction of smallest-magnitude weights.

    ``layer``: every tensor loses the same fraction. ``global``: one threshold on ``|w|`` over all tensors.
    ``std``: one threshold on ``|w| / std(W)``, Han et al. 2015 (sec. 4)'s "quality parameter multiplied by
    the standard deviation of a layer's weights" -- a raw global ranking empties small-scale tensors (it
    keeps 3% of MiniLM's token-type and 15% of its position embeddings at 50% overall sparsity), the scaled
    one prunes each tensor by how its weights stand against its own spread. Weights already zero rank first,
    so masks only grow."""
    if sparsity <= 0:
        return {name: torch.ones_like(p, dtype=torch.bool) for name, p in params.items()}
    if scope == "layer":
        return {name: _keep_largest(p.detach().abs(), sparsity) for name, p in params.items()}
    scores = {name: p.detach().abs().float() for name, p in params.items()}
    if scope == "std":
        for name, p in params.items():
            kept = p.detach()[p.detach() != 0].float()
            spread = kept.std() if kept.numel() > 1 else torch.tensor(1.0)
            scores[name] /= spread if spread > 0 else 1.0
    flat = torch.cat([score.reshape(-1) for score in scores.values()])
    pruned = int(round(sparsity * flat.numel()))
    if pruned == 0:
        return magnitude_masks(params, 0.0)
    threshold = torch.kthvalue(flat, pruned).values
    return {name: score > threshold for name, score in scores.items()}


def _keep_largest(magnitude: torch.Tensor, sparsity: float) -> torch.Tensor:
    pruned = int(round(sparsity * magnitude.numel()))
    if pruned == 0:
        return torch.ones_like(magnitude, dtype=torch.bool)
    threshold = torch.kthvalue(magnitude.reshape(-1).float(), pruned).values
    return magnitude > threshold


@torch.no_grad()
def apply_masks(params: dict[str, nn.Parameter], masks: dict[str, torch.Tensor]) -> None:
    """Zero every pruned weight (after each optimizer step, so pruned weights never come back)."""
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].dtype))


def regularization(params: dict[str, nn.Parameter], kind: str) -> torch.Tensor:
    """``sum |w|`` (L1) or ``sum w^2`` (L2) over the compressed weights (Han et al. 2015, section 3.1)."""
    terms = [(p.abs().sum() if kind == "l1" else p.pow(2).sum()) for p in params.values()]
    return torch.stack(terms).sum()


def sparsity_of(params: dict[str, nn.Parameter]) -> float:
    """Fraction of the compressed weights that are exactly zero."""
    zeros = sum(int((p == 0).sum()) for p in params.values())
    return zeros / max(1, sum(p.numel() for p in params.values()))
