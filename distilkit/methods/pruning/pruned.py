"""BERT, RoBERTa and DistilBERT classifiers whose layers may keep different numbers of heads and FFN neurons.

Structured pruning (see ``distilkit.methods.pruning``) slices the projection matrices of a stock model, so each layer
can end up with its own head count and intermediate width. A stock config cannot describe that, so a pruned
model's config becomes a subclass of the stock one that records the per-layer shapes in
``distilkit_pruning = {"heads": [...], "intermediate_sizes": [...]}`` (one entry per *kept* layer;
``num_hidden_layers`` already counts only kept layers). The model classes below build the stock architecture
and then shrink every layer to the recorded shapes *before* weights load, so ``from_pretrained`` finds
parameters of exactly the saved sizes.

Shrinking keeps the leading heads/neurons of the freshly initialised layers; which ones does not matter
because the checkpoint overwrites them. Pruned attention still runs through the stock forward code: the
self-attention modules infer the head count from the projection width (``view(..., -1, head_size)``).

This file is self-contained (torch, transformers and the standard library only) because
``save_pretrained`` copies it next to the weights for ``trust_remote_code=True`` users without distilkit.
Do not import anything from distilkit here. For the same reason the per-family class factory
(:func:`_pruned_classes`) is this file's own, though ``models/shared_layers.py`` and
``methods/linear_attention/linear.py`` build theirs the same way: a saved model carries one such file alone, and
a shared module would be one more file to copy and keep in step beside every checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

FAMILIES = ("bert", "roberta", "distilbert")

#: Model types whose network is another family's, module for module, and their classifier classes. XLM-R is
#: RoBERTa trained on 100 languages with a SentencePiece vocabulary (Conneau et al. 2020, "Unsupervised
#: Cross-lingual Representation Learning at Scale"); transformers generates its classes from RoBERTa's, so a
#: pruned XLM-R is saved and reloaded as a pruned RoBERTa (its tokenizer stays XLM-R's).
TWINS = {"xlm-roberta": "roberta"}
TWIN_CLASSES = {"XLMRobertaForSequenceClassification": "RobertaForSequenceClassification"}


def model_family(config) -> str | None:
    """``"bert"``, ``"roberta"`` or ``"distilbert"`` for stock and pruned configs of those models (and their
    :data:`TWINS`), else None."""
    family = getattr(type(config), "distilkit_family", None) or getattr(config, "model_type", None)
    family = TWINS.get(family, family)
    return family if family in FAMILIES else None


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``ModuleList`` of transformer blocks (works on task models and on bare base models)."""
    base = getattr(model, "base_model", model)
    # BERT and RoBERTa keep blocks at ``encoder.layer``, DistilBERT at ``transformer.layer``.
    holder = base.transformer if model_family(model.config) == "distilbert" else base.encoder
    return holder.layer


def attention_parts(layer: nn.Module, family: str) -> tuple[nn.Module, list[nn.Linear], nn.Linear]:
    """(module holding the head-count attributes, [query, key, value], attention output projection)."""
    if family == "distilbert":
        att = layer.attention
        return att, [att.q_lin, att.k_lin, att.v_lin], att.out_lin
    att = layer.attention.self
    return att, [att.query, att.key, att.value], layer.attention.output.dense


def ffn_parts(layer: nn.Module, family: str) -> tuple[nn.Linear, nn.Linear]:
    """(hidden -> intermediate projection, intermediate -> hidden projection) of one block."""
    if family == "distilbert":
        return layer.ffn.lin1, layer.ffn.lin2
    return layer.intermediate.dense, layer.output.dense


def head_size(layer: nn.Module, family: str) -> int:
    """Width of one attention head; unchanged by pruning (only the number of heads shrinks)."""
    return attention_parts(layer, family)[0].attention_head_size


def num_heads(layer: nn.Module, family: str) -> int:
    """Heads the block currently has, read from the query width so it is right after any slicing."""
    _, (query, _, _), _ = attention_parts(layer, family)
    return query.out_features // head_size(layer, family)


def slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Keep rows (``dim=0``, output units with their biases) or columns (``dim=1``, input units) in place.

    The module object is kept, so hooks, parametrizations of the parent and optimizer-free references stay
    valid; only its parameters are replaced. Column slicing leaves the bias alone: it belongs to outputs.
    """
    index = index.to(linear.weight.device)
    grad = linear.weight.requires_grad
    linear.weight = nn.Parameter(linear.weight.detach().index_select(dim, index).clone(), requires_grad=grad)
    if dim == 0:
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.detach().index_select(0, index).clone(),
                                       requires_grad=linear.bias.requires_grad)
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def keep_heads(layer: nn.Module, family: str, keep: list[int]) -> None:
    """Keep only heads ``keep`` (current indices, ascending) of one block, in place."""
    size = head_size(layer, family)
    # Head h owns rows h*size .. (h+1)*size-1 of Q/K/V and the same columns of the output projection.
    index = torch.cat([torch.arange(h * size, (h + 1) * size) for h in keep])
    holder, qkv, out = attention_parts(layer, family)
    for linear in qkv:
        slice_linear(linear, index, 0)
    slice_linear(out, index, 1)
    # Keep the module's bookkeeping truthful for code that reads it (the forward itself does not need it).
    if family == "distilbert":
        holder.n_heads = len(keep)
    else:
        holder.num_attention_heads = len(keep)
        holder.all_head_size = len(keep) * size


def keep_neurons(layer: nn.Module, family: str, keep: list[int]) -> None:
    """Keep only intermediate neurons ``keep`` (current indices, ascending) of one block, in place."""
    first, second = ffn_parts(layer, family)
    index = torch.tensor(keep, dtype=torch.long)
    slice_linear(first, index, 0)
    slice_linear(second, index, 1)


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Per-layer head counts and intermediate widths: what a pruned config records."""
    family = model_family(model.config)
    layers = encoder_layers(model)
    return {"heads": [num_heads(layer, family) for layer in layers],
            "intermediate_sizes": [ffn_parts(layer, family)[0].out_features for layer in layers]}


def apply_shapes(model: nn.Module, shapes: dict | None) -> None:
    """Shrink a freshly built model to recorded ``shapes`` (leading heads/neurons; weights load later)."""
    if not shapes:
        return
    family = model_family(model.config)
    layers = encoder_layers(model)
    heads, widths = shapes.get("heads"), shapes.get("intermediate_sizes")
    for name, values in (("heads", heads), ("intermediate_sizes", widths)):
        if values is not None and len(values) != len(layers):
            raise ValueError(f"distilkit_pruning.{name} has {len(values)} entries for {len(layers)} layers")
    for i, layer in enumerate(layers):
        if heads is not None and heads[i] != num_heads(layer, family):
            keep_heads(layer, family, list(range(heads[i])))
        if widths is not None and widths[i] != ffn_parts(layer, family)[0].out_features:
            keep_neurons(layer, family, list(range(widths[i])))


def _pruned_classes(family: str, label: str, stock_config: type, stock_model: type) -> tuple[type, type]:
    """The pruned config and classifier classes of one family, e.g. ``PrunedBertConfig`` (``model_type:
    distilkit-pruned-bert``, the stock config plus ``distilkit_pruning``) and ``PrunedBertForSequenceClassification``
    (the stock classifier, its blocks shrunk to the recorded shapes as it is built).

    The three families differ only in their stock classes, so their classes are made here rather than written
    out three times; they are bound to module names below, which ``auto_map`` and remote-code loading look up.
    """
    config_class = type(f"Pruned{label}Config", (stock_config,), {
        "__doc__": f":class:`~transformers.{stock_config.__name__}` plus per-layer shapes (``distilkit_pruning``, "
                   "see the module docstring).",
        "__annotations__": {"distilkit_pruning": "dict | None"},  # a config field (configs are dataclasses)
        "model_type": f"distilkit-pruned-{family}", "distilkit_family": family, "distilkit_pruning": None})

    def __init__(self, config):
        super(model_class, self).__init__(config)
        apply_shapes(self, config.distilkit_pruning)

    model_class = type(f"Pruned{label}ForSequenceClassification", (stock_model,), {
        "__doc__": f"{label} classifier whose blocks have the head counts and FFN widths recorded in its config.",
        "config_class": config_class, "__init__": __init__})
    return config_class, model_class


# family -> (pruned config class, pruned sequence-classification class)
PRUNED_CLASSES = {
    "bert": _pruned_classes("bert", "Bert", BertConfig, BertForSequenceClassification),
    "roberta": _pruned_classes("roberta", "Roberta", RobertaConfig, RobertaForSequenceClassification),
    "distilbert": _pruned_classes("distilbert", "DistilBert", DistilBertConfig, DistilBertForSequenceClassification),
}
PrunedBertConfig, PrunedBertForSequenceClassification = PRUNED_CLASSES["bert"]
PrunedRobertaConfig, PrunedRobertaForSequenceClassification = PRUNED_CLASSES["roberta"]
PrunedDistilBertConfig, PrunedDistilBertForSequenceClassification = PRUNED_CLASSES["distilbert"]

# ``save_pretrained`` then writes ``auto_map`` into config.json and copies this file next to the weights.
for _config_class, _model_class in PRUNED_CLASSES.values():
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModelForSequenceClassification")
