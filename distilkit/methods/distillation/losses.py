"""Distillation objectives on logits.

The training loss is ``(1 - alpha) * soft + alpha * hard``: ``soft`` compares student and teacher logits
(:data:`LOSSES`), ``hard`` is the usual supervised loss on gold labels, skipping unlabelled rows. This is
the mixture of Tang et al. 2019 (``L = a * L_CE + (1 - a) * L_distill``) and of Hinton et al. 2015.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

REGRESSION = "regression"
CLASSIFICATION = "single_label_classification"


def logit_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Logit matching of Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
    Networks", eq. (3): ``L_distill = ||z^(B) - z^(S)||_2^2``.

    The squared L2 distance between teacher logits ``z^(B)`` and student logits ``z^(S)``, summed over
    classes and averaged over the batch. Matching logits rather than probabilities keeps the information
    that the softmax squashes (how far apart the teacher holds the classes). For regression, where the
    "logit" is the prediction, it is the squared error to the teacher's prediction.

    Args:
        student_logits: ``[batch, num_labels]``.
        teacher_logits: ``[batch, num_labels]``.

    Returns:
        A scalar tensor.
    """
    diff = student_logits.float() - teacher_logits.float().to(student_logits.device)
    return diff.pow(2).sum(dim=-1).mean()


def soft_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """Soft-target loss of Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", §2:
    ``T^2 * KL(softmax(z_T / T) || softmax(z_S / T))``, averaged over the batch ("batchmean").

    Why ``T^2``: the gradient of the softened loss with respect to a student logit is
    ``(q_i - p_i) / T``, and for large ``T`` ``q_i - p_i`` itself shrinks as ``1 / T``, so the soft
    targets' gradients scale as ``1 / T^2``. Multiplying by ``T^2`` keeps their magnitude roughly unchanged
    when the temperature changes and keeps the balance with the hard-label term (Hinton et al. §2).
    KL differs from the paper's cross-entropy only by the teacher's entropy, a constant, so the gradients
    are the same and a perfect student scores 0.

    Args:
        student_logits: ``[batch, num_classes]``.
        teacher_logits: ``[batch, num_classes]``.
        temperature: ``T > 0``; higher values soften both distributions.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: ``temperature <= 0``.
    """
    t = float(temperature)
    if t <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float().to(student_logits.device) / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * (t * t)


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Supervised loss on gold labels, skipping unlabelled rows.

    Cross-entropy for classification (label ``-100`` = unlabelled, PyTorch's ``ignore_index``
    convention) or mean squared error for regression (``NaN`` = unlabelled).

    Args:
        student_logits: ``[batch, num_labels]`` (``[batch, 1]`` or ``[batch]`` for regression).
        labels: ``[batch]`` class ids or float targets.
        problem_type: ``"single_label_classification"`` or ``"regression"``.

    Returns:
        A scalar tensor. When no row of the batch is labelled it is a zero that is still attached to
        ``student_logits``' graph, so ``backward`` works on unlabelled batches (and in every process of a
        distributed run, which must all take part in the gradient sync).

    Raises:
        ValueError: an unsupported ``problem_type``.
    """
    labels = labels.to(student_logits.device)
    if problem_type == REGRESSION:
        preds = student_logits.float().reshape(labels.shape[0], -1)[:, 0]
        targets = labels.float()
        keep = ~torch.isnan(targets)
        if not keep.any():
            return student_logits[:0].float().sum()
        return F.mse_loss(preds[keep], targets[keep])
    if problem_type not in (CLASSIFICATION, None):
        raise ValueError(f"hard_label_loss: unsupported problem_type {problem_type!r}; "
                         f"use {CLASSIFICATION!r} or {REGRESSION!r}")
    keep = labels != -100
    if not keep.any():
        # An empty slice sums to 0 but keeps a grad_fn (0 * logits would turn inf logits into NaN).
        return student_logits[:0].float().sum()
    return F.cross_entropy(student_logits.float()[keep], labels[keep].long())


LOSSES: dict[str, Callable[..., torch.Tensor]] = {"mse": logit_mse_loss, "kl": soft_kl_loss}
"""Built-in soft (teacher-matching) losses by ``loss.kind``."""


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor | None = None, *, kind: str = "mse", temperature: float = 1.0,
                      alpha: float = 0.0,
                      problem_type: str = CLASSIFICATION) -> tuple[torch.Tensor, dict[str, float]]:
    """``(1 - alpha) * soft + alpha * hard``, Tang et al. 2019 / Hinton et al. 2015.

    Args:
        student_logits: ``[batch, num_labels]``.
        teacher_logits: ``[batch, num_labels]``.
        labels: Gold labels (``-100``/``NaN`` where missing); needed only when ``alpha > 0``.
        kind: ``"mse"`` (:func:`logit_mse_loss`) or ``"kl"`` (:func:`soft_kl_loss`).
        temperature: Softening temperature of ``"kl"`` (ignored by ``"mse"``).
        alpha: Weight of the hard-label loss in ``[0, 1]``; 0 is pure distillation.
        problem_type: ``"single_label_classification"`` or ``"regression"``.

    Returns:
        The loss and its parts as floats for logging: ``soft_<kind>`` and, when ``alpha > 0``, ``hard``.

    Raises:
        ValueError: unknown ``kind``; ``kind="kl"`` on a regression task (a single real output has no
            class distribution, so KL is undefined); ``alpha`` outside ``[0, 1]``; ``alpha > 0`` without
            labels.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss kind '{kind}'; available: {', '.join(LOSSES)}")
    if kind == "kl" and problem_type == REGRESSION:
        raise ValueError("KL distillation needs class probabilities; use kind='mse' for regression")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if kind == "kl":
        soft = soft_kl_loss(student_logits, teacher_logits, temperature)
    else:
        soft = logit_mse_loss(student_logits, teacher_logits)
    return with_hard_labels(soft, {f"soft_{kind}": soft.item()}, student_logits, labels, alpha, problem_type)


def with_hard_labels(soft: torch.Tensor, parts: dict[str, float], student_logits: torch.Tensor,
                     labels: torch.Tensor | None, alpha: float, problem_type: str) -> tuple[torch.Tensor, dict]:
    """``(1 - alpha) * soft + alpha * hard`` for a soft term already computed (one teacher's or an ensemble's);
    ``parts`` gains ``hard`` when ``alpha > 0``.

    Raises:
        ValueError: ``alpha > 0`` without labels.
    """
    if alpha == 0:
        return soft, parts
    if labels is None:
        raise ValueError(f"alpha={alpha} mixes in the hard-label loss, which needs labels")
    hard = hard_label_loss(student_logits, labels, problem_type)
    parts["hard"] = hard.item()
    return (1 - alpha) * soft + alpha * hard, parts
