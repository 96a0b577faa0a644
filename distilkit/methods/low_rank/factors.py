"""Factored layers and their truncated-SVD initialisation.

A linear layer ``y = W x + b`` with ``W`` (out x in) becomes ``y = U (V x) + b`` with ``U`` (out x r) and
``V`` (r x in): ``r (out + in)`` weights instead of ``out * in``. By the Eckart-Young theorem the rank-``r``
truncation of the SVD ``W = U_r S_r V_r^T`` is the closest rank-``r`` matrix in Frobenius norm; the singular
values are split evenly between the factors, ``U = U_r sqrt(S_r)`` and ``V = sqrt(S_r) V_r^T``, so both
start on the same scale when distillation trains them (Denton et al. 2014, section 3.2; Jaderberg et al. 2014;
Noach & Goldberg 2020 for BERT).

Block-diagonal form (``blocks = k``): the input splits into ``k`` groups of ``in / k`` features and each column
block ``W_b`` gets its own rank-``r`` SVD, ``W_b ~ U_b V_b``. Then ``W x = sum_b U_b V_b x_b =
[U_1 ... U_k] blockdiag(V_1, ..., V_k) x``: the first factor is block-diagonal, the second dense,
``r (k out + in)`` weights (the block-wise low rank of GroupReduce, Chen et al. 2018, blocked by input feature).

Embedding (ALBERT, Lan et al. 2020, section 3.1): the ``V x H`` table becomes a ``V x E`` table and an
``E x H`` projection, ``V E + E H`` weights, initialised by the same truncated SVD.

The factors are ordinary ``nn.Linear``/``nn.Embedding`` modules, so the state dict names them
(``<layer>.first.weight``, ``<layer>.second.weight``, ``<embedding>.table.weight``, ``<embedding>.project.weight``).
"""

from __future__ import annotations

import torch
from torch import nn


def singular_values(weight: torch.Tensor, blocks: int = 1) -> torch.Tensor:
    """Singular values of each column block of ``weight`` (``[blocks, min(out, in / blocks)]``, descending)."""
    grouped = weight.detach().double().reshape(weight.shape[0], blocks, -1).transpose(0, 1)
    return torch.linalg.svdvals(grouped)


def truncated_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, V)`` with ``U V`` the best rank-``rank`` approximation of ``weight`` (Eckart-Young): ``U =
    U_r sqrt(S_r)`` (out x rank), ``V = sqrt(S_r) V_r^T`` (rank x in). In float64, cast back to the weight's
    dtype: full rank then reproduces the layer to float32 rounding."""
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    first, second = root[:, None] * vh[:rank], u[:, :rank] * root[None, :]
    return second.to(weight.dtype), first.to(weight.dtype)


class BlockDiagonalLinear(nn.Module):
    """``x`` (..., in) -> (..., blocks * rank): block ``b`` of the output is ``weight[b] @ x_b``, where ``x_b`` is the
    ``b``-th group of ``in / blocks`` input features (a block-diagonal matrix, stored as its blocks only)."""

    def __init__(self, in_features: int, rank: int, blocks: int):
        super().__init__()
        self.in_features, self.rank, self.blocks = in_features, rank, blocks
        self.weight = nn.Parameter(torch.empty(blocks, rank, in_features // blocks))
        nn.init.normal_(self.weight, std=0.02)  # overwritten by the SVD or by the checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.reshape(*x.shape[:-1], self.blocks, self.in_features // self.blocks)
        return torch.einsum("...bi,bri->...br", grouped, self.weight).reshape(*x.shape[:-1], self.blocks * self.rank)


class LowRankLinear(nn.Module):
    """``y = second(first(x))``: a linear layer of rank ``rank`` (per input block when ``blocks > 1``)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True, blocks: int = 1):
        super().__init__()
        self.in_features, self.out_features, self.rank, self.blocks = in_features, out_features, rank, blocks
        self.first = (nn.Linear(in_features, rank, bias=False) if blocks == 1
                      else BlockDiagonalLinear(in_features, rank, blocks))
        self.second = nn.Linear(blocks * rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, blocks: int = 1) -> LowRankLinear:
        """The factorisation of ``linear`` by truncated SVD (per input block), on its device and dtype."""
        weight = linear.weight
        out_features, in_features = weight.shape
        layer = cls(in_features, out_features, rank, linear.bias is not None, blocks).to(weight.device, weight.dtype)
        pairs = [truncated_factors(w, rank) for w in weight.detach().chunk(blocks, dim=1)]
        with torch.no_grad():
            layer.second.weight.copy_(torch.cat([u for u, _ in pairs], dim=1))
            layer.first.weight.copy_(pairs[0][1] if blocks == 1 else torch.stack([v for _, v in pairs]))
            if linear.bias is not None:
                layer.second.bias.copy_(linear.bias)
        layer.train(linear.training)
        return layer.requires_grad_(weight.requires_grad)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, " \
               f"blocks={self.blocks}"


class FactorizedEmbedding(nn.Module):
    """A word embedding ``V x H`` as ``table`` (``V x E``) followed by ``project`` (``E x H``, no bias)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, rank: int, padding_idx: int | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.rank = num_embeddings, embedding_dim, rank
        self.padding_idx = padding_idx
        self.table = nn.Embedding(num_embeddings, rank, padding_idx=padding_idx)
        self.project = nn.Linear(rank, embedding_dim, bias=False)

    @property
    def weight(self) -> nn.Parameter:
        """The ``V x E`` table: what code reaching for "the input embedding's weights" (gradients, freezing,
        sparse-gradient checks) should see; it is the only part indexed by token."""
        return self.table.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.project(self.table(input_ids))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, rank: int) -> FactorizedEmbedding:
        """ALBERT's factorisation of ``embedding`` initialised by truncated SVD of its table."""
        weight = embedding.weight
        layer = cls(*weight.shape, rank, embedding.padding_idx).to(weight.device, weight.dtype)
        rows, projection = truncated_factors(weight, rank)
        with torch.no_grad():
            layer.table.weight.copy_(rows)
            layer.project.weight.copy_(projection.T)
        layer.train(embedding.training)
        return layer.requires_grad_(weight.requires_grad)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, rank={self.rank}, padding_idx={self.padding_idx}"
