"""The BiLSTM's batch-1 recurrence (issue 26): every chain of a 1-layer BiLSTM stepped in one loop.

Self-contained (torch and the standard library only): ``bilstm.py`` imports it relatively, and
``save_pretrained`` copies both next to the weights for ``trust_remote_code`` loading without distilkit.
"""

from __future__ import annotations

import warnings

import torch


def batch1_recurrence(sentences: list[torch.Tensor], table: torch.Tensor, w_hh: torch.Tensor,
                      max_pool: bool) -> torch.Tensor:
    """Sentence vectors ``[len(sentences), 2 * H]`` of a 1-layer BiLSTM, all chains stepped together.

    The ``2 * len(sentences)`` chains (each sentence forward, and reversed for the backward direction) advance
    in one loop: step ``t`` is one batched product ``h @ w_hh`` per direction for every sentence at once, so a
    pair costs as many steps as its longer sentence instead of four LSTM passes. ``table`` holds every token's
    input-side gate pre-activations ``x W_ih^T + b_ih + b_hh`` (``[vocab, 2, 4H]``, gates ordered i, f, o, g so
    the three sigmoid gates are contiguous), so the input projection is a lookup. Chains are end-aligned: a
    shorter one starts late, and while it waits its input gate gets -1e4, whose sigmoid is exactly 0, so its
    state stays at the zero state ``nn.LSTM`` starts from (Hochreiter & Schmidhuber 1997 cell; gate equations
    as in ``torch.nn.LSTM``'s documentation).

    Args:
        sentences: 1-D token-id tensors, each with at least one token.
        table: ``[vocab, 2, 4H]`` gate pre-activations (forward, backward).
        w_hh: ``[2, H, 4H]`` recurrent weights, transposed, same gate order.
        max_pool: Element-wise max of each direction's outputs over the sentence (``pooling: max``) instead
            of the last states.
    """
    hidden = w_hh.shape[1]
    steps = 0
    for ids in sentences:
        steps = max(steps, ids.shape[0])
    count = len(sentences)
    inputs = table.new_zeros(steps, 2, count, 4 * hidden)
    inputs[:, :, :, :hidden] = -1e4
    for k, ids in enumerate(sentences):
        gates = table[ids]
        inputs[steps - ids.shape[0]:, 0, k] = gates[:, 0]
        inputs[steps - ids.shape[0]:, 1, k] = gates[:, 1].flip(0)
    h = table.new_zeros(2, count, hidden)
    c = table.new_zeros(2, count, hidden)
    outputs: list[torch.Tensor] = []
    for t in range(steps):
        gates = torch.baddbmm(inputs[t], h, w_hh)
        sig = gates[:, :, :3 * hidden].sigmoid()
        c = torch.addcmul(sig[:, :, hidden:2 * hidden] * c, sig[:, :, :hidden], gates[:, :, 3 * hidden:].tanh())
        h = sig[:, :, 2 * hidden:] * c.tanh()
        if max_pool:
            outputs.append(h)
    if max_pool:
        every = torch.stack(outputs)
        for k, ids in enumerate(sentences):
            every[:steps - ids.shape[0], :, k] = float("-inf")  # a waiting chain's zeros are not outputs
        h = every.amax(dim=0)
    return h.transpose(0, 1).reshape(count, 2 * hidden)


#: The compiled recurrence, once per process (``compiled_recurrence``).
_COMPILED: dict[str, object] = {}


def compiled_recurrence():
    """:func:`batch1_recurrence` through TorchScript, compiled once per process (eager if that fails).

    TorchScript is deprecated, but it is the one pure-PyTorch way found to run a small recurrence without
    Python's overhead on each of its ~7 ops per step (MRPC dev pairs: 1.12-1.62 ms scripted, 1.40-1.93 ms
    eager, 1.62-2.64 ms ``nn.LSTM``; ``scripts/bench_bilstm_b1.py``). Its deprecation warning is silenced here;
    if scripting fails, the same function runs eagerly (identical results).
    """
    if "fn" not in _COMPILED:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _COMPILED["fn"] = torch.jit.script(batch1_recurrence)
        except Exception:  # any scripting failure (a torch without TorchScript): the eager loop is exact too
            _COMPILED["fn"] = batch1_recurrence
    return _COMPILED["fn"]
