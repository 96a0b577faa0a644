"""BERT, RoBERTa and DistilBERT classifiers whose consecutive encoder layers share one set of weights:
ALBERT's cross-layer parameter sharing (Lan et al. 2020, "ALBERT: A Lite BERT for Self-supervised Learning of
Language Representations", section 3.1: "share all parameters across layers"), here with groups of ``k``
consecutive layers sharing one block, ``k`` = the depth being ALBERT's all-shared setting.

How the sharing is stored (the choice, and why):

* A stock config cannot say which layers share, so the config is a subclass of the stock one with one more
  field, ``distilkit_share_layers = {"groups": [[0, 1], [2, 3]]}`` (layer indices, each group consecutive),
  and a registered ``model_type`` (``distilkit-shared-bert`` ...). ``import distilkit`` registers the classes
  with the Auto classes, and ``save_pretrained`` also writes ``auto_map`` and copies this file, so
  ``trust_remote_code=True`` loads the model without distilkit.
* The weights are tied with transformers' own tied-weights mechanism (``_tied_weights_keys``, the one that ties
  an LM head to the input embedding), derived from that config field: every parameter of layer ``j`` is the
  *same* ``nn.Parameter`` as the group leader's (its first layer). ``save_pretrained`` then writes each shared
  tensor once (the file holds the leaders only), and ``from_pretrained`` loads the leaders and re-ties the
  followers to them, so the reloaded model is shared too. A tied-keys mapping alone (on a stock class) would
  not survive a reload -- nothing in a stock config would recreate it -- and a config field alone would leave
  ``save_pretrained`` refusing the shared storage; together they keep both HF conventions.

The layers stay distinct modules (their ``layer_idx`` and hooks are their own) that hold the same parameters,
so the optimizer sees one tensor per group (``model.parameters()`` yields it once) and its gradient is the sum
of the gradients the group's layers give it, as in ALBERT.

This file is self-contained (torch, transformers and the standard library only) because ``save_pretrained``
copies it next to the weights for ``trust_remote_code=True`` users without distilkit. Do not import distilkit.
For the same reason the per-family class factory (:func:`_shared_classes`) is this file's own, though the pruned
and linear-attention classes are built the same way: a saved model carries one such file alone.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    PreTrainedModel,
    RobertaConfig,
    RobertaForSequenceClassification,
)

# family -> where the encoder blocks live in the sequence classifier's parameter names
LAYER_PREFIX = {"bert": "bert.encoder.layer", "roberta": "roberta.encoder.layer",
                "distilbert": "distilbert.transformer.layer"}
# config attribute holding the depth
_DEPTH = {"bert": "num_hidden_layers", "roberta": "num_hidden_layers", "distilbert": "n_layers"}


def layer_groups(num_layers: int, group_size: int | str) -> list[list[int]]:
    """Consecutive groups of ``group_size`` layers (``"all"``: one group), e.g. ``(4, 2) -> [[0, 1], [2, 3]]``.

    Raises:
        ValueError: ``group_size`` is below 1 or does not divide ``num_layers``.
    """
    size = num_layers if group_size == "all" else int(group_size)
    if size < 1 or num_layers % size:
        raise ValueError(f"group_size {group_size} does not split {num_layers} layers into equal groups of "
                         f"consecutive layers (it must divide the layer count)")
    return [list(range(start, start + size)) for start in range(0, num_layers, size)]


def _check_groups(groups, num_layers: int) -> list[list[int]]:
    """Groups must cover layers ``0..num_layers-1`` once each, in consecutive runs."""
    groups = [[int(i) for i in group] for group in groups]
    flat = [i for group in groups for i in group]
    if flat != list(range(num_layers)) or any(not group for group in groups):
        raise ValueError(f"distilkit_share_layers.groups {groups} must list layers 0..{num_layers - 1} once each, "
                         "in order, as non-empty groups")
    return groups


class _SharedLayersMixin:
    """Ties the parameters of each group's layers to the group's first layer (see the module docstring)."""

    distilkit_family: str

    def _share_groups(self) -> list[list[int]]:
        record = getattr(self.config, "distilkit_share_layers", None) or {}
        depth = getattr(self.config, _DEPTH[self.distilkit_family])
        return _check_groups(record.get("groups") or [[i] for i in range(depth)], depth)

    @property
    def _tied_weights_keys(self) -> dict[str, str]:
        """``{follower parameter: leader parameter}`` for every shared layer parameter.

        transformers reads this mapping to write a shared tensor once (``save_pretrained``) and to tie the
        followers to their leaders after loading (``tie_weights``).
        """
        prefix = LAYER_PREFIX[self.distilkit_family]
        layers = self.get_submodule(prefix)
        mapping = {}
        for group in self._share_groups():
            leader = group[0]
            names = [name for name, _ in layers[leader].named_parameters(remove_duplicate=False)]
            for follower in group[1:]:
                mapping.update({f"{prefix}.{follower}.{name}": f"{prefix}.{leader}.{name}" for name in names})
        return mapping

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        """The stock mapping plus the layer sharing, which holds whatever ``tie_word_embeddings`` says (the stock
        method returns nothing when that flag is off, and the flag is about embeddings, not layers)."""
        stock = super().get_expanded_tied_weights_keys(all_submodels=all_submodels)
        return {**stock, **self._tied_weights_keys}


def _shared_classes(family: str, label: str, stock_config: type, stock_model: type) -> tuple[type, type]:
    """The shared config and classifier classes of one family, e.g. ``SharedBertConfig`` (``model_type:
    distilkit-shared-bert``, the stock config plus ``distilkit_share_layers = {"groups": [[...], ...]}``) and
    ``SharedBertForSequenceClassification`` (the stock classifier whose layer groups share one block's parameters,
    ties made by ``post_init``).

    The three families differ only in their stock classes, so their classes are made here rather than written
    out three times; they are bound to module names below, which ``auto_map`` and remote-code loading look up.
    """
    config_class = type(f"Shared{label}Config", (stock_config,), {
        "__doc__": f":class:`~transformers.{stock_config.__name__}` plus ``distilkit_share_layers``.",
        "__annotations__": {"distilkit_share_layers": "dict | None"},  # a config field (configs are dataclasses)
        "model_type": f"distilkit-shared-{family}", "distilkit_family": family, "distilkit_share_layers": None})
    model_class = type(f"Shared{label}ForSequenceClassification", (_SharedLayersMixin, stock_model), {
        "__doc__": f"{label} classifier whose layer groups share one block's parameters.",
        "config_class": config_class, "distilkit_family": family})
    return config_class, model_class


# family -> (shared config class, shared sequence-classification class)
SHARED_CLASSES = {
    "bert": _shared_classes("bert", "Bert", BertConfig, BertForSequenceClassification),
    "roberta": _shared_classes("roberta", "Roberta", RobertaConfig, RobertaForSequenceClassification),
    "distilbert": _shared_classes("distilbert", "DistilBert", DistilBertConfig, DistilBertForSequenceClassification),
}
SharedBertConfig, SharedBertForSequenceClassification = SHARED_CLASSES["bert"]
SharedRobertaConfig, SharedRobertaForSequenceClassification = SHARED_CLASSES["roberta"]
SharedDistilBertConfig, SharedDistilBertForSequenceClassification = SHARED_CLASSES["distilbert"]

_STOCK_CONFIGS = {"bert": BertConfig, "roberta": RobertaConfig, "distilbert": DistilBertConfig}
_STOCK_CLASSES = {"bert": BertForSequenceClassification, "roberta": RobertaForSequenceClassification,
                  "distilbert": DistilBertForSequenceClassification}

# ``save_pretrained`` then writes ``auto_map`` into config.json and copies this file next to the weights.
for _config_class, _model_class in SHARED_CLASSES.values():
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModelForSequenceClassification")


def share_layers(model: PreTrainedModel, group_size: int | str, init: str = "average") -> PreTrainedModel:
    """A copy of a stock BERT/RoBERTa/DistilBERT classifier whose groups of ``group_size`` consecutive layers
    share one block.

    Each group's block starts from the group's layers as ``model`` holds them (for a student initialised from
    the teacher: the teacher layers mapped to those student layers).

    Args:
        model: A stock ``*ForSequenceClassification`` (not modified).
        group_size: Layers per group, or ``"all"`` for one block shared by every layer (ALBERT).
        init: ``"average"``: the element-wise mean of the group's layers, every parameter (weights, biases,
            LayerNorm); ``"first"``: the group's first layer.

    Returns:
        A ``Shared*ForSequenceClassification`` in ``model``'s dtype, computing what ``model`` computes when each
        group's layers were equal to begin with.

    Raises:
        ValueError: an unsupported architecture, a ``group_size`` that does not divide the depth, or an unknown
            ``init``.
    """
    family = getattr(type(model.config), "distilkit_family", None) or model.config.model_type
    if family not in SHARED_CLASSES or type(model) is not _STOCK_CLASSES[family]:
        raise ValueError(f"cross-layer sharing supports stock BERT, RoBERTa and DistilBERT sequence classifiers, "
                         f"not {type(model).__name__} (model_type {model.config.model_type!r})")
    if init not in ("average", "first"):
        raise ValueError(f"share_layers init must be 'average' or 'first', got {init!r}")
    depth = getattr(model.config, _DEPTH[family])
    groups = layer_groups(depth, group_size)
    config_class, model_class = SHARED_CLASSES[family]
    fields = {k: v for k, v in model.config.to_dict().items() if k not in ("model_type", "transformers_version")}
    config = config_class(**fields)
    config.distilkit_share_layers = {"groups": groups}
    config.architectures = None
    dtype = next(model.parameters()).dtype
    shared = model_class(config).to(dtype)

    prefix = LAYER_PREFIX[family] + "."
    state = model.state_dict()
    merged = dict(state)
    for key in state:
        if not key.startswith(prefix):
            continue
        index, rest = key[len(prefix):].split(".", 1)
        group = next(g for g in groups if int(index) in g)
        if int(index) != group[0]:
            continue
        members = [state[f"{prefix}{j}.{rest}"] for j in group]
        # Averaging in float64 keeps the mean of k float32 tensors exact to float32 rounding.
        value = (torch.stack([m.double() for m in members]).mean(0).to(members[0].dtype)
                 if init == "average" and members[0].is_floating_point() else members[0])
        for j in group:
            merged[f"{prefix}{j}.{rest}"] = value
    shared.load_state_dict(merged, strict=True)
    shared.train(model.training)
    return shared


def stock_config(config):
    """The stock config a ``Shared*`` config extends, with the same values and no sharing record (a student of
    another depth built from a shared teacher's config must not inherit the teacher's groups); any other config
    is returned as it is."""
    for family, (config_class, _) in SHARED_CLASSES.items():
        if type(config) is config_class:
            fields = {k: v for k, v in config.to_dict().items()
                      if k not in ("model_type", "transformers_version", "distilkit_share_layers", "auto_map")}
            return _STOCK_CONFIGS[family](**fields)
    return config


def shared_layer_groups(model: nn.Module) -> list[list[int]] | None:
    """The groups of a ``Shared*`` model (``None`` for any other model)."""
    return model._share_groups() if isinstance(model, _SharedLayersMixin) else None
