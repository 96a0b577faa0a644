"""Structured pruning of attention heads, FFN neurons and whole layers for BERT, RoBERTa and DistilBERT.

Scoring:
    * Heads: Michel et al. 2019, "Are Sixteen Heads Really Better than One?" (arXiv:1905.10650), eq. (2):
      each head's output is multiplied by a gate xi_h (all ones) and I_h = E_x |dL(x)/dxi_h|.
      transformers 5 removed ``head_mask``, so the gates live in a registered attention function.
    * FFN neurons: first-order Taylor expansion of the loss change when an activation is zeroed, Molchanov
      et al. 2017, "Pruning Convolutional Neural Networks for Resource Efficient Inference"
      (arXiv:1611.06440), eq. (8): Theta(a_n) = |sum_t a_{n,t} * dL/da_{n,t}| per example (summed over tokens
      t instead of averaged over spatial positions, so padding contributes nothing), averaged over batches.
    * Layers: drop-one evaluation, the loss increase when a block is skipped.

Removal slices weight matrices in place (see ``distilkit.methods.pruning.pruned``), so a pruned model is smaller
and faster and computes exactly what the unpruned model computes with those units gated to zero. The config
then records the per-layer shapes and the model becomes a ``Pruned*ForSequenceClassification``, so
``save_pretrained`` output reloads with ``AutoModelForSequenceClassification.from_pretrained(dir)``
(``import distilkit`` registers the classes; without distilkit use ``trust_remote_code=True``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from distilkit.core.errors import RecipeError
from distilkit.methods.pruning.pruned import (
    PRUNED_CLASSES,
    TWIN_CLASSES,
    attention_parts,
    encoder_layers,
    ffn_parts,
    keep_heads,
    keep_neurons,
    layer_shapes,
    num_heads,
)
from distilkit.methods.pruning.select import (  # noqa: F401  (selection is part of this module's API)
    _family,
    count_params,
    select_ffn,
    select_for_budget,
    select_heads,
    select_layers,
)

logger = logging.getLogger(__name__)

GATED_ATTENTION = "distilkit_gated"
_GATE_ATTR = "distilkit_head_gate"

LossFn = Callable[[object, dict], torch.Tensor]


def _gated_attention(module: nn.Module, query, key, value, attention_mask, **kwargs):
    """SDPA attention whose per-head outputs are scaled by ``module.distilkit_head_gate`` when set.

    SDPA returns ``[batch, seq, heads, head_dim]``; scaling a head's slice there is exactly Michel et al.'s
    ``xi_h * Att_h(x)`` because the output projection is linear in each head's slice.
    """
    output, weights = sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    gate = getattr(module, _GATE_ATTR, None)
    if gate is not None:
        output = output * gate.to(output.dtype).view(1, 1, -1, 1)
    return output, weights


# Both registrations are needed: the mask interface decides how padding reaches the attention function, and
# a name missing there would silently drop the padding mask.
AttentionInterface.register(GATED_ATTENTION, _gated_attention)
AttentionMaskInterface.register(GATED_ATTENTION, sdpa_mask)


@contextmanager
def head_gates(model: nn.Module, gates: torch.Tensor | list[torch.Tensor]) -> Iterator[nn.Module]:
    """Run ``model`` with every head's output multiplied by a gate (Michel et al.'s xi_h).

    Args:
        model: A BERT, RoBERTa or DistilBERT model.
        gates: ``[num_layers, max_heads]`` (or one tensor per layer); layer ``i`` uses its first
            ``num_heads(i)`` entries. Gates of 0 switch heads off, gates requiring grad give importances.

    Yields:
        The model, using the gated attention function until the block exits.
    """
    family = _family(model)
    layers = encoder_layers(model)
    if len(gates) != len(layers):
        raise RecipeError(f"head gates: got {len(gates)} rows for {len(layers)} layers")
    original = model.config._attn_implementation
    holders = []
    try:
        for layer, row in zip(layers, gates):
            holder = attention_parts(layer, family)[0]
            count = num_heads(layer, family)
            if row.numel() < count:
                raise RecipeError(f"head gates: a row has {row.numel()} gates for {count} heads")
            setattr(holder, _GATE_ATTR, row[:count])
            holders.append(holder)
        model.set_attn_implementation(GATED_ATTENTION)
        yield model
    finally:
        for holder in holders:
            delattr(holder, _GATE_ATTR)
        model.set_attn_implementation(original)


@contextmanager
def _scoring(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout noise in the scores) with every parameter on the autograd tape.

    Parameters must require grad so that activations do; only ``torch.autograd.grad`` is used, which never
    writes ``.grad``, so an ongoing training run's gradients are untouched.
    """
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _loss(model: nn.Module, batch: dict, loss_fn: LossFn | None) -> torch.Tensor:
    """The model's own loss (``labels`` in the batch) or ``loss_fn(output, batch)``, e.g. a distillation loss.

    Only keys the forward names are passed, so batches may carry extras such as teacher logits.
    """
    accepted = set(inspect.signature(model.forward).parameters)
    if loss_fn is not None:
        accepted.discard("labels")  # soft or missing labels: the model must not try its own loss
    device = next(model.parameters()).device
    inputs = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items() if k in accepted}
    output = model(**inputs)
    if loss_fn is not None:
        return loss_fn(output, batch)
    if getattr(output, "loss", None) is None:
        raise RecipeError("pruning scores need a loss: give batches 'labels' or pass loss_fn(output, batch)")
    return output.loss


