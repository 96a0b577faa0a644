"""Export-friendly forms of distilkit students: what ``torch.onnx.export`` traces.

The BiLSTM's PyTorch forward packs its padded batch (``pack_padded_sequence``) and branches on the data
(left padding, no padding), neither of which an ONNX graph can hold. :class:`ExportableBiLSTM` computes the
same sentence vectors with fixed-shape operations only:

* the forward direction runs over the right-padded batch and reads its output at position ``length - 1``
  (padding comes after the last real token, so it never reaches that state);
* the backward direction runs forward over each sentence *reversed within its length* (a gather; padding
  stays in place) and reads position ``length - 1`` too, which is the backward state at the first token;
* stacked layers feed ``[forward_t, backward_t]`` (the reversed outputs gathered back) to the next layer;
* ``pooling: max`` takes the max of the top layer's ``[forward_t, backward_t]`` over positions below the length.

An empty sentence is read as one padding token, as the PyTorch model reads it. Inputs must be right-padded,
which :func:`distilkit.models.bilstm.encode_bilstm` guarantees.
"""

from __future__ import annotations

import torch
from torch import nn


def _directions(lstm: nn.LSTM) -> list[tuple[nn.LSTM, nn.LSTM]]:
    """One unidirectional LSTM per layer and direction, holding the bidirectional LSTM's weights."""
    layers = []
    for layer in range(lstm.num_layers):
        pair = []
        for suffix in ("", "_reverse"):
            size = lstm.input_size if layer == 0 else 2 * lstm.hidden_size
            one = nn.LSTM(size, lstm.hidden_size, batch_first=True)
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(one, f"{name}_l0").copy_(getattr(lstm, f"{name}_l{layer}{suffix}"))
            pair.append(one)
        layers.append(tuple(pair))
    return layers


class ExportableBiLSTM(nn.Module):
    """A :class:`~distilkit.models.bilstm.BiLSTMForSequenceClassification` rewritten for ONNX (see module doc).

    Takes ``input_ids``/``attention_mask`` (and ``input_ids_b``/``attention_mask_b`` for pair models),
    returns the logits.
    """

    def __init__(self, model):
        super().__init__()
        if not model.lstm.bidirectional or not model.lstm.batch_first:
            raise ValueError("ExportableBiLSTM expects the distilkit BiLSTM (bidirectional, batch_first)")
        self.embeddings, self.is_pair = model.embeddings, model.config.is_pair
        self.max_pool = model.config.pooling == "max"
        self.layers = nn.ModuleList(nn.ModuleList(pair) for pair in _directions(model.lstm))
        self.mlp, self.classifier = model.mlp, model.classifier  # eval mode: dropout is the identity

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        lengths = attention_mask.long().sum(dim=1).clamp(min=1)  # [batch]
        steps = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)  # [1, seq]
        # Position t of a sentence reversed within its length; padding (t >= length) stays where it is.
        reverse = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)
        last = (lengths - 1).view(-1, 1, 1)
        x = self.embeddings(input_ids)
        for forward, backward in self.layers:
            index = reverse.unsqueeze(-1).expand(-1, -1, x.shape[-1])
            out_f, _ = forward(x)
            out_r, _ = backward(x.gather(1, index))
            back = reverse.unsqueeze(-1).expand(-1, -1, out_r.shape[-1])
            x = torch.cat([out_f, out_r.gather(1, back)], dim=-1)
        if self.max_pool:  # padding positions (t >= length) set to -inf never win the max
            valid = (steps < lengths.unsqueeze(1)).unsqueeze(-1)
            return x.masked_fill(~valid, float("-inf")).amax(dim=1)
        width = out_f.shape[-1]
        h_f = out_f.gather(1, last.expand(-1, 1, width)).squeeze(1)
        h_b = out_r.gather(1, last.expand(-1, 1, width)).squeeze(1)
        return torch.cat([h_f, h_b], dim=-1)

    def forward(self, input_ids, attention_mask, input_ids_b=None, attention_mask_b=None) -> torch.Tensor:
        h1 = self.encode(input_ids, attention_mask)
        if self.is_pair:
            h2 = self.encode(input_ids_b, attention_mask_b)
            features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1)
        else:
            features = h1
        return self.classifier(torch.relu(self.mlp(features)))
