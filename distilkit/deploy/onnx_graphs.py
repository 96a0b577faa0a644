"""Export-friendly forms of distilkit students: what ``torch.onnx.export`` traces.

The BiLSTM's PyTorch forward packs its padded batch (``pack_padded_sequence``) and branches on the data
(left padding, no padding), neither of which an ONNX graph can hold. :class:`ExportableBiLSTM` computes the
same sentence vectors with ONNX's own ``LSTM`` operator instead, one node per layer:

* ``direction="bidirectional"`` runs both directions in one node, and ``sequence_lens`` (each sentence's length)
  tells it where every sentence ends: the forward state stops at the last real token, the backward direction
  starts there, and padding never enters either (ONNX operator spec, ``LSTM``, inputs ``sequence_lens``);
* a pair's two sentences go through that node as *one batch* of twice the rows, so the sequential recurrence
  runs once instead of once per sentence and direction (four unidirectional LSTM nodes before, issue 26: at
  batch 1 on MRPC's shapes the one node took 0.40 ms where the four took 0.58, two threads). Both are padded
  to the longer one's length in the graph (``Shape``/``Max``/``Pad``: a Python ``max`` would be frozen by the
  tracer), and ``sequence_lens`` keeps the padding out of the recurrence;
* stacked layers feed the node's output ``Y`` (``[T, 2, batch, H]``, both directions in sentence order) to the
  next layer as ``[T, batch, 2H]``; ``pooling: max`` takes the max of the top layer's ``Y`` over positions below
  each sentence's length.

An empty sentence is read as one padding token, as the PyTorch model reads it. Inputs must be right-padded,
which :func:`distilkit.models.bilstm.encode_bilstm` guarantees.
"""

from __future__ import annotations

import torch
from torch import nn

#: PyTorch stores an LSTM's gate blocks as i, f, g, o; ONNX as i, o, f, c (c is PyTorch's g).
_ONNX_GATE_ORDER = (0, 3, 1, 2)


def _onnx_gates(weight: torch.Tensor) -> torch.Tensor:
    """A PyTorch LSTM weight or bias (gate blocks stacked on dim 0) with its blocks in ONNX's order."""
    blocks = weight.chunk(4, dim=0)
    return torch.cat([blocks[i] for i in _ONNX_GATE_ORDER], dim=0)


