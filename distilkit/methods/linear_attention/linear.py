"""Linear-attention variants for BERT-family encoders, and classifier classes that reload them.

Self-contained (torch + transformers only): ``save_pretrained`` copies this file next to the weights so
``trust_remote_code=True`` users need no distilkit (which is also why its per-family class factory,
:func:`_linear_classes`, is its own and not shared with the pruned and shared-layer files). Softmax attention ``softmax(QK^T/sqrt(d)) V`` costs
O(n^2) in sequence length n; every variant here costs O(n), except sinkhorn (O(n^2 / B), see below):

* ``elu``: kernelized attention with phi(x) = elu(x) + 1 (Katharopoulos et al. 2020, "Transformers are RNNs",
  eq. 4-6): ``out_i = phi(q_i)^T sum_j phi(k_j) v_j^T / (phi(q_i)^T sum_j phi(k_j))``.
* ``performer``: FAVOR+ positive orthogonal random features (Choromanski et al. 2021, eq. 7 and lemma 1):
  phi(x) = exp(w^T x' - |x'|^2 / 2) / sqrt(m) with x' = x / d^(1/4), approximating the softmax kernel.
* ``hedgehog``: a learnable feature map per head, phi(x) = [softmax(Wx), softmax(-Wx)] with W initialised to the
  identity and trained by distillation (Zhang et al. 2024, "The Hedgehog & the Porcupine", eq. 4).
* ``linformer``: softmax attention over keys/values projected along the sequence to ``k`` rows by learned
  E, F (Wang et al. 2020, eq. 7); padded positions are zeroed before projecting.
* ``sinkhorn``: sparse Sinkhorn attention (Tay et al. 2020, section 3): blocks of ``block_size`` tokens, a
  per-head SortNet and Sinkhorn balancing give a soft block permutation; each query block attends to its own
  block and its sorted block (:mod:`.sinkhorn`). O(n B) attention plus an O(n^2 / B) block mixing.
* ``star``: Star-Transformer attention (Guo et al. 2019, section 3, Algorithm 1): every token attends to its
  ``star_window`` neighbours on each side and one relay node; the relay, started as the mean of the layer's
  input, attends to every token and itself first (:mod:`.star`). O(n w).

A masked (padding) key contributes nothing: its features (or its projected row) are multiplied by zero.
The variant and its sizes live in ``config.distilkit_linear_attention``; the ``LinearAttention*`` classes
rebuild the feature modules and select the attention function when loaded with ``from_pretrained``.

Attention transfer (recovery): while ``FeatureMap.transfer`` is on and the model trains, every layer also
stores how far it is from the softmax attention it replaces, computed from the *same* q, k, v (no teacher
forward needed): kernel variants (elu, performer, hedgehog) the soft cross-entropy between the softmax
weights and their normalised kernel weights (Zhang et al. 2024, Hedgehog's "attention weight distillation"),
linformer (whose weights live over projected rows), sinkhorn and star the mean squared error of its output to
softmax's. Sinkhorn's weights are block-sparse (zero outside the own and the sorted block), so a cross-entropy
to softmax's dense weights would be dominated by the log of those zeros; the output error is defined whatever
the sparsity and reaches the SortNet through the sorted keys and values. Star's weights are zero outside a
token's window as well (and its relay is not a token), so it is compared on its output too.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import (
    AttentionInterface,
    BertConfig,
    BertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .sinkhorn import SortNet, sinkhorn_attention
from .star import DEFAULT_WINDOW, star_attention

ATTENTION_NAME = "distilkit_linear"
VARIANTS = ("elu", "performer", "hedgehog", "linformer", "sinkhorn", "star")
#: Sinkhorn keys and their defaults (also for configs saved before they existed).
SINKHORN_DEFAULTS = {"block_size": 16, "sinkhorn_iters": 8, "temperature": 1.0}
#: Star keys and their defaults.
STAR_DEFAULTS = {"star_window": DEFAULT_WINDOW}


class FeatureMap(nn.Module):
    """Per-layer state of a variant: random features (performer), W (hedgehog), E/F (linformer) or the
    SortNet and block settings (sinkhorn), or the window (star: nothing to learn)."""

    def __init__(self, variant: str, heads: int, head_dim: int, features: int, max_length: int, seed: int,
                 block_size: int = 16, sinkhorn_iters: int = 8, temperature: float = 1.0,
                 star_window: int = DEFAULT_WINDOW):
        super().__init__()
        self.variant, self.features, self.star_window = variant, features, star_window
        self.block_size, self.sinkhorn_iters, self.temperature = block_size, sinkhorn_iters, temperature
        self.transfer, self.transfer_loss = False, None  # training-only attention transfer, see module doc
        if variant == "performer":
            generator = torch.Generator().manual_seed(seed)
            blocks, rows = [], 0
            while rows < features:  # orthogonal blocks of Gaussian rows, norms redrawn from chi(d)
                q, _ = torch.linalg.qr(torch.randn(head_dim, head_dim, generator=generator))
                blocks.append(q.T)
                rows += head_dim
            norms = torch.randn(features, head_dim, generator=generator).norm(dim=1, keepdim=True)
            self.register_buffer("projection", torch.cat(blocks)[:features] * norms)
        elif variant == "hedgehog":
            self.weight = nn.Parameter(torch.eye(head_dim).repeat(heads, 1, 1))
        elif variant == "linformer":
            # Drawn from student.seed like performer's features, so the seed key means the same for both.
            generator = torch.Generator().manual_seed(seed)
            self.e = nn.Parameter(torch.randn(features, max_length, generator=generator) / math.sqrt(features))
            self.f = nn.Parameter(torch.randn(features, max_length, generator=generator) / math.sqrt(features))
        elif variant == "sinkhorn":
            self.sort = SortNet(heads, head_dim)

    def phi(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        """Features of queries or keys ``[batch, heads, n, d]`` -> ``[batch, heads, n, m]`` (all positive)."""
        if self.variant == "elu":
            return nn.functional.elu(x) + 1
        if self.variant == "performer":
            x = x / x.shape[-1] ** 0.25
            stable = x @ self.projection.to(x.dtype).T - (x * x).sum(-1, keepdim=True) / 2
            # Subtract a max before exp for stability; it must cancel in the ratio: per query row for queries
            # (numerator and denominator share it), one constant over all keys of a head for keys.
            dims = (-1,) if is_query else (-2, -1)
            return torch.exp(stable - stable.amax(dim=dims, keepdim=True).detach()) / math.sqrt(self.features)
        h = torch.einsum("bhnd,hde->bhne", x, self.weight.to(x.dtype))
        return torch.cat([torch.softmax(h, dim=-1), torch.softmax(-h, dim=-1)], dim=-1)


def key_mask(attention_mask: torch.Tensor | None, batch: int, n: int, device) -> torch.Tensor:
    """``[batch, 1, n, 1]`` with 1 for real keys, 0 for padding (from the 4-D boolean or additive mask)."""
    if attention_mask is None:
        return torch.ones(batch, 1, n, 1, device=device)
    row = attention_mask[:, :1, :1, :]  # a bidirectional encoder: every query sees the same keys
    keep = row if row.dtype == torch.bool else row > torch.finfo(row.dtype).min / 2
    return keep.to(torch.float32).reshape(batch, 1, n, 1)


def linear_attention(module: nn.Module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The registered attention function (``ATTENTION_NAME``): ``[b, h, n, d]`` in, ``[b, n, h, d]`` out."""
    feature: FeatureMap = module.distilkit_feature
    batch, _, n, _ = key.shape
    mask = key_mask(attention_mask, batch, n, key.device).to(key.dtype)
    if feature.variant == "linformer":
        length = feature.e.shape[1]
        if n > length:
            raise ValueError(f"linformer projections cover {length} tokens; got a sequence of {n}")
        e, f = feature.e[:, :n].to(key.dtype), feature.f[:, :n].to(key.dtype)
        k, v = torch.einsum("kn,bhnd->bhkd", e, key * mask), torch.einsum("kn,bhnd->bhkd", f, value * mask)
        scores = (query @ k.transpose(-1, -2)) * (scaling or query.shape[-1] ** -0.5)
        out = torch.softmax(scores, dim=-1) @ v
    elif feature.variant == "sinkhorn":
        out = sinkhorn_attention(feature.sort, feature.block_size, feature.sinkhorn_iters, feature.temperature,
                                 query, key, value, mask, scaling or query.shape[-1] ** -0.5)
    elif feature.variant == "star":
        out = star_attention(feature.star_window, query, key, value, mask, scaling or query.shape[-1] ** -0.5)
    else:
        q, k = feature.phi(query, True), feature.phi(key, False) * mask
        kv = torch.einsum("bhnm,bhnd->bhmd", k, value)  # sum_j phi(k_j) v_j^T: O(n m d), no n x n matrix
        z = k.sum(dim=2)  # sum_j phi(k_j)
        denominator = torch.einsum("bhnm,bhm->bhn", q, z)[..., None]  # > 0: features are positive
        out = torch.einsum("bhnm,bhmd->bhnd", q, kv) / denominator.clamp_min(torch.finfo(q.dtype).tiny)
    if feature.transfer and module.training:
        feature.transfer_loss = transfer_loss(feature, query, key, value, mask, out, scaling)
    return out.transpose(1, 2).contiguous(), None


