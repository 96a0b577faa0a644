"""Block-term (sum of Tucker blocks) linear layers and their initialisation.

The weight is read as the ``d``-way tensor of the TT-matrix format (:mod:`.tensor_train`: mode ``k`` is the
pair of an output and an input index, size ``M_k = m_k n_k``) and approximated by a sum of ``N`` Tucker blocks
(the block-term decomposition, De Lathauwer 2008, "Decompositions of a higher-order tensor in block terms --
Part II", definition 2.2; used for layers by Ye et al. 2018, "Learning Compact Recurrent Neural Networks with
Block-Term Tensor Decomposition", eq. 5-6):

    W = sum_{n=1..N} G_n x_1 A_n^(1) x_2 A_n^(2) ... x_d A_n^(d),

with ``G_n`` an ``R_1 x ... x R_d`` core and ``A_n^(k)`` an ``M_k x R_k`` factor, ``R_k = min(R, M_k, prod_{j != k}
M_j)`` (a mode smaller than ``R`` keeps all of itself). Weights: ``N (sum_k M_k R_k + prod_k R_k)``.

Initialisation, a greedy residual fit refined by block-coordinate sweeps: block ``n`` is the truncated HOSVD
(De Lathauwer, De Moor & Vandewalle 2000, "A multilinear singular value decomposition") of what the blocks
before it leave, improved by HOOI iterations (the same authors' "On the best rank-(R_1, ..., R_N)
approximation", 2000, Algorithm 4.2); then each block in turn is refit the same way to ``W`` minus all the other
blocks. Every refit is a projection onto orthonormal factors, so the Frobenius error never grows; with one block
and ``R >= M_k`` on every mode the HOSVD is exact.

Forward: the blocks rebuild ``W`` (``N`` sequences of mode products) and ``F.linear`` applies it; at inference
(no autograd, not tracing) the rebuilt ``W`` is reused until a parameter changes
(:func:`.tensor_train.inference_weight`), so only training and the exported graph rebuild it per call.
Contracting the input directly carries the shared index ``r_k`` of ``A_n^(k)[i_k, j_k, r_k]`` through every step, an
intermediate ``prod R_k / R_1`` times larger than the input, while rebuilding costs about ``N R / tokens`` of the
dense product.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from distilkit.methods.low_rank.tensor_train import inference_weight, tt_tensor

#: HOOI iterations per block fit, and block-coordinate sweeps after the greedy pass: a start for distillation,
#: not a converged fit (more of either costs minutes on a MiniLM and recovery training moves the blocks anyway).
HOOI_ITERATIONS, SWEEPS = 1, 1


def mode_ranks(modes: list[int], rank: int) -> list[int]:
    """``R_k = min(R, M_k, prod_{j != k} M_j)``: no Tucker factor wider than its mode unfolding's rank."""
    total = math.prod(modes)
    return [min(rank, m, total // m) for m in modes]


def bt_parameters(modes: list[int], blocks: int, rank: int) -> int:
    """Weights of ``blocks`` Tucker blocks of rank ``rank``: ``N (sum_k M_k R_k + prod_k R_k)``."""
    ranks = mode_ranks(modes, rank)
    return blocks * (sum(m * r for m, r in zip(modes, ranks, strict=True)) + math.prod(ranks))


def _mode_product(tensor: torch.Tensor, matrix: torch.Tensor, mode: int) -> torch.Tensor:
    """``tensor x_mode matrix`` with a leading block dimension: ``tensor`` (N, a_1..a_d), ``matrix`` (N, b, a_mode)."""
    # Explicit subscripts (no ellipsis, no negative dims): the ONNX exporter mis-translates movedim(-1) to a
    # Transpose with a negative permutation entry that ONNX Runtime rejects.
    letters = "abcdefghijklmnopqrstuvwx"[:tensor.dim() - 1]
    out = letters[:mode] + "y" + letters[mode + 1:]
    return torch.einsum(f"z{letters},zy{letters[mode]}->z{out}", tensor, matrix)


def blocks_tensor(cores: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
    """``sum_n G_n x_1 A_n^(1) ... x_d A_n^(d)`` (``cores`` (N, R_1..R_d), ``factors[k]`` (N, M_k, R_k))."""
    tensor = cores
    for mode, factor in enumerate(factors):
        tensor = _mode_product(tensor, factor, mode)
    return tensor.sum(0)


def _leading_vectors(matrix: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` leading left singular vectors of a wide ``matrix``, from the eigenvectors of ``M M^T`` (a
    mode unfolding is at most a few hundred rows by tens of thousands of columns: the Gram matrix is small)."""
    _, vectors = torch.linalg.eigh(matrix @ matrix.T)
    return vectors.flip(-1)[:, :count]


def _tucker_fit(target: torch.Tensor, ranks: list[int], iterations: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Truncated HOSVD of ``target`` refined by ``iterations`` HOOI sweeps: ``(core, factors)`` in float64."""
    d = target.dim()
    factors = [_leading_vectors(target.movedim(k, 0).reshape(target.shape[k], -1), r) for k, r in enumerate(ranks)]
    for _ in range(iterations):
        for k in range(d):
            projected = target
            for j in range(d):
                if j != k:
                    projected = _mode_product(projected[None], factors[j].T[None], j)[0]
            unfolded = projected.movedim(k, 0).reshape(target.shape[k], -1)
            factors[k] = _leading_vectors(unfolded, ranks[k])
    core = target
    for j in range(d):
        core = _mode_product(core[None], factors[j].T[None], j)[0]
    return core, factors


def block_term_fit(weight: torch.Tensor, out_factors: list[int], in_factors: list[int], blocks: int,
                   rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Block-term decomposition of ``weight`` (greedy residual HOSVD + HOOI, then block sweeps; module doc).

    Returns:
        ``(cores, factors)``: ``cores`` (N, R_1..R_d), ``factors[k]`` (N, m_k, n_k, R_k), in the weight's dtype.
    """
    target = tt_tensor(weight.detach().double(), out_factors, in_factors)
    ranks = mode_ranks(list(target.shape), rank)
    fits: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
    residual = target.clone()
    for _ in range(blocks):
        core, factors = _tucker_fit(residual, ranks, HOOI_ITERATIONS)
        residual -= blocks_tensor(core[None], [f[None] for f in factors])
        fits.append((core, factors))
    for _ in range(SWEEPS if blocks > 1 else 0):
        for n in range(blocks):
            core, factors = fits[n]
            others = residual + blocks_tensor(core[None], [f[None] for f in factors])
            fits[n] = _tucker_fit(others, ranks, HOOI_ITERATIONS)
            residual = others - blocks_tensor(fits[n][0][None], [f[None] for f in fits[n][1]])
    cores = torch.stack([core for core, _ in fits]).to(weight.dtype)
    factors = [torch.stack([f[k] for _, f in fits]).reshape(blocks, m, n, ranks[k]).to(weight.dtype)
               for k, (m, n) in enumerate(zip(out_factors, in_factors, strict=True))]
    return cores, factors


class BlockTermLinear(nn.Module):
    """``y = W x + b`` with ``W`` a sum of ``blocks`` Tucker blocks: ``core`` (N, R_1..R_d) and ``factors[k]``
    (N, m_k, n_k, R_k)."""

    def __init__(self, in_features: int, out_features: int, in_factors: list[int], out_factors: list[int],
                 blocks: int, rank: int, bias: bool = True):
        super().__init__()
        if math.prod(in_factors) != in_features or math.prod(out_factors) != out_features \
                or len(in_factors) != len(out_factors):
            raise ValueError(f"block-term shapes {out_factors} x {in_factors} do not fit a "
                             f"{out_features} x {in_features} layer")
        self.in_features, self.out_features = in_features, out_features
        self.in_factors, self.out_factors, self.blocks, self.rank = list(in_factors), list(out_factors), blocks, rank
        ranks = mode_ranks([m * n for m, n in zip(out_factors, in_factors, strict=True)], rank)
        self.core = nn.Parameter(torch.empty(blocks, *ranks))
        self.factors = nn.ParameterList(nn.Parameter(torch.empty(blocks, m, n, r))
                                        for m, n, r in zip(out_factors, in_factors, ranks, strict=True))
        for param in (self.core, *self.factors):  # overwritten by the fit or by the checkpoint
            nn.init.normal_(param, std=0.02)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The dense ``out x in`` matrix the blocks hold (rebuilt on each access)."""
        d = len(self.in_factors)
        flat = [f.reshape(self.blocks, -1, f.shape[-1]) for f in self.factors]
        tensor = blocks_tensor(self.core, flat).reshape([s for m, n in zip(self.out_factors, self.in_factors,
                                                                            strict=True) for s in (m, n)])
        return tensor.permute([*range(0, 2 * d, 2), *range(1, 2 * d, 2)]).reshape(self.out_features,
                                                                                  self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # At inference the rebuilt W is reused until a parameter changes (rebuilding it per call made a MiniLM
        # of block-term layers 8x slower than the dense one at batch 1: bench_low_rank.py).
        return F.linear(x, inference_weight(self, (self.core, *self.factors)), self.bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, in_factors: list[int], out_factors: list[int], blocks: int,
                    rank: int) -> BlockTermLinear:
        """The block-term fit of ``linear``'s weight, on its device and dtype."""
        weight = linear.weight
        out_features, in_features = weight.shape
        layer = cls(in_features, out_features, in_factors, out_factors, blocks, rank, linear.bias is not None)
        layer = layer.to(weight.device, weight.dtype)
        cores, factors = block_term_fit(weight, out_factors, in_factors, blocks, rank)
        with torch.no_grad():
            layer.core.copy_(cores)
            for param, factor in zip(layer.factors, factors, strict=True):
                param.copy_(factor)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        layer.train(linear.training)
        return layer.requires_grad_(weight.requires_grad)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, out_factors={self.out_factors}, " \
               f"in_factors={self.in_factors}, blocks={self.blocks}, rank={self.rank}"
