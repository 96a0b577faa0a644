"""The GLUE metric as an ``evaluate`` module that loads from disk, so it works offline.

``evaluate.load("glue", config)`` fetches its script from the Hugging Face Hub. distilkit ships this script inside
the package instead; load it with::

    import evaluate
    from distilkit.data.metrics import glue_metric_path

    glue = evaluate.load(glue_metric_path(), "mrpc")
    glue.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    # {'accuracy': 0.666..., 'f1': 0.666..., 'combined_score': 0.666...}

It follows the Hub's GLUE script (scikit-learn and SciPy, same definitions) and deliberately does not import
distilkit: ``evaluate`` copies the script into its modules cache, and ``tests/test_evaluate_metric.py`` checks that
this independent implementation and ``distilkit.data.metrics.compute_metrics`` agree on every built-in task.
Where it differs from the Hub script, it does so to agree with distilkit:

* ``combined_score``, the mean of the metrics, is returned for tasks with two metrics (MRPC, QQP, STS-B), as the
  transformers GLUE examples report it;
* a correlation is 0.0, not NaN, when one side is constant or there are fewer than two rows;
* references of -100 (classification) or NaN (STS-B) mark unlabeled rows and are left out; with no labeled row
  every metric is NaN;
* STS-B values stay float64 (the Hub script stores float32 and reads them back through a numpy formatter
  that casts to float32), so nothing is rounded before the correlation.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019}
}
"""

_DESCRIPTION = """\
GLUE's metric for each of its tasks: accuracy (SST-2, MNLI, QNLI, RTE, WNLI), accuracy and binary F1 of class 1
(MRPC, QQP), Matthews correlation (CoLA), Pearson and Spearman correlation (STS-B).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: class ids (every task but stsb) or similarity scores (stsb), one per example.
    references: gold class ids (-100: unlabeled, left out) or gold scores (NaN: unlabeled, left out).
Returns:
    accuracy (sst2, mnli, mnli_matched, mnli_mismatched, qnli, rte, wnli, mrpc, qqp), f1 (mrpc, qqp),
    matthews_correlation (cola), pearson and spearmanr (stsb), combined_score (mrpc, qqp, stsb: the mean).
Examples:
    >>> glue = evaluate.load(distilkit.data.metrics.glue_metric_path(), "cola")
    >>> glue.compute(predictions=[1, 1, 1, 1], references=[0, 1, 0, 1])
    {'matthews_correlation': 0.0}
"""

# Which metrics each configuration reports, in the order they are returned.
CONFIG_METRICS = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearmanr"),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}
UNLABELED_CLASS = -100


def simple_accuracy(predictions, references):
    """Fraction of predictions equal to the reference."""
    return float((predictions == references).mean())


def binary_f1(predictions, references):
    """F1 of class 1 (MRPC "equivalent", QQP "duplicate"); 0.0 when class 1 is neither predicted nor true."""
    return float(f1_score(y_true=references, y_pred=predictions, pos_label=1, average="binary", zero_division=0.0))


def mcc(predictions, references):
    """Matthews correlation; 0.0 when either side is constant (the formula's 0/0, as scikit-learn returns it)."""
    if len(np.union1d(predictions, references)) < 2:
        return 0.0  # one class on both sides: scikit-learn would warn about its confusion matrix's shape
    return float(matthews_corrcoef(references, predictions))


def _is_degenerate(predictions, references):
    # SciPy returns NaN (and warns) on a constant input and raises on fewer than two rows; no correlation is 0.0.
    return len(references) < 2 or np.ptp(predictions) == 0 or np.ptp(references) == 0


def pearson(predictions, references):
    """Pearson correlation; 0.0 when either side is constant."""
    return 0.0 if _is_degenerate(predictions, references) else float(pearsonr(predictions, references)[0])


def spearman(predictions, references):
    """Spearman rank correlation (ties share their mean rank); 0.0 when either side is constant."""
    return 0.0 if _is_degenerate(predictions, references) else float(spearmanr(predictions, references)[0])


METRIC_FUNCTIONS = {"accuracy": simple_accuracy, "f1": binary_f1, "matthews_correlation": mcc,
                    "pearson": pearson, "spearmanr": spearman}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    """GLUE's metrics, one configuration per task."""

    def _info(self):
        if self.config_name not in CONFIG_METRICS:
            raise KeyError(f"GLUE has no configuration {self.config_name!r}; choose one of {sorted(CONFIG_METRICS)}")
        value = "float64" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(value), "references": datasets.Value(value)}),
            codebase_urls=[],
            reference_urls=["https://gluebenchmark.com/"],
            # No format="numpy": the datasets numpy formatter casts floats to float32, which moves STS-B's
            # correlations; plain Python lists keep every float64 and _compute makes the arrays.
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if self.config_name == "stsb":
            labeled = ~np.isnan(references)
        else:
            labeled = references != UNLABELED_CLASS
        predictions, references = predictions[labeled], references[labeled]
        names = CONFIG_METRICS[self.config_name]
        if len(references) == 0:
            results = {name: float("nan") for name in names}
        else:
            results = {name: METRIC_FUNCTIONS[name](predictions, references) for name in names}
        if len(names) == 2:
            results["combined_score"] = (results[names[0]] + results[names[1]]) / 2
        return results
