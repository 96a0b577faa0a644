"""GLUE metrics, computed locally.

``evaluate.load("glue", ...)`` downloads its script from the Hub, which offline runs and CI cannot do. These are
the same definitions (scikit-learn / SciPy) as the GLUE metric script: binary F1 of class 1 for MRPC/QQP, Matthews
correlation for CoLA, Pearson and Spearman correlation for STS-B, ``combined_score`` = their mean.

The same metrics also ship as an ``evaluate`` module inside the package (``data/glue_metric/``, an independent
implementation that ``tests/test_evaluate_metric.py`` holds to agree with :func:`compute_metrics` on every task),
for code that expects the ``evaluate`` interface; it loads from disk, offline::

    import evaluate
    from distilkit.data.metrics import glue_metric_path

    glue = evaluate.load(glue_metric_path(), "mrpc")   # any GLUE config: cola, sst2, mrpc, qqp, stsb, mnli...
    glue.compute(predictions=logits.argmax(-1), references=labels)   # {"accuracy", "f1", "combined_score"}

``evaluate`` is an optional dependency (``pip install distilkit[evaluate]``); nothing here imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from distilkit.data.tasks import TaskSpec

MetricName = Literal["accuracy", "f1", "matthews_correlation", "pearson", "spearmanr"]
IGNORE_INDEX = -100
"""Class label of an example without a gold label (the PyTorch / transformers convention)."""


def glue_metric_path() -> str:
    """The folder of distilkit's GLUE ``evaluate`` module, for ``evaluate.load(glue_metric_path(), config)``.

    Returns:
        The absolute path, as the ``str`` that ``evaluate.load`` takes (``evaluate`` finds ``glue_metric.py``
        inside the folder, named like it, and never goes to the Hub for a local path).
    """
    return str(Path(__file__).resolve().parent / "glue_metric")


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of predictions equal to the label."""
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Binary F1 of class 1 (GLUE's MRPC "equivalent" / QQP "duplicate"); 0.0 when it is never predicted nor true."""
    from sklearn import metrics as skm  # imported on use: scikit-learn and SciPy take seconds to import

    return float(skm.f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0))


def matthews_correlation(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation coefficient; 0.0 when either side is constant (the formula's 0/0)."""
    if len(np.unique(predictions)) < 2 or len(np.unique(labels)) < 2:
        return 0.0
    from sklearn import metrics as skm

    return float(skm.matthews_corrcoef(labels, predictions))


def _constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def pearson(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Pearson correlation; 0.0 (not NaN plus a SciPy warning per eval) when either side is constant."""
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if len(labels) < 2 or _constant(predictions) or _constant(labels):
        return 0.0
    from scipy import stats

    return float(stats.pearsonr(predictions, labels)[0])


def spearmanr(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Spearman rank correlation; 0.0 when either side is constant."""
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if len(labels) < 2 or _constant(predictions) or _constant(labels):
        return 0.0
    from scipy import stats

    return float(stats.spearmanr(predictions, labels)[0])


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearmanr,
}


def _labels_as_float(labels: np.ndarray) -> np.ndarray:
    # Labels straight from a ``datasets`` column may hold None for unlabeled rows (an object array).
    labels = np.asarray(labels)
    if labels.dtype == object:
        labels = np.array([np.nan if v is None else v for v in labels.ravel()], dtype=np.float64)
    return labels.astype(np.float64).ravel()


def compute_metrics(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Compute the task's metrics (plus ``combined_score``, their mean, when there are several).

    Args:
        task: The task; its ``metrics`` and ``problem_type`` decide what is computed.
        logits: ``(n, num_labels)`` scores (classification: argmax is the prediction), or ``(n, 1)`` / ``(n,)``
            predictions for regression.
        labels: ``(n,)`` gold labels. Rows without one (-100 or None for classification, NaN or None for
            regression) are left out, so a partly labeled split can still be scored.

    Returns:
        ``{metric name: value}``; every value is NaN when no row has a label.
    """
    logits = np.asarray(logits, dtype=np.float64)
    gold = _labels_as_float(labels)
    if task.is_regression:
        predictions = logits.reshape(len(logits), -1)[:, 0] if logits.ndim > 1 else logits
        keep = ~np.isnan(gold)
    else:
        if logits.ndim != 2:
            raise ValueError(f"classification logits must be (n, num_labels), got shape {logits.shape}")
        predictions = logits.argmax(axis=-1)
        keep = ~np.isnan(gold) & (gold != IGNORE_INDEX)
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} predictions but {len(gold)} labels")
    predictions, gold = predictions[keep], gold[keep]
    if not task.is_regression:
        gold = gold.astype(np.int64)
    names = list(dict.fromkeys(task.metrics))
    if len(gold) == 0:
        results = dict.fromkeys(names, float("nan"))
    else:
        results = {name: METRICS[name](predictions, gold) for name in names}
    if len(names) > 1:
        results["combined_score"] = float(np.mean([results[n] for n in names]))
    return results
