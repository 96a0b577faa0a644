"""distilkit's GLUE metrics and the ``evaluate`` module shipped in the package agree exactly, on every task.

The module (``distilkit/data/glue_metric/glue_metric.py``) is an independent implementation that never imports
distilkit; these tests hold the two to the same numbers on random predictions and on the edge cases where GLUE
implementations usually part ways: constant predictions or labels (MCC, correlations), tied scores (Spearman),
unlabeled rows, one row, no labeled row.
"""

from __future__ import annotations

import ast
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from distilkit.data.metrics import compute_metrics, glue_metric_path
from distilkit.data.tasks import TaskSpec, list_tasks, load_task

evaluate = pytest.importorskip("evaluate", reason="the evaluate extra is not installed")

TASKS = list_tasks()
N = 200


@pytest.fixture(scope="module")
def glue_metric() -> Callable[[str], evaluate.EvaluationModule]:
    """``evaluate.load(glue_metric_path(), config)``, loaded once per config."""
    loaded: dict[str, evaluate.EvaluationModule] = {}

    def get(config: str) -> evaluate.EvaluationModule:
        if config not in loaded:
            loaded[config] = evaluate.load(glue_metric_path(), config)
        return loaded[config]

    return get


def one_hot_logits(task: TaskSpec, predictions: np.ndarray) -> np.ndarray:
    """Logits whose argmax is ``predictions`` (classification) or the ``(n, 1)`` scores (regression)."""
    if task.is_regression:
        return np.asarray(predictions, dtype=np.float64).reshape(-1, 1)
    logits = np.random.default_rng(1).normal(size=(len(predictions), task.num_labels))
    logits[np.arange(len(predictions)), predictions] += 100.0
    return logits


# Each case: (task, rng) -> (predictions, labels); labels use -100 / NaN for unlabeled rows.
def random_case(task, rng):
    if task.is_regression:
        labels = rng.uniform(0, 5, N)
        return labels + rng.normal(0, 1.5, N), labels
    return rng.integers(0, task.num_labels, N), rng.integers(0, task.num_labels, N)


def mostly_right_case(task, rng):
    predictions, labels = random_case(task, rng)
    if task.is_regression:
        return labels + rng.normal(0, 0.1, N), labels
    return np.where(rng.random(N) < 0.8, labels, predictions), labels


def constant_prediction_case(task, rng):
    _, labels = random_case(task, rng)
    return (np.full(N, 2.5) if task.is_regression else np.ones(N, dtype=np.int64)), labels


def constant_label_case(task, rng):
    predictions, _ = random_case(task, rng)
    return predictions, (np.full(N, 3.0) if task.is_regression else np.zeros(N, dtype=np.int64))


def ties_case(task, rng):
    # Scores on a coarse grid: most values are shared, so Spearman ranks carry many ties (averaged ranks).
    if task.is_regression:
        labels = np.round(rng.uniform(0, 5, N) * 2) / 2
        return np.round(labels + rng.normal(0, 1, N)), labels
    return rng.integers(0, 2, N), rng.integers(0, 2, N)


def partly_unlabeled_case(task, rng):
    predictions, labels = random_case(task, rng)
    unlabeled = rng.random(N) < 0.3
    if task.is_regression:
        return predictions, np.where(unlabeled, np.nan, labels)
    return predictions, np.where(unlabeled, -100, labels)


def no_label_case(task, rng):
    predictions, _ = random_case(task, rng)
    return predictions, (np.full(N, np.nan) if task.is_regression else np.full(N, -100, dtype=np.int64))


def one_row_case(task, rng):
    predictions, labels = random_case(task, rng)
    return predictions[:1], labels[:1]


def all_wrong_case(task, rng):
    _, labels = random_case(task, rng)
    if task.is_regression:
        return 5.0 - labels, labels
    return (labels + 1) % task.num_labels, labels


CASES = {f.__name__.removesuffix("_case"): f for f in (
    random_case, mostly_right_case, constant_prediction_case, constant_label_case, ties_case,
    partly_unlabeled_case, no_label_case, one_row_case, all_wrong_case)}


def assert_same(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs), (ours, theirs)
    for name, value in ours.items():
        other = theirs[name]
        assert isinstance(other, float), (name, type(other))
        assert (math.isnan(value) and math.isnan(other)) or value == other, (name, value, other)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", TASKS)
def test_distilkit_and_the_evaluate_module_agree(name, case, glue_metric):
    task = load_task(name)
    predictions, labels = CASES[case](task, np.random.default_rng(zlib.crc32(f"{name}/{case}".encode())))
    ours = compute_metrics(task, one_hot_logits(task, predictions), labels)
    theirs = glue_metric(name).compute(predictions=predictions, references=labels)
    assert_same(ours, theirs)
    # Every metric the task file names is computed (nothing silently missing from either side).
    assert set(task.metrics) <= set(theirs)


def test_every_builtin_task_is_a_config():
    assert set(TASKS) >= {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}


def test_edge_values_by_hand(glue_metric):
    # A constant prediction has no correlation with the labels: MCC 0, not NaN, on both sides.
    cola = load_task("cola")
    constant, labels = np.ones(6, dtype=np.int64), np.array([0, 1, 0, 1, 1, 0])
    assert glue_metric("cola").compute(predictions=constant, references=labels) == {"matthews_correlation": 0.0}
    assert compute_metrics(cola, one_hot_logits(cola, constant), labels) == {"matthews_correlation": 0.0}
    # Ties share their mean rank: predictions [1, 2, 2, 3] rank [1, 2.5, 2.5, 4] against [1, 2, 3, 4], so
    # Spearman = cov / (sd sd) = 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    stsb = load_task("stsb")
    predictions, gold = np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0])
    theirs = glue_metric("stsb").compute(predictions=predictions, references=gold)
    assert theirs["spearmanr"] == pytest.approx(math.sqrt(0.9), abs=1e-12)
    assert compute_metrics(stsb, predictions.reshape(-1, 1), gold)["spearmanr"] == theirs["spearmanr"]
    # MRPC: tp 1, fp 1, fn 0, tn 1 -> accuracy 2/3, F1 = 2 tp / (2 tp + fp + fn) = 2/3.
    mrpc = glue_metric("mrpc").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    assert mrpc == pytest.approx({"accuracy": 2 / 3, "f1": 2 / 3, "combined_score": 2 / 3})


def test_unknown_config_names_the_choices():
    with pytest.raises(KeyError, match="mrpc"):
        evaluate.load(glue_metric_path(), "squad")


def test_the_module_is_independent_of_distilkit():
    """``evaluate`` copies the script into its own cache, and the agreement above means something only if the
    script computes on its own: it imports no distilkit module."""
    script = Path(glue_metric_path()) / "glue_metric.py"
    assert script.is_file()
    imported = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert not {m for m in imported if m.startswith(("distilkit", "."))}, imported
