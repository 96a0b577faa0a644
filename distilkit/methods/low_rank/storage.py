"""Saving and reloading a factorised model with ``AutoModelForSequenceClassification.from_pretrained``.

The weights need no special format: the factors are ordinary parameters (``<layer>.first.weight``,
``<layer>.second.weight``, ...) in ``model.safetensors``. What a stock architecture cannot know is which of its
modules are factored and at which rank, so ``config.json`` records the factor shapes per module::

    "quantization_config": {"quant_method": "distilkit-low-rank", "modules": {
        "bert.encoder.layer.0.attention.self.query": {"kind": "linear", "in_features": 384, "out_features": 384,
                                                      "rank": 96, "blocks": 1, "bias": true},
        "bert.embeddings.word_embeddings": {"kind": "embedding", "num_embeddings": 30522, "embedding_dim": 384,
                                            "rank": 128, "padding_idx": 0},
        "bert.encoder.layer.0.intermediate.dense": {"kind": "tt", "in_features": 384, "out_features": 1536,
                                                    "in_factors": [8, 8, 6], "out_factors": [16, 12, 8],
                                                    "ranks": [40, 24], "bias": true},
        "bert.encoder.layer.0.output.dense": {"kind": "block_term", "in_features": 1536, "out_features": 384,
                                              "in_factors": [16, 12, 8], "out_factors": [8, 8, 6], "blocks": 2,
                                              "rank": 12, "bias": true}}}

The record rides on transformers' quantizer registry because that is the one generic hook that runs between
building a model and loading its weights, for any architecture (stock, pruned, BiLSTM, linear attention): the
loader registered by ``import distilkit`` swaps the recorded modules for factored ones before the weights load.
The config declares ``dequantize``, so transformers leaves no quantizer state on the loaded model (it is a float
model that trains, casts and saves like any other); the loader then puts the record back on ``model.config``,
exactly as :func:`record_factors` leaves a freshly factorised model, and saving again writes the same files.
"""

from __future__ import annotations

from torch import nn

from distilkit.core.hf_quantizers import register_weight_format
from distilkit.methods.low_rank.block_term import BlockTermLinear
from distilkit.methods.low_rank.factors import FactorizedEmbedding, LowRankLinear
from distilkit.methods.low_rank.tensor_train import TTLinear

QUANT_METHOD = "distilkit-low-rank"


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted) by ``module``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def describe_factors(model: nn.Module) -> dict[str, dict]:
    """The factor shapes of every factored module of ``model``, by name (what ``config.json`` records)."""
    table = {}
    for name, module in model.named_modules():
        if isinstance(module, LowRankLinear):
            table[name] = {"kind": "linear", "in_features": module.in_features, "out_features": module.out_features,
                           "rank": module.rank, "blocks": module.blocks, "bias": module.second.bias is not None}
        elif isinstance(module, FactorizedEmbedding):
            table[name] = {"kind": "embedding", "num_embeddings": module.num_embeddings,
                           "embedding_dim": module.embedding_dim, "rank": module.rank,
                           "padding_idx": module.padding_idx}
        elif isinstance(module, TTLinear | BlockTermLinear):
            spec = {"kind": "tt" if isinstance(module, TTLinear) else "block_term",
                    "in_features": module.in_features, "out_features": module.out_features,
                    "in_factors": module.in_factors, "out_factors": module.out_factors}
            spec.update({"ranks": module.ranks} if isinstance(module, TTLinear)
                        else {"blocks": module.blocks, "rank": module.rank})
            table[name] = {**spec, "bias": module.bias is not None}
    return table


def rebuilt_weight_modules(config: dict) -> list[str]:
    """The modules a saved student's ``config.json`` (its dict) records as tensor-train or block-term: layers whose
    graph rebuilds a dense weight from factors (SVD factors multiply the activations instead)."""
    quantization = config.get("quantization_config") or {}
    if quantization.get("quant_method") != QUANT_METHOD:
        return []
    return [name for name, spec in (quantization.get("modules") or {}).items()
            if spec.get("kind") in ("tt", "block_term")]


def record_factors(model: nn.Module) -> dict:
    """Set ``model.config.quantization_config`` to the record of its factored modules and return it."""
    config = {"quant_method": QUANT_METHOD, "modules": describe_factors(model)}
    model.config.quantization_config = config
    return config


def build_factored_modules(model: nn.Module, modules: dict[str, dict]) -> None:
    """Before the weights load: swap every recorded module for a factored one of the recorded shapes (its values
    come from the checkpoint)."""
    for name, spec in modules.items():
        original = model.get_submodule(name)
        dtype = original.weight.dtype
        if spec["kind"] == "linear":
            module = LowRankLinear(spec["in_features"], spec["out_features"], spec["rank"], spec["bias"],
                                   spec["blocks"])
        elif spec["kind"] == "embedding":
            module = FactorizedEmbedding(spec["num_embeddings"], spec["embedding_dim"], spec["rank"],
                                         spec["padding_idx"])
        elif spec["kind"] == "tt":
            module = TTLinear(spec["in_features"], spec["out_features"], spec["in_factors"], spec["out_factors"],
                              spec["ranks"], spec["bias"])
        elif spec["kind"] == "block_term":
            module = BlockTermLinear(spec["in_features"], spec["out_features"], spec["in_factors"],
                                     spec["out_factors"], spec["blocks"], spec["rank"], spec["bias"])
        else:
            raise ValueError(f"quantization_config.modules.{name}: unknown kind {spec['kind']!r} "
                             f"(a newer distilkit wrote it?)")
        set_module(model, name, module.to(device=original.weight.device, dtype=dtype))


def register() -> None:
    """Make ``quant_method: distilkit-low-rank`` loadable by transformers (idempotent; run on ``import distilkit``):
    the factored modules are built before the weights load and recorded on the config again after."""
    register_weight_format(QUANT_METHOD, name="LowRank",
                           before_weights=lambda model, config: build_factored_modules(model, config["modules"]),
                           after_weights=record_factors, dequantize=True, serializable=True, trainable=True)
