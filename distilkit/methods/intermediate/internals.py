"""Reading a transformer's inside: attention probabilities, the last layer's value vectors, the teacher's states.

transformers 5 returns attention weights only from the eager attention function (``sdpa`` returns none), and
eager returns them *after* attention dropout: in training, a student's returned rows are no longer
distributions (dropped entries are 0, the rest scaled by ``1 / (1 - p)``), and a KL against them is meaningless.
:data:`PROBS_ATTENTION` is eager attention that applies dropout to what multiplies the values but returns the
probabilities before it; the student runs it whenever ``intermediate.attention`` is on (eval included: the
function does not reach the saved config, which reloads with the library's default), the teacher only for
the forwards of this method. Cost: like eager, it materialises the ``seq x seq`` probabilities of every head
(sdpa's fused kernel does not); on CPU at GLUE lengths the difference is small next to the teacher forward.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from distilkit.core.errors import RecipeError

PROBS_ATTENTION = "distilkit_attention_probs"

#: The student's batch tensors the teacher reads (the student uses the teacher's tokenizer: the same ids).
TEACHER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _attention_with_probabilities(module: nn.Module, query, key, value, attention_mask, scaling=None,
                                  dropout: float = 0.0, **kwargs):
    """Scaled dot-product attention returning ``(output [batch, seq, heads, d], probabilities [batch, heads,
    seq, seq])``; dropout acts on the output only, so the probabilities are the softmax itself."""
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    probabilities = nn.functional.softmax(scores, dim=-1)
    dropped = nn.functional.dropout(probabilities, p=dropout, training=module.training)
    return torch.matmul(dropped, value).transpose(1, 2).contiguous(), probabilities


# Both registrations are needed: the mask interface decides how padding reaches the attention function (the
# additive eager mask here), and a name missing there would silently drop the padding mask.
AttentionInterface.register(PROBS_ATTENTION, _attention_with_probabilities)
AttentionMaskInterface.register(PROBS_ATTENTION, eager_mask)


@contextmanager
def attention_function(model: nn.Module, name: str | None):
    """Run ``model`` with attention function ``name`` inside the block (``None``: leave it as it is)."""
    original = model.config._attn_implementation
    if name is None or name == original:
        yield model
        return
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(original)


def last_value_module(model: nn.Module, key: str) -> nn.Linear:
    """The value projection of the last transformer layer (BERT/RoBERTa/ELECTRA ``attention.self.value``,
    DistilBERT ``attention.v_lin``), whose output MiniLM's value relation reads.

    Raises:
        RecipeError: naming ``key``, for an architecture without such a module.
    """
    base = getattr(model, "base_model", model)
    holder = getattr(base, "encoder", None) or getattr(base, "transformer", None)
    layers = getattr(holder, "layer", None)
    attention = getattr(layers[-1], "attention", None) if isinstance(layers, nn.ModuleList) and len(layers) else None
    module = getattr(getattr(attention, "self", None), "value", None) or getattr(attention, "v_lin", None)
    if not isinstance(module, nn.Linear):
        raise RecipeError(f"{key}: {type(model).__name__} has no value projection at encoder.layer[-1].attention "
                          "(BERT, RoBERTa, ELECTRA and DistilBERT layouts are supported)")
    return module


class ValueRecorder:
    """Keeps the latest training-mode output of a value projection (a forward hook; a layer shared by several
    positions, as in ALBERT-style sharing, is recorded at its last use, which is the last layer)."""

    def __init__(self, module: nn.Module, always: bool = False):
        self.values: torch.Tensor | None = None
        self.always = always
        self.handle = module.register_forward_hook(self._record)

    def _record(self, module, inputs, output) -> None:
        if self.always or module.training:
            self.values = output

    def take(self) -> torch.Tensor:
        """The recorded values (cleared, so a stale tensor is never reused)."""
        if self.values is None:
            raise RuntimeError("intermediate.value_relation: no value vectors were recorded by the last forward")
        values, self.values = self.values, None
        return values

    def remove(self) -> None:
        self.handle.remove()


def teacher_forward(model: nn.Module, batch: dict, *, hidden: bool, attentions: bool, values: bool):
    """The teacher's inside on the student's very batch (no gradient, eval mode).

    Returns:
        ``(outputs, value vectors or None)``; ``outputs.hidden_states`` / ``outputs.attentions`` as asked.
    """
    device = next(model.parameters()).device
    inputs = {k: batch[k].to(device) for k in TEACHER_INPUTS if k in batch}
    recorder = ValueRecorder(last_value_module(model, "intermediate.value_relation"), always=True) if values else None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), attention_function(model, PROBS_ATTENTION if attentions else None):
            outputs = model(**inputs, output_hidden_states=hidden, output_attentions=attentions)
        return outputs, recorder.take() if recorder else None
    finally:
        if recorder is not None:
            recorder.remove()
        model.train(was_training)