def transfer_loss(feature: FeatureMap, query, key, value, mask, out, scaling=None) -> torch.Tensor:
    """Distance of one layer's linear attention to the softmax attention on the same q, k, v (training only).

    Materialises the ``n x n`` weights, so it is meant for training lengths, not for 4096-token inference.
    Padded queries are left out of the average; padded keys have zero weight on both sides.
    """
    scale = scaling or query.shape[-1] ** -0.5
    keys = mask.transpose(-1, -2) > 0  # [b, 1, 1, n]
    queries = mask[..., 0] > 0  # [b, 1, n]
    with torch.no_grad():  # the softmax attention is the target, not something to move
        scores = (query @ key.transpose(-1, -2) * scale).float().masked_fill(~keys, float("-inf"))
        target = torch.softmax(scores, dim=-1)
    weight = queries.expand(-1, query.shape[1], -1).float()  # [b, h, n]
    if feature.variant in ("linformer", "sinkhorn", "star"):  # sparse or projected weights: compare outputs
        soft_out = (target.to(value.dtype) @ value).float()
        per_query = (out.float() - soft_out).pow(2).mean(dim=-1)
    else:
        kernel = (feature.phi(query, True) @ (feature.phi(key, False) * mask).transpose(-1, -2)).float()
        kernel = kernel / kernel.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
        per_query = -(target * kernel.clamp_min(1e-12).log()).sum(dim=-1)
    return (per_query * weight).sum() / weight.sum().clamp_min(1.0)


