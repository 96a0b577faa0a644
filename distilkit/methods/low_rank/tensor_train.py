"""Tensor-train (TT-matrix) linear layers and their TT-SVD initialisation.

A linear layer ``W`` (out x in) with ``out = m_1 ... m_d`` and ``in = n_1 ... n_d`` is read as a ``d``-way
tensor whose ``k``-th mode is the pair ``(i_k, j_k)`` of an output and an input index, of size ``m_k n_k``
(the TT-matrix format, Oseledets 2011 section 6; Novikov et al. 2015, "Tensorizing Neural Networks", eq. 3):

    W((i_1..i_d), (j_1..j_d)) = G_1[i_1, j_1] G_2[i_2, j_2] ... G_d[i_d, j_d],

with ``G_k[i_k, j_k]`` an ``r_{k-1} x r_k`` matrix (``r_0 = r_d = 1``). Core ``k`` is stored as a tensor
``(r_{k-1}, m_k, n_k, r_k)``, so the layer holds ``sum_k r_{k-1} m_k n_k r_k`` weights instead of ``out * in``.
Row and column indices are row-major (``i_1`` the most significant), which is how ``reshape`` splits them.

TT-SVD (Oseledets 2011, Algorithm 1) finds the cores by sequential truncated SVDs: the tensor is unfolded as
``(m_1 n_1) x (rest)``, truncated to rank ``r_1``, the left singular vectors become ``G_1`` and ``S V^T``,
reshaped ``(r_1 m_2 n_2) x (rest)``, is split the same way, and so on. By Theorem 2.2 the result satisfies
``||W - TT||_F^2 <= sum_k eps_k^2`` with ``eps_k^2`` the squared singular values of the ``k``-th unfolding of
``W`` (``(m_1 n_1 ... m_k n_k) x (m_{k+1} n_{k+1} ... m_d n_d)``) beyond ``r_k``; at full ranks the cores
reproduce ``W``. The algorithm leaves every core but the last orthonormal and the whole norm in the last one;
the cores are then rescaled to equal Frobenius norms (scalars whose product is 1, so ``W`` is unchanged) so no
core starts orders of magnitude larger than the others when distillation trains them.

The layer's forward rebuilds ``W`` from the cores and applies it (``F.linear``) unless contracting the input
with the cores one by one takes fewer multiply-adds for the tokens at hand (:meth:`TTLinear.forward`). At the
ranks a 50% budget gives a MiniLM layer (``r ~ 20-60`` over modes of ``m_k n_k ~ 36-128``) contracting one token
costs 30-40 times a dense product (measured single-thread on a 384 x 384 layer at ranks [64, 36]: 104 ms to
contract 64 tokens, 4.8 ms to rebuild and multiply), so the rebuild wins at every batch; without autograd the
rebuilt ``W`` is kept until a core changes (inference pays it once). The contraction serves small ranks.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def unfolding_bounds(out_factors: list[int], in_factors: list[int]) -> list[int]:
    """``min(prod_{i<=k} m_i n_i, prod_{i>k} m_i n_i)`` for each bond ``k = 1..d-1``: the rank of the ``k``-th
    unfolding, above which a TT rank cannot go (Oseledets 2011, Theorem 2.1)."""
    modes = [m * n for m, n in zip(out_factors, in_factors, strict=True)]
    return [min(math.prod(modes[:k]), math.prod(modes[k:])) for k in range(1, len(modes))]


def tt_parameters(out_factors: list[int], in_factors: list[int], ranks: list[int]) -> int:
    """Weights of the cores: ``sum_k r_{k-1} m_k n_k r_k`` with ``r_0 = r_d = 1``."""
    bonds = [1, *ranks, 1]
    return sum(bonds[k] * m * n * bonds[k + 1] for k, (m, n) in enumerate(zip(out_factors, in_factors, strict=True)))


def tt_tensor(weight: torch.Tensor, out_factors: list[int], in_factors: list[int]) -> torch.Tensor:
    """``W`` (out x in) as the ``d``-way tensor ``[m_1 n_1, ..., m_d n_d]`` of the TT-matrix format."""
    d = len(out_factors)
    grid = weight.reshape(*out_factors, *in_factors)
    return grid.permute([p for k in range(d) for p in (k, d + k)]).reshape([m * n for m, n in
                                                                            zip(out_factors, in_factors, strict=True)])


def unfolding_spectra(weight: torch.Tensor, out_factors: list[int], in_factors: list[int]) -> list[torch.Tensor]:
    """The squared singular values (float64, descending) of each of the ``d - 1`` unfoldings of ``W``'s
    TT-matrix tensor: ``gains[k][j]`` is what rank ``j + 1`` at bond ``k + 1`` adds (Theorem 2.2's ``sigma^2``)."""
    tensor = tt_tensor(weight.detach().double(), out_factors, in_factors)
    modes = list(tensor.shape)
    return [torch.linalg.svdvals(tensor.reshape(math.prod(modes[:k]), -1)).pow(2) for k in range(1, len(modes))]


def tt_svd(weight: torch.Tensor, out_factors: list[int], in_factors: list[int],
           ranks: list[int]) -> tuple[list[torch.Tensor], list[float]]:
    """TT-SVD of ``weight`` (Oseledets 2011, Algorithm 1) with the given bond ranks, in float64.

    Returns:
        ``(cores, discarded)``: ``cores[k]`` of shape ``(r_{k-1}, m_k, n_k, r_k)`` in the weight's dtype, and
        ``discarded[k]``, the sum of the squared singular values dropped at step ``k`` (their total is
        ``||W - TT||_F^2`` in exact arithmetic: the cores before the last come out orthonormal).
    """
    tensor = tt_tensor(weight.detach().double(), out_factors, in_factors)
    modes = list(tensor.shape)
    cores, discarded = [], []
    rest, left = tensor.reshape(modes[0], -1), 1
    for k, rank in enumerate(ranks):
        u, s, vh = torch.linalg.svd(rest, full_matrices=False)
        discarded.append(float(s[rank:].pow(2).sum()))
        cores.append(u[:, :rank].reshape(left, out_factors[k], in_factors[k], rank))
        left = rank
        rest = (s[:rank, None] * vh[:rank]).reshape(rank * modes[k + 1], -1)
    cores.append(rest.reshape(left, out_factors[-1], in_factors[-1], 1))
    # Equal norms: scaling core k by c_k with prod c_k = 1 leaves the product unchanged (the truncations above
    # are made on the unscaled remainders, as Algorithm 1 requires).
    norms = torch.stack([core.norm() for core in cores])
    if bool((norms > 0).all()):
        scale = norms.log().mean().exp() / norms
        cores = [core * c for core, c in zip(cores, scale, strict=True)]
    return [core.to(weight.dtype) for core in cores], discarded


def tt_matrix(cores: list[torch.Tensor] | nn.ParameterList) -> torch.Tensor:
    """The ``out x in`` matrix the cores represent (eq. 3 of Novikov et al. 2015), by contracting neighbouring
    cores: ``(O, I, r) x (r, m, n, s) -> (O m, I n, s)``."""
    first = cores[0]
    whole = first.reshape(first.shape[1], first.shape[2], first.shape[3])
    for core in list(cores)[1:]:
        rows, cols = whole.shape[0] * core.shape[1], whole.shape[1] * core.shape[2]
        whole = torch.einsum("oir,rmns->omins", whole, core).reshape(rows, cols, core.shape[3])
    return whole.squeeze(-1)


def inference_weight(module: nn.Module, params) -> torch.Tensor:
    """The dense ``W`` a factorised layer holds (``module.weight``, rebuilt from ``params``), reused while none of
    ``params`` changes when nothing needs the rebuild itself: no autograd (inference), not inside an ONNX/JIT
    trace or a compile (the graph must hold the rebuild from the factors, not a constant). A model that only
    predicts pays the rebuild once, as ONNX Runtime's constant folding does for the exported graph. The key is each
    parameter's storage and version counter, which an optimizer step, ``load_state_dict`` or ``.to()`` changes.
    The dense copy costs its memory (``out x in`` floats) while the module lives; the checkpoint stays factorised."""
    if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return module.weight
    key = tuple((param.data_ptr(), param._version, param.dtype) for param in params)
    cached = module.__dict__.get("_cached_weight")
    if cached is None or cached[0] != key:
        cached = (key, module.weight)
        module.__dict__["_cached_weight"] = cached
    return cached[1]


class TTLinear(nn.Module):
    """``y = W x + b`` with ``W`` in the TT-matrix format: ``cores[k]`` is ``(r_{k-1}, m_k, n_k, r_k)``."""

    def __init__(self, in_features: int, out_features: int, in_factors: list[int], out_factors: list[int],
                 ranks: list[int], bias: bool = True):
        super().__init__()
        if math.prod(in_factors) != in_features or math.prod(out_factors) != out_features \
                or len(in_factors) != len(out_factors) or len(ranks) != len(in_factors) - 1:
            raise ValueError(f"TT shapes {out_factors} x {in_factors}, ranks {ranks} do not fit a "
                             f"{out_features} x {in_features} layer")
        self.in_features, self.out_features = in_features, out_features
        self.in_factors, self.out_factors, self.ranks = list(in_factors), list(out_factors), list(ranks)
        bonds = [1, *ranks, 1]
        self.cores = nn.ParameterList(nn.Parameter(torch.empty(bonds[k], m, n, bonds[k + 1]))
                                      for k, (m, n) in enumerate(zip(out_factors, in_factors, strict=True)))
        for core in self.cores:  # overwritten by TT-SVD or by the checkpoint
            nn.init.normal_(core, std=0.02)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self._contract_cost, self._rebuild_cost = self._costs()

    def _costs(self) -> tuple[int, int]:
        """Multiply-adds per token of the core-by-core contraction, and of rebuilding ``W`` once."""
        bonds, d = [1, *self.ranks, 1], len(self.ranks) + 1
        contract = sum(math.prod(self.out_factors[:k + 1]) * bonds[k] * self.in_factors[k] * bonds[k + 1]
                       * math.prod(self.in_factors[k + 1:]) for k in range(d))
        rebuild = sum(math.prod(self.out_factors[:k + 1]) * math.prod(self.in_factors[:k + 1]) * bonds[k]
                      * bonds[k + 1] for k in range(1, d))
        return contract, rebuild

    @property
    def weight(self) -> torch.Tensor:
        """The dense ``out x in`` matrix the cores hold (rebuilt on each access)."""
        return tt_matrix(self.cores)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.numel() // self.in_features
        dense = self._rebuild_cost + tokens * self.in_features * self.out_features
        if tokens * self._contract_cost < dense:
            return self._contract(x)
        return F.linear(x, inference_weight(self, self.cores), self.bias)

    def _contract(self, x: torch.Tensor) -> torch.Tensor:
        """Contract the input with one core at a time (Novikov et al. 2015, section 4): the state is
        ``(batch * m_1..m_{k-1}, r_{k-1}, n_k, n_{k+1}..n_d)``; output modes join the batch as they appear."""
        lead = x.shape[:-1]
        state = x.reshape(-1, 1, self.in_features)
        for core in self.cores:
            rank, n_k = core.shape[0], core.shape[2]
            state = state.reshape(state.shape[0], rank, n_k, -1)
            state = torch.einsum("arnz,rmns->amsz", state, core)
            state = state.reshape(-1, core.shape[3], state.shape[-1])
        y = state.reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y

    @classmethod
    def from_linear(cls, linear: nn.Linear, in_factors: list[int], out_factors: list[int],
                    ranks: list[int]) -> TTLinear:
        """The TT-SVD of ``linear``'s weight at ``ranks``, on its device and dtype."""
        weight = linear.weight
        out_features, in_features = weight.shape
        layer = cls(in_features, out_features, in_factors, out_factors, ranks, linear.bias is not None)
        layer = layer.to(weight.device, weight.dtype)
        cores, _ = tt_svd(weight, out_factors, in_factors, ranks)
        with torch.no_grad():
            for param, core in zip(layer.cores, cores, strict=True):
                param.copy_(core)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        layer.train(linear.training)
        return layer.requires_grad_(weight.requires_grad)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, out_factors={self.out_factors}, " \
               f"in_factors={self.in_factors}, ranks={self.ranks}"
