"""Sparse Sinkhorn attention (Tay et al. 2020, "Sparse Sinkhorn Attention", ICML, section 3), for encoders.

Self-contained (torch only) like :mod:`.linear`, which imports it relatively, so ``save_pretrained`` copies
both files next to the weights for ``trust_remote_code`` users.

The sequence is cut into ``N_B`` blocks of ``B`` tokens (padded internally to a multiple of ``B``, then cut
back). Per head:

1. SortNet (Tay et al. §3.1, "learning to sort"): block summaries -> block-to-block sorting logits ``R``.
   Tay et al. pool the block's input (psi_P) and map it through a small network to one logit per block
   position. Here the summaries are the masked means of the block's queries and keys, and the logits are a
   learned bilinear form per head, ``R_ij = qbar_i W_h kbar_j * scale / temperature`` with ``W_h``
   (head_dim x head_dim) initialised to the identity. Per head rather than shared, because each pretrained
   head attends by its own notion of similarity; bilinear on q/k rather than position logits, so that at
   initialisation every block is already matched with the block its queries like most (a good start for
   recovery from a pretrained softmax model) and the network works at every sequence length.
2. Sinkhorn balancing (Tay et al. §3.2): ``S = F_c(F_r(...F_c(F_r(exp R))))``, alternately normalising rows
   and columns ``sinkhorn_iters`` times, in log space (logsumexp) for stability; ``S`` tends to a doubly
   stochastic matrix, a relaxed permutation. A block is not matched with itself when the sequence has two
   real blocks or more: it already attends to its own block, a self-match would add no context.
3. Attention (Tay et al. §3.3): the sorted keys/values ``psi_S(K)_i = sum_j S_ij K_j`` (token t of sorted
   block i mixes token t of every block j); each query of block i attends, in one softmax, to the ``B``
   keys of its own block and the ``B`` keys of its sorted block (local plus sorted attention). Cost:
   O(n B d) for the attention plus O(N_B^2 d) for sorting and O(N_B^2 B d) = O(n^2 d / B) for the block
   mixing, i.e. a B-fold saving over softmax's O(n^2 d) rather than a truly linear cost.

Padding is exact: padded keys/values are zeroed before any pooling or mixing, padded tokens are masked in the
local block, a sorted slot is weighted by the share of real tokens mixed into it (``log`` of that share is
added to its score, so a slot made only of padding gets weight 0), and blocks with no real token are taken
out of the Sinkhorn balancing (each maps to itself), so a padded batch gives the unpadded outputs.
No Gumbel noise is added (deterministic sorting; the encoder is distilled, not sampled).
"""

from __future__ import annotations

import torch
from torch import nn


class SortNet(nn.Module):
    """Per-head bilinear sorting logits between block summaries (``W_h`` starts as the identity)."""

    def __init__(self, heads: int, head_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.eye(head_dim).repeat(heads, 1, 1))

    def forward(self, qbar: torch.Tensor, kbar: torch.Tensor) -> torch.Tensor:
        """``[b, h, N_B, d]`` query and key block summaries -> ``[b, h, N_B, N_B]`` logits (unscaled)."""
        return torch.einsum("bhid,hde,bhje->bhij", qbar, self.weight.to(qbar.dtype), kbar)


