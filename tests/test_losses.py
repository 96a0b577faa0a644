"""Distillation losses against their textbook formulas."""

from __future__ import annotations

import math

import pytest
import torch

from distilkit.methods.distillation.losses import (
    LOSSES,
    distillation_loss,
    hard_label_loss,
    logit_mse_loss,
    soft_kl_loss,
)


def test_mse_is_tang_squared_l2_of_logits():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    # Row 1: 1 + 4 = 5; row 2: 9 + 16 = 25; mean over the batch = 15.
    assert logit_mse_loss(s, t).item() == pytest.approx(15.0)
    torch.manual_seed(0)
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    expected = sum(((s[i] - t[i]) ** 2).sum() for i in range(5)) / 5
    assert logit_mse_loss(s, t).item() == pytest.approx(expected.item(), rel=1e-6)
    assert LOSSES == {"mse": logit_mse_loss, "kl": soft_kl_loss}


def test_kl_matches_formula_and_t_squared():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    for temp in (1.0, 2.0, 4.0):
        p_t = torch.softmax(t / temp, -1)
        expected = (p_t * (p_t.log() - torch.log_softmax(s / temp, -1))).sum(-1).mean() * temp**2
        assert soft_kl_loss(s, t, temp).item() == pytest.approx(expected.item(), rel=1e-5)
    assert soft_kl_loss(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        soft_kl_loss(s, t, 0.0)


def test_t_squared_keeps_gradient_scale():
    # Without T^2 the soft-target gradient shrinks as 1/T^2; with it, it stays O(1) (Hinton et al. §2).
    torch.manual_seed(1)
    t = torch.randn(8, 5) * 3
    norms, unscaled = [], []
    for temp in (4.0, 16.0):
        s = torch.zeros(8, 5, requires_grad=True)
        soft_kl_loss(s, t, temp).backward()
        norms.append(s.grad.norm().item())
        unscaled.append(norms[-1] / temp**2)
    assert norms[1] == pytest.approx(norms[0], rel=0.15)
    assert unscaled[0] / unscaled[1] == pytest.approx(16.0, rel=0.15)  # what the T^2 factor compensates


def test_hard_label_ignores_missing_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]], requires_grad=True)
    labels = torch.tensor([0, 1, -100])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert hard_label_loss(logits, labels, "single_label_classification").item() == pytest.approx(expected)
    none = hard_label_loss(logits, torch.tensor([-100, -100, -100]), "single_label_classification")
    assert none.item() == 0.0 and none.grad_fn is not None
    none.backward()  # connected to the graph: backward works on an all-unlabelled batch
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    inf = torch.tensor([[math.inf, 0.0]], requires_grad=True)
    assert hard_label_loss(inf, torch.tensor([-100]), "single_label_classification").item() == 0.0  # not NaN
    reg = hard_label_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, float("nan")]), "regression")
    assert reg.item() == pytest.approx(1.0)
    preds = torch.tensor([[1.0], [3.0]], requires_grad=True)
    empty = hard_label_loss(preds, torch.tensor([float("nan")] * 2), "regression")
    assert empty.item() == 0.0
    empty.backward()
    with pytest.raises(ValueError, match="unsupported problem_type"):
        hard_label_loss(logits, labels, "multi_label_classification")


def test_alpha_mixing_and_parts():
    s = torch.tensor([[1.0, 0.0]], requires_grad=True)
    t = torch.tensor([[0.0, 1.0]])
    labels = torch.tensor([1])
    soft = logit_mse_loss(s, t).item()
    hard = hard_label_loss(s, labels, "single_label_classification").item()
    loss, parts = distillation_loss(s, t, labels, kind="mse", alpha=0.25)
    assert loss.item() == pytest.approx(0.75 * soft + 0.25 * hard)
    assert parts == {"soft_mse": pytest.approx(soft), "hard": pytest.approx(hard)}
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    only_soft, parts = distillation_loss(s, t, labels, kind="kl", temperature=2.0)
    assert set(parts) == {"soft_kl"} and only_soft.item() == pytest.approx(soft_kl_loss(s, t, 2.0).item())
    only_hard, _ = distillation_loss(s, t, labels, kind="kl", alpha=1.0)
    assert only_hard.item() == pytest.approx(hard)
    # A batch with no labelled row contributes only the (1 - alpha)-weighted soft part.
    unlabelled, parts = distillation_loss(s, t, torch.tensor([-100]), alpha=0.5)
    assert unlabelled.item() == pytest.approx(0.5 * soft) and parts["hard"] == 0.0


def test_gradients_flow_to_student_only():
    torch.manual_seed(0)
    for kind in LOSSES:
        s = torch.randn(4, 3, requires_grad=True)
        t = torch.randn(4, 3, requires_grad=True)
        loss, _ = distillation_loss(s, t, torch.tensor([0, 1, 2, -100]), kind=kind, temperature=2.0, alpha=0.3)
        loss.backward()
        assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    # Regression: MSE to the teacher's prediction plus MSE to the gold value.
    s = torch.tensor([[1.0], [2.0]], requires_grad=True)
    loss, parts = distillation_loss(s, torch.tensor([[0.0], [2.0]]), torch.tensor([3.0, float("nan")]),
                                    alpha=0.5, problem_type="regression")
    assert parts == {"soft_mse": pytest.approx(0.5), "hard": pytest.approx(4.0)}
    loss.backward()
    assert s.grad[0, 0].item() == pytest.approx(0.5 * 1.0 + 0.5 * 2 * (1.0 - 3.0))  # d/ds of both parts


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="use kind='mse' for regression"):
        distillation_loss(torch.zeros(2, 1), torch.zeros(2, 1), kind="kl", problem_type="regression")
    with pytest.raises(ValueError, match="unknown loss kind"):
        distillation_loss(torch.zeros(2, 2), torch.zeros(2, 2), kind="cosine")
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([0, 1]), alpha=1.5)
    with pytest.raises(ValueError, match="needs labels"):
        distillation_loss(torch.zeros(2, 2), torch.zeros(2, 2), None, alpha=0.5)
