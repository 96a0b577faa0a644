"""The intermediate-layer losses, as pure functions of the two models' tensors.

Every loss averages over the *real* tokens of the batch (``attention_mask == 1``): padding carries no content,
and the student's padded positions would otherwise be pulled towards whatever the teacher computed there.
Per-layer losses are averaged over the mapped layer pairs (TinyBERT sums them, eq. 11; a mean keeps a term's
weight independent of the student's depth).

References:
    Jiao et al. 2020, "TinyBERT: Distilling BERT for Natural Language Understanding" (eq. 8 hidden states,
    eq. 9 embeddings). Wang et al. 2020, "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
    Compression of Pre-Trained Transformers" (eq. 6 attention distributions, eq. 7-9 value relation); MiniLM v2
    (Wang et al. 2021) for relation heads. Sanh et al. 2019, "DistilBERT" (section 3: the cosine loss on hidden
    states). Sun et al. 2019, "Patient Knowledge Distillation for BERT Model Compression" (eq. 3, ``L_PT``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Floor of a student probability under the logarithm: a padded key has probability exactly 0 in both models.
EPS = 1e-12


def _token_weights(mask: torch.Tensor) -> torch.Tensor:
    """``[batch, seq]`` 0/1 float weights of the real tokens."""
    return mask.to(torch.float32)


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT's hidden-state loss ``MSE(H_S W_h, H_T)`` (Jiao et al. 2020, eq. 8; eq. 9 for the embedding
    output ``E``), over real tokens.

    Args:
        student: ``[batch, seq, d]`` student states, already projected to the teacher's width ``d``.
        teacher: ``[batch, seq, d]`` teacher states.
        mask: ``[batch, seq]`` attention mask (1 = real token).

    Returns:
        ``sum_{real b,t} ||s - t||^2 / (real tokens * d)``.
    """
    weights = _token_weights(mask)
    squared = (student.float() - teacher.float()).pow(2).sum(-1)
    return (squared * weights).sum() / (weights.sum().clamp_min(1.0) * teacher.shape[-1])


def hidden_cosine(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT's cosine loss on hidden states (Sanh et al. 2019, section 3): the mean over real tokens of
    ``1 - cos(s, t)``. Direction only: the student's scale is free."""
    weights = _token_weights(mask)
    cosine = F.cosine_similarity(student.float(), teacher.float(), dim=-1, eps=1e-8)
    return ((1.0 - cosine) * weights).sum() / weights.sum().clamp_min(1.0)


def cls_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """BERT-PKD's patient loss for one layer pair (Sun et al. 2019, eq. 3): the squared distance of the
    L2-normalised ``[CLS]`` states, ``|| s / ||s|| - t / ||t|| ||^2``, averaged over the batch.

    Args:
        student: ``[batch, d]`` student ``[CLS]`` states (projected to the teacher's width).
        teacher: ``[batch, d]`` teacher ``[CLS]`` states.
    """
    diff = F.normalize(student.float(), dim=-1) - F.normalize(teacher.float(), dim=-1)
    return diff.pow(2).sum(-1).mean()


def distribution_kl(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``KL(teacher || student)`` of row distributions, averaged over heads and real query positions: MiniLM's
    ``1 / (A_h |x|) sum_a sum_t D_KL(A_T[a, t] || A_S[a, t])`` (Wang et al. 2020, eq. 6 and eq. 9).

    Args:
        teacher: ``[batch, heads, seq, seq]``; each row (over the last axis) sums to 1.
        student: same shape.
        mask: ``[batch, seq]``; padded query rows are left out (padded keys have probability 0 in both).
    """
    t, s = teacher.float(), student.float()
    kl = (torch.xlogy(t, t) - t * s.clamp_min(EPS).log()).sum(-1)  # [batch, heads, seq]
    weights = _token_weights(mask)[:, None, :]
    return (kl * weights).sum() / (weights.sum().clamp_min(1.0) * kl.shape[1])


def attention_kl(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MiniLM's self-attention distribution transfer (Wang et al. 2020, eq. 6) for one layer pair.

    With the same head count, head ``a`` of the student learns head ``a`` of the teacher. With different counts
    (a pruned or narrower student) there is no head-to-head correspondence, so each model's distributions are
    averaged over its heads first (a mixture of distributions is a distribution) and the means are compared.

    Args:
        teacher: ``[batch, heads_t, seq, seq]`` attention probabilities.
        student: ``[batch, heads_s, seq, seq]`` attention probabilities (before attention dropout).
        mask: ``[batch, seq]`` attention mask.
    """
    if teacher.shape[1] != student.shape[1]:
        teacher, student = teacher.mean(1, keepdim=True), student.mean(1, keepdim=True)
    return distribution_kl(teacher, student, mask)


def value_relation(values: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """MiniLM's value relation ``VR = softmax(V V^T / sqrt(d_r))`` per relation head (Wang et al. 2020, eq. 7-8;
    relation heads: MiniLM v2), with padded keys masked out of the softmax.

    Args:
        values: ``[batch, seq, width]`` outputs of the last layer's value projection.
        mask: ``[batch, seq]`` attention mask.
        heads: Relation heads; must divide ``width``. Each head has ``d_r = width / heads`` dimensions.

    Returns:
        ``[batch, heads, seq, seq]`` row distributions.
    """
    batch, seq, width = values.shape
    if width % heads:
        raise ValueError(f"{heads} relation heads do not divide the value width {width}")
    size = width // heads
    v = values.float().view(batch, seq, heads, size).transpose(1, 2)  # [batch, heads, seq, size]
    scores = v @ v.transpose(-1, -2) / math.sqrt(size)
    padded = (mask == 0)[:, None, None, :]
    return scores.masked_fill(padded, torch.finfo(scores.dtype).min).softmax(-1)


def value_relation_kl(teacher_values: torch.Tensor, student_values: torch.Tensor, mask: torch.Tensor,
                      heads: int) -> torch.Tensor:
    """MiniLM's value-relation transfer ``L_VR`` (Wang et al. 2020, eq. 9): ``KL(VR_T || VR_S)`` averaged over
    relation heads and real query positions. Teacher and student widths may differ: each is split into the
    same number of relation heads, and the relations are ``seq x seq`` either way (no projection)."""
    return distribution_kl(value_relation(teacher_values, mask, heads), value_relation(student_values, mask, heads),
                           mask)