AttentionInterface.register(ATTENTION_NAME, linear_attention)
AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # without it padding would silently vanish


def self_attentions(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules (those holding query/key/value) of a BERT or RoBERTa model."""
    base = getattr(model, "base_model", model)
    return [layer.attention.self for layer in base.encoder.layer]


def attach(model: nn.Module, spec: dict) -> None:
    """Give every self-attention module its feature map and switch the model to the linear attention."""
    if spec["variant"] not in VARIANTS:
        raise ValueError(f"linear attention variant must be one of {VARIANTS}; got {spec['variant']!r}")
    for i, attention in enumerate(self_attentions(model)):
        head_dim = attention.attention_head_size
        heads = attention.query.out_features // head_dim
        extra = {key: spec.get(key, default) for key, default in {**SINKHORN_DEFAULTS, **STAR_DEFAULTS}.items()}
        attention.distilkit_feature = FeatureMap(spec["variant"], heads, head_dim, spec["features"],
                                                 spec["max_length"], spec.get("seed", 0) + i, **extra)
    model.config.distilkit_linear_attention = dict(spec)
    model.set_attn_implementation(ATTENTION_NAME)


def _linear_classes(family: str, label: str, stock_config: type, stock_model: type) -> tuple[type, type]:
    """The config and classifier classes of one family, e.g. ``LinearAttentionBertConfig`` (``model_type:
    distilkit-linear-bert``, the stock config plus ``distilkit_linear_attention``: variant and sizes) and
    ``LinearAttentionBertForSequenceClassification`` (the stock classifier whose self-attention is that variant).

    The families differ only in their stock classes, so their classes are made here rather than written out
    once each; they are bound to module names below, which ``auto_map`` and remote-code loading look up.
    """
    config_class = type(f"LinearAttention{label}Config", (stock_config,), {
        "__doc__": f":class:`~transformers.{stock_config.__name__}` plus ``distilkit_linear_attention``.",
        "__annotations__": {"distilkit_linear_attention": "dict | None"},  # a config field (dataclass configs)
        "model_type": f"distilkit-linear-{family}", "distilkit_linear_attention": None})

    def __init__(self, config):
        super(model_class, self).__init__(config)
        if config.distilkit_linear_attention:
            attach(self, config.distilkit_linear_attention)

    model_class = type(f"LinearAttention{label}ForSequenceClassification", (stock_model,), {
        "__doc__": f"{label} classifier whose self-attention is the linear variant recorded in its config.",
        "config_class": config_class, "__init__": __init__})
    return config_class, model_class


# model_type of the softmax model -> (config class, classifier class)
LINEAR_CLASSES = {
    "bert": _linear_classes("bert", "Bert", BertConfig, BertForSequenceClassification),
    "roberta": _linear_classes("roberta", "Roberta", RobertaConfig, RobertaForSequenceClassification),
}
LinearAttentionBertConfig, LinearAttentionBertForSequenceClassification = LINEAR_CLASSES["bert"]
LinearAttentionRobertaConfig, LinearAttentionRobertaForSequenceClassification = LINEAR_CLASSES["roberta"]

for _config_class, _model_class in LINEAR_CLASSES.values():
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModelForSequenceClassification")
