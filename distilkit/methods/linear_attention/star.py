"""Star-Transformer attention (Guo et al. 2019, "Star-Transformer", NAACL, section 3 and Algorithm 1), for
pretrained encoders.

Self-contained (torch only) like :mod:`.linear`, which imports it relatively, so ``save_pretrained`` copies it
next to the weights for ``trust_remote_code`` users.

Guo et al. replace the fully connected attention graph by a star: every token (a *satellite*) attends only to
its ring neighbours, its own embedding and one shared *relay* node; the relay attends to every satellite and
itself. One cycle ``t`` of Algorithm 1 is

* satellite update: ``h_i^t = MultiAtt(h_i^{t-1}, [h_{i-1}^{t-1}; h_i^{t-1}; h_{i+1}^{t-1}; e_i; s^{t-1}])``,
* relay update: ``s^t = MultiAtt(s^{t-1}, [s^{t-1}; H^t])``,

starting from ``s^0 = mean(E)``, the average of the token embeddings.

Swapped into a pretrained BERT layer, each layer is one cycle and reuses that layer's Q/K/V projections and
heads. The relay is not carried from layer to layer (the encoder has no slot for it), so each layer rebuilds
the relay its satellites read from the layer's input ``H`` (the previous cycle's satellites):

1. ``s^0``: the masked mean of the layer's input, as Guo et al. initialise the relay. The projections are
   affine, so its query/key/value are exactly the masked means of the tokens' ``q``, ``k``, ``v``.
2. Relay update over ``[s^0; H]``: weights ``a = softmax(q_s [k_s; K]^T * scale)`` over the relay itself and
   every real token. The updated relay is the ``a``-weighted average of those states, so (affine projections
   again) its key is ``a [k_s; K]`` and its value ``a [v_s; V]``. Guo et al.'s output projection, ReLU and
   LayerNorm on the relay are dropped: they have no pretrained counterpart, and without them the relay keeps
   an exact key in the layer's key space.
3. Satellite update: token ``i`` attends, in one softmax, to the real tokens ``i - w .. i + w`` (itself
   included, ``w = star_window``, Guo et al.'s ring is ``w = 1``) and to the updated relay.

The separate ``e_i`` slot of Guo et al. is left out: the window's centre is the token's own layer input, which
(through BERT's residual stream) already carries its embedding. Cost per head: O(n (2w + 2) d) for the
satellites plus O(n d) for the relay, linear in the sequence length n.

Padding is exact: padded keys/values are replaced by zeros (``torch.where``, so even inf/nan left there by
an earlier layer stays out), the relay's means and attention count real tokens only, and a window never
reaches a padded position, so a padded batch gives every real token the outputs of its unpadded sentence.
"""

from __future__ import annotations

import torch
from torch import nn

#: Guo et al.'s ring: the previous token, the token itself and the next one.
DEFAULT_WINDOW = 1


def _shift(x: torch.Tensor, offset: int, window: int) -> torch.Tensor:
    """``x`` (``n + 2 w`` long along dim 2: padded by ``w`` on both sides) at positions ``i + offset``.

    ``narrow`` with the length read from the tensor: a traced ONNX graph keeps the sequence length dynamic.
    """
    n = x.shape[2] - 2 * window
    return x.narrow(2, window + offset, n)


def star_attention(window: int, query, key, value, keep, scale: float) -> torch.Tensor:
    """Star attention: ``[b, h, n, d]`` q, k, v and ``keep`` (``[b, 1, n, 1]``, 1 = real token)
    -> ``[b, h, n, d]``.

    Args:
        window: Neighbours on each side a token attends to (Guo et al.'s ring: 1).
        query: Queries of the satellites (the tokens).
        key: Keys of the tokens.
        value: Values of the tokens.
        keep: 1 for real tokens, 0 for padding.
        scale: Score scaling (``1 / sqrt(d)`` for BERT).
    """
    real = keep > 0  # [b, 1, n, 1]
    zero = torch.zeros((), dtype=key.dtype, device=key.device)
    # Padded by the window on both sides once; the unshifted tokens are a view of that, so k and v are held
    # once (inference memory stays near elu's, a few [b, h, n, d] tensors).
    pad = (0, 0, window, window)
    k_pad = nn.functional.pad(torch.where(real, key, zero), pad)
    v_pad = nn.functional.pad(torch.where(real, value, zero), pad)
    real_pad = nn.functional.pad(real, pad, value=False)
    k, v = _shift(k_pad, 0, window), _shift(v_pad, 0, window)
    count = real.sum(2, keepdim=True).clamp_min(1).to(query.dtype)  # [b, 1, 1, 1]
    # 1. s^0 = mean of the layer's input: its q, k, v are the means of the tokens' (affine projections).
    q_s = torch.where(real, query, zero).sum(2, keepdim=True) / count
    k_s, v_s = k.sum(2, keepdim=True) / count, v.sum(2, keepdim=True) / count
    # 2. Relay update over [s^0; H] (Guo et al.'s s^t = MultiAtt(s^{t-1}, [s^{t-1}; H])), padded tokens masked.
    low = torch.finfo(query.dtype).min / 2  # finite: a fully padded sequence still gives finite outputs
    to_self = (q_s * k_s).sum(-1, keepdim=True) * scale  # [b, h, 1, 1]
    to_tokens = (q_s @ k.transpose(-1, -2)) * scale  # [b, h, 1, n]
    to_tokens = torch.where(real.transpose(-1, -2), to_tokens, torch.full_like(to_tokens, low))
    a = torch.softmax(torch.cat([to_self, to_tokens], dim=-1), dim=-1)  # [b, h, 1, 1 + n]
    k_r = a[..., :1] * k_s + a[..., 1:] @ k  # the updated relay's key and value: [b, h, 1, d]
    v_r = a[..., :1] * v_s + a[..., 1:] @ v
    # 3. Satellite update: token i over the real tokens i - w .. i + w and the relay, in one softmax. One
    # shifted view per offset, scores and outputs accumulated per offset: no [n, 2w + 1, d] window tensor, so
    # the working memory stays a few [b, h, n, d] tensors.
    offsets = range(-window, window + 1)
    local = [torch.where(_shift(real_pad, o, window), (query * _shift(k_pad, o, window)).sum(-1, keepdim=True),
                         torch.full((), low, dtype=query.dtype, device=query.device)) for o in offsets]
    relay = (query * k_r).sum(-1, keepdim=True)
    weights = torch.softmax(torch.cat([*local, relay], dim=-1) * scale, dim=-1)  # [b, h, n, 2w + 2]
    out = weights[..., -1:] * v_r
    for j, o in enumerate(offsets):
        out = out + weights[..., j:j + 1] * _shift(v_pad, o, window)
    return out
