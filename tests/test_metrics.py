"""GLUE metrics against hand-computed values and against scikit-learn / SciPy."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from distilkit.data.metrics import (
    METRICS,
    MetricName,
    accuracy,
    compute_metrics,
    f1,
    matthews_correlation,
    pearson,
    spearmanr,
)
from distilkit.data.tasks import load_split, load_task

GLUE = Path(__file__).resolve().parent / "fixtures" / "glue"


def confusion(tp: int, fp: int, fn: int, tn: int) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, labels) with exactly these binary confusion-matrix counts."""
    predictions = np.array([1] * tp + [1] * fp + [0] * fn + [0] * tn)
    labels = np.array([1] * tp + [0] * fp + [1] * fn + [0] * tn)
    return predictions, labels


def test_metric_names_match_the_task_schema():
    assert set(METRICS) == set(get_args(MetricName))


def test_binary_metrics_by_formula():
    tp, fp, fn, tn = 5, 2, 3, 10
    predictions, labels = confusion(tp, fp, fn, tn)
    assert accuracy(predictions, labels) == pytest.approx((tp + tn) / 20)
    assert f1(predictions, labels) == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 10 / 15
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_correlation(predictions, labels) == pytest.approx(mcc)  # 44 / sqrt(8736) = 0.4708
    assert mcc == pytest.approx(0.470757, abs=1e-6)


def test_correlations_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(2 * x + 1, x) == pytest.approx(1.0)
    assert pearson(-x, x) == pytest.approx(-1.0)
    assert spearmanr(x**3, x) == pytest.approx(1.0)  # monotone: perfect rank correlation...
    assert pearson(x**3, x) < 0.99  # ...but not linear
    # x = [1, 2, 3], y = [1, 3, 2]: r = cov / (sd sd) = 0.5 / (1 * 1) = 0.5
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)


def test_against_sklearn_and_scipy_on_random_data():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    assert accuracy(predictions, labels) == pytest.approx(skm.accuracy_score(labels, predictions))
    assert f1(predictions, labels) == pytest.approx(skm.f1_score(labels, predictions))
    assert matthews_correlation(predictions, labels) == pytest.approx(skm.matthews_corrcoef(labels, predictions))
    multi_labels, multi_predictions = rng.integers(0, 3, 500), rng.integers(0, 3, 500)
    assert matthews_correlation(multi_predictions, multi_labels) == pytest.approx(
        skm.matthews_corrcoef(multi_labels, multi_predictions))
    y, y_hat = rng.uniform(0, 5, 300), rng.normal(size=300)
    y_hat += y
    assert pearson(y_hat, y) == pytest.approx(stats.pearsonr(y_hat, y)[0])
    assert spearmanr(y_hat, y) == pytest.approx(stats.spearmanr(y_hat, y)[0])


def test_degenerate_inputs_give_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert matthews_correlation(np.ones(10, dtype=int), np.array([0, 1] * 5)) == 0.0
        assert matthews_correlation(np.array([0, 1] * 5), np.zeros(10, dtype=int)) == 0.0
        assert f1(np.zeros(6, dtype=int), np.zeros(6, dtype=int)) == 0.0
        assert pearson(np.full(5, 2.5), np.arange(5.0)) == 0.0
        assert pearson(np.arange(5.0), np.full(5, 3.0)) == 0.0
        assert spearmanr(np.full(5, 2.5), np.arange(5.0)) == 0.0
        assert pearson(np.array([1.0]), np.array([2.0])) == 0.0


def test_compute_metrics_classification_drops_missing_labels():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 2))
    labels = rng.integers(0, 2, 200)
    labels[::7] = -100
    keep = labels != -100
    predictions = logits.argmax(-1)[keep]
    result = compute_metrics(load_task("mrpc"), logits, labels)
    assert set(result) == {"accuracy", "f1", "combined_score"}
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels[keep], predictions))
    assert result["f1"] == pytest.approx(skm.f1_score(labels[keep], predictions))
    assert result["combined_score"] == pytest.approx((result["accuracy"] + result["f1"]) / 2)
    # The same when missing labels arrive as None (an unlabeled row of a ``datasets`` column).
    as_list = [None if y == -100 else int(y) for y in labels]
    assert compute_metrics(load_task("mrpc"), logits, as_list) == result


def test_compute_metrics_single_metric_tasks():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 5.0], [4.0, 0.0, 0.0]])
    assert compute_metrics(load_task("mnli"), logits, np.array([0, 1, 1, 0])) == {"accuracy": 0.75}
    cola = compute_metrics(load_task("cola"), np.array([[0.0, 1.0]] * 4), np.array([0, 1, 1, 0]))
    assert cola == {"matthews_correlation": 0.0}  # constant prediction


def test_compute_metrics_regression():
    rng = np.random.default_rng(2)
    gold = rng.uniform(0, 5, 100).astype(np.float32)
    predictions = gold + rng.normal(scale=0.5, size=100)
    labels = gold.copy()
    labels[:10] = np.nan
    stsb = load_task("stsb")
    result = compute_metrics(stsb, predictions[:, None], labels)
    assert result["pearson"] == pytest.approx(stats.pearsonr(predictions[10:], gold[10:])[0])
    assert result["spearmanr"] == pytest.approx(stats.spearmanr(predictions[10:], gold[10:])[0])
    assert result["combined_score"] == pytest.approx((result["pearson"] + result["spearmanr"]) / 2)
    assert compute_metrics(stsb, predictions, labels) == result  # 1-D predictions work too


def test_compute_metrics_on_a_loaded_split():
    ds = load_split("sst2", "validation", data_dir=GLUE)
    gold = np.array(ds["label"])
    logits = np.eye(2)[gold]
    logits[:100] = logits[:100, ::-1]  # 100 wrong answers
    assert compute_metrics(load_task("sst2"), logits, ds["label"]) == {"accuracy": pytest.approx(772 / 872)}
    unlabeled = load_split("sst2", "test", data_dir=GLUE)
    assert math.isnan(compute_metrics(load_task("sst2"), np.zeros((20, 2)), unlabeled["label"])["accuracy"])


def test_compute_metrics_rejects_bad_shapes():
    with pytest.raises(ValueError, match="num_labels"):
        compute_metrics(load_task("sst2"), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="3 predictions but 4 labels"):
        compute_metrics(load_task("sst2"), np.zeros((3, 2)), np.zeros(4))