def lstm_reference(x: torch.Tensor, lengths: torch.Tensor, w: torch.Tensor, r: torch.Tensor,
                   b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What ONNX's bidirectional ``LSTM`` computes, in PyTorch: the values the tracer sees for that node.

    Args:
        x: ``[T, batch, input]`` time-major inputs.
        lengths: ``[batch]`` int32 sentence lengths (``sequence_lens``).
        w, r, b: ONNX-layout weights ``[2, 4H, input]``, ``[2, 4H, H]``, ``[2, 8H]`` (gates i, o, f, c).

    Returns:
        ``Y`` ``[T, 2, batch, H]`` (zero beyond each length) and ``Y_h`` ``[2, batch, H]``: the forward state at
        each sentence's last token and the backward state at its first.
    """
    steps, batch, hidden = x.shape[0], x.shape[1], r.shape[-1]
    valid = torch.arange(steps).unsqueeze(1) < lengths.long().unsqueeze(0)  # [T, batch]
    outputs, finals = [], []
    for direction in range(2):
        h, c = x.new_zeros(batch, hidden), x.new_zeros(batch, hidden)
        y = x.new_zeros(steps, batch, hidden)
        bias = b[direction, :4 * hidden] + b[direction, 4 * hidden:]
        for t in (range(steps) if direction == 0 else reversed(range(steps))):
            i, o, f, g = (x[t] @ w[direction].T + h @ r[direction].T + bias).chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            # Beyond a sentence's length nothing changes: the backward direction starts at its last token.
            keep = valid[t].unsqueeze(1)
            c, h = torch.where(keep, c_new, c), torch.where(keep, h_new, h)
            y[t] = torch.where(keep, h_new, torch.zeros_like(h_new))
        outputs.append(y)
        finals.append(h)
    return torch.stack(outputs, dim=1), torch.stack(finals)


class _BidirectionalLSTM(torch.autograd.Function):
    """One ONNX ``LSTM`` node (bidirectional, with ``sequence_lens``) in the traced graph."""

    @staticmethod
    def forward(ctx, x, lengths, w, r, b, hidden_size: int):  # noqa: ARG004 -- hidden_size is for symbolic
        return lstm_reference(x, lengths, w, r, b)

    @staticmethod
    def symbolic(g, x, lengths, w, r, b, hidden_size: int):
        y, y_h, _ = g.op("LSTM", x, w, r, b, lengths, direction_s="bidirectional", hidden_size_i=hidden_size,
                         outputs=3)
        return y, y_h


class _PadToCommonLength(torch.autograd.Function):
    """Right-pads two ``[batch, len]`` id or mask tensors with ``value`` to the longer one's length.

    In the graph: ``Shape`` -> ``Max`` -> ``Pad``, so the common length follows each batch's inputs (a Python
    ``max`` of the two lengths would be frozen into the trace as the sample's)."""

    @staticmethod
    def forward(ctx, a, b, value: int):  # noqa: ARG004
        length = max(a.shape[1], b.shape[1])
        return (torch.nn.functional.pad(a, (0, length - a.shape[1]), value=value),
                torch.nn.functional.pad(b, (0, length - b.shape[1]), value=value))

    @staticmethod
    def symbolic(g, a, b, value: int):
        def const(values):
            return g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

        lengths = [g.op("Gather", g.op("Shape", x), const([1]), axis_i=0) for x in (a, b)]
        longest = g.op("Max", *lengths)
        # ONNX Pad's pads: [begin_0, begin_1, end_0, end_1]; only the end of the sequence axis grows.
        return tuple(g.op("Pad", x, g.op("Concat", const([0, 0, 0]), g.op("Sub", longest, length), axis_i=0),
                          const(value), mode_s="constant") for x, length in zip((a, b), lengths))


class ExportableBiLSTM(nn.Module):
    """A :class:`~distilkit.models.bilstm.BiLSTMForSequenceClassification` rewritten for ONNX (see module doc).

    Takes ``input_ids``/``attention_mask`` (and ``input_ids_b``/``attention_mask_b`` for pair models),
    returns the logits.
    """

    def __init__(self, model):
        super().__init__()
        lstm = model.lstm
        if not lstm.bidirectional or not lstm.batch_first:
            raise ValueError("ExportableBiLSTM expects the distilkit BiLSTM (bidirectional, batch_first)")
        self.embeddings, self.is_pair = model.embeddings, model.config.is_pair
        self.max_pool, self.hidden_size = model.config.pooling == "max", lstm.hidden_size
        self.layers, self.pad_id = lstm.num_layers, model.config.pad_token_id or 0
        with torch.no_grad():
            for layer in range(lstm.num_layers):
                weights = {name: [getattr(lstm, f"{name}_l{layer}{suffix}", None) for suffix in ("", "_reverse")]
                           for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                zeros = torch.zeros(4 * lstm.hidden_size)
                bias = [torch.cat([_onnx_gates(b_ih if b_ih is not None else zeros),
                                   _onnx_gates(b_hh if b_hh is not None else zeros)])
                        for b_ih, b_hh in zip(weights["bias_ih"], weights["bias_hh"])]
                self.register_buffer(f"w{layer}", torch.stack([_onnx_gates(w) for w in weights["weight_ih"]]))
                self.register_buffer(f"r{layer}", torch.stack([_onnx_gates(w) for w in weights["weight_hh"]]))
                self.register_buffer(f"b{layer}", torch.stack(bias))
        self.mlp, self.classifier = model.mlp, model.classifier  # eval mode: dropout is the identity

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence vectors ``[batch, 2H]`` of right-padded ``input_ids`` (see the module doc)."""
        lengths = attention_mask.long().sum(dim=1).clamp(min=1)  # [batch]
        x = self.embeddings(input_ids).transpose(0, 1)  # [T, batch, E]: ONNX LSTM's default layout
        sequence_lens = lengths.to(torch.int32)
        for layer in range(self.layers):
            y, y_h = _BidirectionalLSTM.apply(x, sequence_lens, getattr(self, f"w{layer}"),
                                              getattr(self, f"r{layer}"), getattr(self, f"b{layer}"),
                                              self.hidden_size)
            x = y.permute(0, 2, 1, 3).flatten(2)  # [T, 2, batch, H] -> [T, batch, 2H]
        if self.max_pool:  # padding positions (t >= length) set to -inf never win the max
            steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
            valid = (steps < lengths.unsqueeze(0)).unsqueeze(-1)  # [T, batch, 1]
            return x.masked_fill(~valid, float("-inf")).amax(dim=0)
        return torch.cat([y_h[0], y_h[1]], dim=-1)

    def forward(self, input_ids, attention_mask, input_ids_b=None, attention_mask_b=None) -> torch.Tensor:
        if not self.is_pair:
            return self.classifier(torch.relu(self.mlp(self.encode(input_ids, attention_mask))))
        # Both sentences in one batch, padded to the longer one (module doc); one recurrence for the pair.
        ids = torch.cat(_PadToCommonLength.apply(input_ids, input_ids_b, self.pad_id))
        mask = torch.cat(_PadToCommonLength.apply(attention_mask, attention_mask_b, 0))
        h1, h2 = self.encode(ids, mask).view(2, -1, 2 * self.hidden_size).unbind(0)
        features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1)
        return self.classifier(torch.relu(self.mlp(features)))
