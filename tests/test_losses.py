"""Distillation losses against their textbook formulas."""

from __future__ import annotations

import math

import pytest
import torch

from distilkit.losses import distillation_loss, hard_label_loss, logit_mse_loss, soft_kl_loss


def test_mse_is_tang_eq3():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    # Row 1: 1 + 4 = 5; row 2: 9 + 16 = 25; mean over the batch = 15.
    assert logit_mse_loss(s, t).item() == pytest.approx(15.0)


def test_kl_matches_formula_and_t_squared():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    for temp in (1.0, 2.0, 4.0):
        p_t = torch.softmax(t / temp, -1)
        expected = (p_t * (p_t.log() - torch.log_softmax(s / temp, -1))).sum(-1).mean() * temp**2
        assert soft_kl_loss(s, t, temp).item() == pytest.approx(expected.item(), rel=1e-5)
    assert soft_kl_loss(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-6)


def test_t_squared_keeps_gradient_scale():
    # For large T the gradient of KL/T^2-free loss shrinks as 1/T^2; with the T^2 factor it stays O(1).
    torch.manual_seed(1)
    t = torch.randn(8, 5) * 3
    norms = []
    for temp in (4.0, 16.0):
        s = torch.zeros(8, 5, requires_grad=True)
        soft_kl_loss(s, t, temp).backward()
        norms.append(s.grad.norm().item())  # T^2 * (1/T) * (p_s - p_t), and p_s - p_t ~ 1/T: O(1)
    assert norms[1] == pytest.approx(norms[0], rel=0.15)


def test_hard_label_ignores_missing_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]], requires_grad=True)
    labels = torch.tensor([0, 1, -100])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert hard_label_loss(logits, labels, "single_label_classification").item() == pytest.approx(expected)
    none = hard_label_loss(logits, torch.tensor([-100, -100, -100]), "single_label_classification")
    assert none.item() == 0.0
    none.backward()  # connected to the graph: backward works on an all-unlabelled batch
    reg = hard_label_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, float("nan")]), "regression")
    assert reg.item() == pytest.approx(1.0)


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


def test_regression_rejects_kl_and_unknown_kind():
    with pytest.raises(ValueError, match="use kind='mse' for regression"):
        distillation_loss(torch.zeros(2, 1), torch.zeros(2, 1), kind="kl", problem_type="regression")
    with pytest.raises(ValueError, match="unknown loss kind"):
        distillation_loss(torch.zeros(2, 2), torch.zeros(2, 2), kind="cosine")
