"""Distillation objectives on logits.

The total loss is ``(1 - alpha) * soft + alpha * hard`` where ``soft`` compares student and teacher logits
and ``hard`` is the usual supervised loss on gold labels (skipped for unlabelled rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def logit_mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Tang et al. 2019, eq. (3): ``L_distill = ||z^(B) - z^(S)||_2^2``.

    Squared L2 distance between teacher logits ``z^(B)`` and student logits ``z^(S)``, summed over classes
    and averaged over the batch. Matching logits rather than probabilities keeps information that the
    softmax flattens (Tang et al. §3.1). For regression it is the MSE to the teacher's prediction.
    """
    return (student_logits.float() - teacher_logits.float()).pow(2).sum(dim=-1).mean()


def soft_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network", §2:
    ``T^2 * KL(softmax(z_T / T) || softmax(z_S / T))``, averaged over the batch.

    The soft targets' gradients scale as ``1 / T^2``; multiplying by ``T^2`` keeps their magnitude
    comparable across temperatures and against the hard-label term (Hinton et al. §2).
    """
    t = float(temperature)
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * t * t


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor, problem_type: str) -> torch.Tensor:
    """Supervised loss on gold labels: cross-entropy (labels ``-100`` ignored) or MSE (NaN labels ignored).

    Returns a zero that is still connected to the graph when no row of the batch is labelled, so mixed
    labelled/unlabelled data never crashes ``backward``.
    """
    if problem_type == "regression":
        preds = student_logits.float().reshape(len(labels), -1)[:, 0]
        keep = ~torch.isnan(labels)
        if not keep.any():
            return student_logits.sum() * 0.0
        return F.mse_loss(preds[keep], labels[keep].float())
    keep = labels != -100
    if not keep.any():
        return student_logits.sum() * 0.0
    return F.cross_entropy(student_logits.float()[keep], labels[keep].long())


LOSSES = {"mse": logit_mse_loss, "kl": soft_kl_loss}
"""Built-in soft losses by ``loss.kind``."""


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None = None,
                      *, kind: str = "mse", temperature: float = 1.0, alpha: float = 0.0,
                      problem_type: str = "single_label_classification") -> tuple[torch.Tensor, dict[str, float]]:
    """``(1 - alpha) * soft(kind) + alpha * hard``; returns the loss and its parts for logging.

    Raises:
        ValueError: ``kind="kl"`` on a regression task (no class distribution), or an unknown kind.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss kind '{kind}'; available: {', '.join(LOSSES)}")
    if kind == "kl" and problem_type == "regression":
        raise ValueError("KL distillation needs class probabilities; use kind='mse' for regression")
    soft = soft_kl_loss(student_logits, teacher_logits, temperature) if kind == "kl" else \
        logit_mse_loss(student_logits, teacher_logits)
    parts = {f"soft_{kind}": soft.item()}
    loss = soft
    if alpha > 0 and labels is not None:
        hard = hard_label_loss(student_logits, labels, problem_type)
        parts["hard"] = hard.item()
        loss = (1 - alpha) * soft + alpha * hard
    return loss, parts
