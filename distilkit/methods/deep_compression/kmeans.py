"""Weight sharing: per-tensor k-means codebooks, trained through tied gradients (Han et al. 2016, "Deep
Compression", section 3: "Trained quantization and weight sharing").

Each compressed weight tensor keeps ``2**bits`` distinct values (its centroids); a weight stores only the
index of its centroid. Clustering minimises the within-cluster sum of squares (eq. 1,
``argmin_C sum_k sum_{w in c_k} |w - c_k|^2``) over the tensor's non-zero weights -- pruned weights stay zero
and outside every cluster. Han et al. compare three initialisations (section 3.2, Figure 4): ``linear``
(centroids evenly spaced between the smallest and largest weight: it keeps the rare large weights, which
matter most), ``density`` (evenly spaced on the weights' CDF) and ``random`` (Forgy: k weights drawn at
random).

Fine-tuning (section 3.3, eq. 3): the gradient of centroid ``k`` is the sum of the gradients of its weights.
Here every weight of cluster ``k`` receives its cluster's (mean) gradient, so an element-wise optimizer moves
all of them by the same amount and they stay equal: the model stays a plain float model that saves, reloads
and evaluates like any other, and the codebook is read back from its values. The mean differs from Han's sum
by a constant factor per cluster that Adam's normalisation removes; it keeps gradient clipping meaningful.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

INITS = ("linear", "density", "random")


def kmeans_1d(values: np.ndarray, clusters: int, init: str = "linear", iterations: int = 50,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on scalars (eq. 1). Returns ``(centroids float32 [k] ascending, index int64 [n])``.

    Raises:
        ValueError: fewer values than clusters, or an unknown ``init``.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) < clusters:
        raise ValueError(f"k-means with {clusters} clusters needs at least {clusters} weights, got {len(values)}")
    if init == "linear":
        centroids = np.linspace(values.min(), values.max(), clusters)
    elif init == "density":
        centroids = np.quantile(values, (np.arange(clusters) + 0.5) / clusters)
    elif init == "random":
        centroids = np.sort(np.random.default_rng(seed).choice(values, clusters, replace=False))
    else:
        raise ValueError(f"unknown k-means init {init!r}; valid: {', '.join(INITS)}")
    for _ in range(iterations):
        index = _nearest(values, centroids)
        counts = np.bincount(index, minlength=clusters)
        sums = np.bincount(index, weights=values, minlength=clusters)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)  # an empty cluster stays put
        if np.array_equal(updated, centroids):
            break
        centroids = np.sort(updated)
    centroids = centroids.astype(np.float32)
    return centroids, _nearest(values, centroids.astype(np.float64))


def _nearest(values: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest of the ascending ``centroids`` for every value (ties to the lower one)."""
    return np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values, side="left").astype(np.int64)


@torch.no_grad()
def share_weights(param: nn.Parameter, bits: int, init: str = "linear", iterations: int = 50,
                  seed: int = 0) -> torch.Tensor:
    """Cluster ``param``'s non-zero weights into ``2**bits`` centroids and set each weight to its centroid,
    in place. Returns the index tensor (``-1`` where the weight is pruned, i.e. exactly zero)."""
    flat = param.detach().float().cpu().numpy().ravel()
    keep = flat != 0
    distinct = np.unique(flat[keep])
    if len(distinct) <= 2 ** bits:  # already shared (a resumed run): its codebook is its values, exactly
        centroids, index = distinct.astype(np.float32), np.searchsorted(distinct, flat[keep])
    else:
        centroids, index = kmeans_1d(flat[keep], 2 ** bits, init, iterations, seed)
    shared = np.zeros_like(flat)
    shared[keep] = centroids[index]
    full = np.full(flat.shape, -1, dtype=np.int64)
    full[keep] = index
    param.copy_(torch.from_numpy(shared).view_as(param).to(param.dtype))
    return torch.from_numpy(full).view(param.shape).to(param.device)


class Clusters:
    """Cluster membership of one shared tensor (from :func:`share_weights`' index), computed once: the per-step
    work below is then one ``index_add_`` and one gather over the tensor."""

    def __init__(self, index: torch.Tensor, clusters: int):
        flat = index.reshape(-1)
        self.kept = flat >= 0
        self.members = flat[self.kept]
        self.sizes = torch.bincount(self.members, minlength=clusters).clamp(min=1).to(torch.float32)
        self.clusters = clusters

    def means(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (flat, float32) replaced by each member's cluster mean; zero where the weight is pruned."""
        sums = torch.zeros(self.clusters, dtype=torch.float32, device=values.device)
        sums.index_add_(0, self.members, values[self.kept])
        out = torch.zeros_like(values)
        out[self.kept] = (sums / self.sizes)[self.members]
        return out


def tie_gradients(param: nn.Parameter, clusters: Clusters):
    """Give every weight of a cluster that cluster's mean gradient (eq. 3, see the module doc); pruned
    weights (index ``-1``) get none. Returns the hook handle."""

    def hook(grad: torch.Tensor) -> torch.Tensor:
        return clusters.means(grad.reshape(-1).float()).view_as(grad).to(grad.dtype)

    return param.register_hook(hook)


@torch.no_grad()
def snap_to_centroids(param: nn.Parameter, clusters: Clusters) -> None:
    """Set every weight of a cluster to the cluster's mean, pruned weights (index ``-1``) to zero, in place.

    Tied gradients alone keep a cluster together only when its members also share optimizer state; Adam
    moments gathered before sharing differ per weight, so after each step the cluster is pulled back to the
    mean of its members' updates (for SGD and fresh Adam state this changes nothing).
    """
    flat = param.view(-1)
    flat.copy_(clusters.means(flat.float()).to(flat.dtype))