def _normalize(scores: torch.Tensor) -> torch.Tensor:
    # Michel et al. (Sec. 4.1) divide each layer's scores by their L2 norm so layers compare globally.
    return scores / scores.norm().clamp_min(1e-20)


def head_importance(model: nn.Module, batches: Iterable[dict], *, loss_fn: LossFn | None = None,
                    normalize: bool = True) -> torch.Tensor:
    """Michel et al. 2019 head importance I_h = E |dL/dxi_h| (eq. 2).

    As in the authors' code, the absolute gate gradient is taken per batch and averaged over batches.

    Args:
        model: BERT, RoBERTa or DistilBERT (pruned ones too).
        batches: Dicts of model inputs; with the default loss they must include ``labels``.
        loss_fn: Optional ``loss_fn(model_output, batch) -> scalar`` (e.g. a distillation loss).
        normalize: L2-normalize each layer's scores (Michel et al.), needed for global ranking.

    Returns:
        ``[num_layers, max_heads]``; entries past a layer's head count (uneven pruned models) are NaN.
    """
    family = _family(model)
    layers = encoder_layers(model)
    counts = [num_heads(layer, family) for layer in layers]
    gates = torch.ones(len(layers), max(counts), device=next(model.parameters()).device, requires_grad=True)
    total, seen = torch.zeros_like(gates), 0
    with _scoring(model), head_gates(model, gates):
        for batch in batches:
            (grad,) = torch.autograd.grad(_loss(model, batch, loss_fn), gates)
            total += grad.abs()
            seen += 1
    if not seen:
        raise RecipeError("head_importance: batches is empty")
    scores = torch.full_like(total, float("nan"))
    for i, count in enumerate(counts):
        row = total[i, :count] / seen
        scores[i, :count] = _normalize(row) if normalize else row
    return scores.detach().cpu()


def ffn_importance(model: nn.Module, batches: Iterable[dict], *, loss_fn: LossFn | None = None,
                   normalize: bool = True) -> list[torch.Tensor]:
    """First-order Taylor importance of each intermediate (post-activation) FFN neuron, Molchanov et al. eq. 8.

    Theta(a_n) = mean over batches of sum_examples |sum_tokens a_n * dL/da_n|: the estimated loss change when
    the neuron's output is zeroed, which is exactly what removing its row/column does.

    Args:
        model: BERT, RoBERTa or DistilBERT.
        batches: Dicts of model inputs (``labels`` unless ``loss_fn`` is given).
        loss_fn: Optional ``loss_fn(model_output, batch) -> scalar``.
        normalize: L2-normalize per layer (as Molchanov et al. do before global ranking).

    Returns:
        One ``[intermediate_size_i]`` tensor per layer.
    """
    family = _family(model)
    layers = encoder_layers(model)
    captured: dict[int, list[torch.Tensor]] = {}
    # The activation a is the input of the second projection; keep it (it is on the autograd tape).
    handles = [ffn_parts(layer, family)[1].register_forward_pre_hook(
        lambda _m, args, i=i: captured.setdefault(i, []).append(args[0])) for i, layer in enumerate(layers)]
    totals = [torch.zeros(ffn_parts(layer, family)[0].out_features) for layer in layers]
    seen = 0
    try:
        with _scoring(model):
            for batch in batches:
                captured.clear()
                loss = _loss(model, batch, loss_fn)
                keys = sorted(captured)
                flat = [t for k in keys for t in captured[k]]
                grads = iter(torch.autograd.grad(loss, flat))
                for k in keys:
                    # Chunked feed-forward (chunk_size_feed_forward > 0) calls the layer once per token chunk.
                    acts = captured[k]
                    act = torch.cat(acts, dim=1)
                    grad = torch.cat([next(grads) for _ in acts], dim=1)
                    totals[k] += (act * grad).sum(dim=1).abs().sum(dim=0).detach().cpu()
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        captured.clear()
    if not seen:
        raise RecipeError("ffn_importance: batches is empty")
    return [_normalize(t / seen) if normalize else t / seen for t in totals]


@torch.no_grad()
def layer_importance(model: nn.Module, batches: Iterable[dict], *,
                     loss_fn: LossFn | None = None) -> torch.Tensor:
    """Drop-one layer importance: mean loss with block ``i`` skipped minus the full model's mean loss.

    Each block is removed from the ``ModuleList`` for one evaluation and put back, so the forward code runs
    unchanged (residual stream passes straight to the next block).

    Returns:
        ``[num_layers]`` loss increases (negative: the model does better without that layer).
    """
    _family(model)
    batches = list(batches)  # iterated once per layer plus once for the baseline
    if not batches:
        raise RecipeError("layer_importance: batches is empty")
    layers = encoder_layers(model)
    was_training = model.training
    model.eval()
    scores = []

    def mean_loss() -> float:
        return sum(float(_loss(model, b, loss_fn)) for b in batches) / len(batches)

    try:
        base = mean_loss()
        for i in range(len(layers)):
            block = layers[i]
            del layers[i]
            try:
                scores.append(mean_loss() - base)
            finally:
                layers.insert(i, block)
    finally:
        model.train(was_training)
    return torch.tensor(scores)


