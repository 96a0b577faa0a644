"""Swap a pretrained encoder's softmax attention for a linear variant, then recover it by distillation.

The variants and the attention function live in :mod:`distilkit.methods.linear_attention.linear` (self-contained, so saved
models carry them as remote code). :func:`swap_attention` turns a BERT or RoBERTa classifier into its
``LinearAttention*`` twin in place: same weights, plus per-layer feature maps (random features, Hedgehog's
trainable W, Linformer's E/F, Sinkhorn's SortNet or Star's window), recorded in the config so ``from_pretrained`` rebuilds them. A recipe with
``student: {kind: linear_attention, variant: elu}`` swaps a copy of the teacher and distils it from the
softmax original (recovery), like any other student; ``loss.attention_weight`` adds per-layer attention
transfer to that recovery (:func:`attention_transfer_loss`).
"""

from __future__ import annotations

import torch
from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.methods.linear_attention.config import LINEAR_ATTENTION_MODEL_TYPES, MODEL_TYPE_TWINS
from distilkit.methods.linear_attention.linear import LINEAR_CLASSES, VARIANTS, attach, self_attentions
from distilkit.models.transformer import build_copy_student


def swap_attention(model: nn.Module, variant: str, *, features: int = 64, max_length: int = 512,
                   seed: int = 0, block_size: int = 16, sinkhorn_iters: int = 8,
                   temperature: float = 1.0, star_window: int = 1) -> nn.Module:
    """Replace the softmax attention of a BERT/RoBERTa sequence classifier by ``variant`` (in place).

    Args:
        model: A ``BertForSequenceClassification`` or ``RobertaForSequenceClassification``.
        variant: ``elu``, ``performer``, ``hedgehog``, ``linformer``, ``sinkhorn`` or ``star`` (see
            :mod:`distilkit.methods.linear_attention.linear`).
        features: Random features (performer) or projected sequence length (linformer).
        max_length: Longest sequence Linformer's projections cover.
        seed: Seed of the performer's random features (per layer: seed + layer index).
        block_size: Tokens per block (sinkhorn).
        sinkhorn_iters: Row/column normalisation rounds of the Sinkhorn balancing (sinkhorn).
        temperature: Divides the sorting logits; lower is closer to a hard permutation (sinkhorn).
        star_window: Neighbours on each side every token attends to, beside the relay (star; Guo et al.: 1).

    Raises:
        RecipeError: Unknown variant or unsupported architecture.
    """
    if variant not in VARIANTS:
        raise RecipeError(f"student.variant: unknown linear-attention variant '{variant}'; valid: {', '.join(VARIANTS)}")
    if block_size <= 0 or sinkhorn_iters < 0 or temperature <= 0:
        raise RecipeError(f"student: sinkhorn needs block_size > 0, sinkhorn_iters >= 0 and temperature > 0; got "
                          f"{block_size}, {sinkhorn_iters}, {temperature}")
    if star_window < 0:
        raise RecipeError(f"student.star_window: star needs a window of 0 or more neighbours; got {star_window}")
    model_type = getattr(model.config, "model_type", None)
    twin = MODEL_TYPE_TWINS.get(model_type, model_type)  # XLM-R's network is RoBERTa's (Conneau et al. 2020)
    family = next((f for f, (config_class, _) in LINEAR_CLASSES.items()
                   if twin in (f, config_class.model_type)), None)
    if family is None:
        raise RecipeError(f"linear attention supports {', '.join(LINEAR_ATTENTION_MODEL_TYPES)} encoders; got "
                          f"{model_type}")
    config_class, model_class = LINEAR_CLASSES[family]
    stock = model_class.__bases__[0]
    if type(model) not in (model_class, stock) and type(model).__name__ != f"XLM{stock.__name__}":
        raise RecipeError(f"linear attention swaps sequence classifiers; got {type(model).__name__}")
    model.config.__class__ = config_class  # same config object, now serialised with our model_type
    model.__class__ = model_class
    spec = {"variant": variant, "features": features, "max_length": max_length, "seed": seed}
    if variant == "sinkhorn":  # other variants keep the config they always had
        spec.update(block_size=block_size, sinkhorn_iters=sinkhorn_iters, temperature=temperature)
    if variant == "star":
        spec.update(star_window=star_window)
    attach(model, spec)
    return model


def build_linear_attention_student(spec, hf_teacher, task) -> nn.Module:
    """A copy of the teacher with ``spec.variant`` attention (the recipe's ``student.kind: linear_attention``)."""
    if hf_teacher is None:
        raise RecipeError("student.kind 'linear_attention' swaps a Hugging Face teacher; the teacher is a plug-in")
    return swap_attention(build_copy_student(teacher_model=hf_teacher.model), spec.variant,
                          features=spec.features, max_length=spec.max_length, seed=spec.seed,
                          block_size=spec.block_size, sinkhorn_iters=spec.sinkhorn_iters,
                          temperature=spec.temperature, star_window=spec.star_window)


def enable_attention_transfer(model: nn.Module, on: bool = True) -> None:
    """Make every linear-attention layer record its distance to softmax attention while training."""
    features = [getattr(a, "distilkit_feature", None) for a in self_attentions(model)]
    if not features or any(f is None for f in features):
        raise RecipeError("loss.attention_weight: the student has no linear attention (student.kind must be "
                          "'linear_attention')")
    for feature in features:
        feature.transfer, feature.transfer_loss = on, None


def attention_transfer_loss(model: nn.Module) -> torch.Tensor:
    """Mean over layers of the attention-transfer losses recorded by the last training forward.

    Kernel variants: soft cross-entropy of their attention weights to softmax's (Zhang et al. 2024, "The
    Hedgehog & the Porcupine", attention-weight distillation); linformer, sinkhorn and star: MSE of the
    attention output to softmax's. Both are
    computed from each layer's own q, k, v, so recovery needs no extra teacher forward.
    """
    losses = [a.distilkit_feature.transfer_loss for a in self_attentions(model)]
    if any(loss is None for loss in losses):
        raise RuntimeError("attention transfer is off or no training forward ran; call enable_attention_transfer")
    return torch.stack(losses).mean()


def parameter_groups(model: nn.Module, feature_lr: float | None) -> list[dict] | None:
    """Optimizer groups: the new feature maps at ``feature_lr``, the rest at the optimizer's learning rate.

    ``None`` (one default group) when ``feature_lr`` is unset or the variant has no trainable feature maps
    (elu, performer, star). Sinkhorn's SortNet weights are feature-map parameters here.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    features = [p for n, p in trainable if ".distilkit_feature." in n]
    if feature_lr is None or not features:
        return None
    return [{"params": [p for n, p in trainable if ".distilkit_feature." not in n]},
            {"params": features, "lr": feature_lr, "weight_decay": 0.0}]


def build_student(spec, inputs) -> nn.Module:
    """The ``linear_attention`` student kind's builder (:class:`distilkit.core.method_spec.StudentKind`)."""
    return build_linear_attention_student(spec, inputs.teacher, inputs.task)