def sinkhorn(logits: torch.Tensor, valid: torch.Tensor, iters: int) -> torch.Tensor:
    """Log of the balanced sorting matrix ``S`` (float32), ``[b, h, N_B, N_B]``.

    ``valid`` (``[b, 1, N_B]``, bool) marks blocks with at least one real token. Rows and columns of empty
    blocks are cut off from the real ones (entries ``-1e30``, exp -> exactly 0) and pinned to the identity,
    so the balancing of the real blocks is the one an unpadded sequence would get.
    """
    nb = logits.shape[-1]
    index = torch.arange(nb, device=logits.device)
    eye = index[:, None] == index[None, :]  # not torch.eye(dtype=bool): ONNX Runtime has no boolean EyeLike
    both = valid[..., :, None] & valid[..., None, :]
    several = valid.sum(-1)[..., None, None] >= 2
    allowed = both & ~(eye & several)
    empty_self = ~valid[..., :, None] & eye
    log_s = torch.where(allowed, logits.float(), torch.full_like(logits, -1e30, dtype=torch.float32))
    log_s = torch.where(empty_self, torch.zeros_like(log_s), log_s)
    for _ in range(iters):  # F_r then F_c (Tay et al. §3.2), in log space
        log_s = log_s - torch.logsumexp(log_s, dim=-1, keepdim=True)
        log_s = log_s - torch.logsumexp(log_s, dim=-2, keepdim=True)
    return log_s


def sinkhorn_attention(sort_net: SortNet, block_size: int, iters: int, temperature: float,
                       query, key, value, keep, scale: float) -> torch.Tensor:
    """Sparse Sinkhorn attention: ``[b, h, n, d]`` q, k, v and ``keep`` (``[b, 1, n, 1]``, 1 = real token)
    -> ``[b, h, n, d]``."""
    batch, heads, n, dim = query.shape
    # Internal padding to whole blocks, masked like the batch's own padding and cut off at the end. Always
    # padded (maybe by 0), the block count read back from a shape, never behind an `if` or a Python
    # ceil-division: a traced ONNX graph must not freeze the sample's length.
    pad = (block_size - n % block_size) % block_size
    real = keep[:, 0, :, 0] > 0  # [b, n]
    query, key, value = (nn.functional.pad(x, (0, 0, 0, pad)) for x in (query, key, value))
    real = nn.functional.pad(real, (0, pad), value=False).reshape(batch, 1, -1, block_size)
    q = query.reshape(batch, heads, -1, block_size, dim)
    # torch.where, not a product: a padded position may hold inf/nan from an earlier layer, and 0 * nan = nan.
    k = torch.where(real[..., None], key.reshape(q.shape), torch.zeros((), dtype=key.dtype, device=key.device))
    v = torch.where(real[..., None], value.reshape(q.shape), torch.zeros((), dtype=value.dtype, device=value.device))
    count = real.sum(-1)  # [b, 1, N_B]
    denominator = count.clamp_min(1)[..., None].to(q.dtype)
    qbar = torch.where(real[..., None], q, torch.zeros((), dtype=q.dtype, device=q.device)).sum(-2) / denominator
    kbar = k.sum(-2) / denominator
    log_s = sinkhorn(sort_net(qbar, kbar) * (scale / temperature), count > 0, iters)
    s = log_s.exp().to(q.dtype)  # [b, h, N_B, N_B]
    # psi_S(K): sorted block i mixes the blocks j, token by token (one batched matmul over flattened blocks)
    k_sorted = (s @ k.flatten(3)).view(q.shape)
    v_sorted = (s @ v.flatten(3)).view(q.shape)
    share = s @ real.to(q.dtype)  # [b, h, N_B, B]: share of real tokens mixed into each sorted slot
    low = torch.finfo(q.dtype).min / 2  # finite: a block with no real token gives finite (ignored) outputs
    bias = torch.cat([torch.where(real, 0.0, low).to(q.dtype).expand(-1, heads, -1, -1),
                      torch.where(share > 0, share.clamp_min(torch.finfo(q.dtype).tiny).log(), low)], dim=-1)
    keys, values = torch.cat([k, k_sorted], dim=3), torch.cat([v, v_sorted], dim=3)  # [b, h, N_B, 2B, d]
    scores = (q * scale) @ keys.transpose(-1, -2) + bias[:, :, :, None, :]  # [b, h, N_B, B, 2B]
    out = torch.softmax(scores, dim=-1) @ values
    return out.flatten(2, 3)[:, :, :n]