def _check_targets(what: str, targets: dict[int, list[int]], sizes: list[int], unit: str) -> dict:
    clean = {}
    for layer, remove in targets.items():
        layer = int(layer)
        if not 0 <= layer < len(sizes):
            raise RecipeError(f"{what}: layer {layer} does not exist (model has {len(sizes)} layers)")
        remove = sorted({int(i) for i in remove})
        if remove and not (0 <= remove[0] and remove[-1] < sizes[layer]):
            raise RecipeError(f"{what}: layer {layer} has {unit} 0..{sizes[layer] - 1}; got {remove}")
        if len(remove) == sizes[layer]:
            raise RecipeError(f"{what}: removing all {sizes[layer]} {unit} of layer {layer} leaves it empty; "
                              f"drop the layer instead (drop_layers)")
        if remove:
            clean[layer] = remove
    return clean


def _record(model: nn.Module, family: str) -> None:
    """Make the config record the new shapes and the model class able to rebuild them on reload."""
    config_class, model_class = PRUNED_CLASSES[family]
    if not isinstance(model.config, config_class):
        # Swapping the class of the one shared config object updates every module holding it.
        model.config.__class__ = config_class
    model.config.distilkit_pruning = layer_shapes(model)
    if not isinstance(model, model_class):
        stock = model_class.__bases__[0]
        if type(model) is stock or TWIN_CLASSES.get(type(model).__name__) == stock.__name__:
            model.__class__ = model_class  # same modules, extra __init__ step used only by from_pretrained
        else:
            logger.warning("%s was pruned; only %s reloads pruned shapes with from_pretrained",
                           type(model).__name__, model_class.__name__)


def prune_heads(model: nn.Module, heads: dict[int, list[int]]) -> nn.Module:
    """Remove attention heads in place: ``{layer: [current head indices]}``; layers may end up uneven.

    Slices Q/K/V output rows (and biases) and the attention output projection's input columns.

    Raises:
        RecipeError: Unsupported model, bad indices, or every head of a layer named.
    """
    family = _family(model)
    layers = encoder_layers(model)
    targets = _check_targets("prune_heads", heads, [num_heads(x, family) for x in layers], "heads")
    for index, remove in targets.items():
        keep = [h for h in range(num_heads(layers[index], family)) if h not in remove]
        keep_heads(layers[index], family, keep)
    _record(model, family)
    return model


def prune_ffn(model: nn.Module, neurons: dict[int, list[int]]) -> nn.Module:
    """Remove intermediate FFN neurons in place: ``{layer: [neuron indices]}``.

    Slices the first FFN projection's rows (and bias) and the second projection's input columns.
    """
    family = _family(model)
    layers = encoder_layers(model)
    sizes = [ffn_parts(x, family)[0].out_features for x in layers]
    targets = _check_targets("prune_ffn", neurons, sizes, "neurons")
    for index, remove in targets.items():
        drop = set(remove)
        keep_neurons(layers[index], family, [n for n in range(sizes[index]) if n not in drop])
    _record(model, family)
    return model


def drop_layers(model: nn.Module, indices: list[int]) -> nn.Module:
    """Remove whole transformer blocks in place and reduce ``num_hidden_layers``."""
    family = _family(model)
    layers = encoder_layers(model)
    drop = sorted({int(i) for i in indices}, reverse=True)
    if any(not 0 <= i < len(layers) for i in drop):
        raise RecipeError(f"drop_layers: layers must be in 0..{len(layers) - 1}; got {sorted(drop)}")
    if len(drop) == len(layers):
        raise RecipeError(f"drop_layers: cannot drop all {len(layers)} layers")
    for i in drop:
        del layers[i]
    model.config.num_hidden_layers = len(layers)  # DistilBERT maps this to n_layers
    if family == "distilbert":
        getattr(model, "base_model", model).transformer.n_layers = len(layers)
    for i, layer in enumerate(layers):  # cache slots follow position, as in a freshly built model
        holder = attention_parts(layer, family)[0]
        if hasattr(holder, "layer_idx"):
            holder.layer_idx = i
    _record(model, family)
    return model


def prune_to_budget(model: nn.Module, head_scores: torch.Tensor, ffn_scores: list[torch.Tensor],
                    max_params: int) -> nn.Module:
    """Apply :func:`select_for_budget` in place; afterwards ``count_params(model) <= max_params``."""
    heads, neurons = select_for_budget(model, head_scores, ffn_scores, max_params)
    prune_heads(model, heads)
    return prune_ffn(model, neurons)

