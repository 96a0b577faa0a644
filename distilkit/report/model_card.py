"""The model card (``README.md``) of a pushed run: Hub metadata built by ``huggingface_hub``, a body of measurements.

The YAML header is a ``huggingface_hub.ModelCardData`` whose ``eval_results`` are one ``EvalResult`` per measured
metric, so the ``model-index`` is written by the library the Hub's own tooling uses, and parsed back by it
(``ModelCard(...)`` raises ``ValueError`` on a ``model-index`` it cannot read) before distilkit writes the card.
The body is distilkit's: teacher vs this model (quality, parameters, size on disk, CPU latency), the hardware, any
quantization and pipeline stages, how to load the model, and the recipe.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from distilkit.core.measure import MB
from distilkit.report.pipeline_summary import summary_markdown

if TYPE_CHECKING:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

GLUE_TASKS = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
GLUE_DATASET = "nyu-mll/glue"
METRIC_NAMES = {"accuracy": "Accuracy", "f1": "F1", "matthews_correlation": "Matthews correlation",
                "pearson": "Pearson", "spearmanr": "Spearman", "combined_score": "Combined score"}


def eval_results(metrics: dict) -> list[EvalResult]:
    """One ``EvalResult`` per metric of the student in ``metrics.json``, with the value exactly as measured.

    Args:
        metrics: The run's ``metrics.json`` (``task``, ``eval_split``, ``student.metrics``).

    Returns:
        Text-classification results on ``nyu-mll/glue`` (config = the task) for GLUE tasks, else on a dataset
        named after the task.
    """
    # Imported on use, here and below: huggingface_hub's card module pulls in its HTTP client, and
    # `distilkit push` must report a bad run directory before importing anything heavy (tests/test_preflight.py).
    from huggingface_hub import EvalResult

    task, split = metrics["task"], metrics.get("eval_split", "validation")
    glue = task in GLUE_TASKS
    return [EvalResult(task_type="text-classification", task_name="Text Classification",
                       dataset_type=GLUE_DATASET if glue else task,
                       dataset_name=f"GLUE {task.upper()}" if glue else task,
                       dataset_config=task if glue else None, dataset_split=split,
                       metric_type=key, metric_value=float(value), metric_name=METRIC_NAMES.get(key, key))
            for key, value in metrics["student"]["metrics"].items()]


def pipeline_tag(config: dict) -> str | None:
    """The card's ``pipeline_tag``: ``text-classification`` where ``transformers.pipeline("text-classification",
    model=repo)`` feeds the model as it was trained, else ``None``.

    The stock pipeline adds special tokens and joins a pair into one sequence, which a BiLSTM does not read; a
    BiLSTM folder carries its own pipeline (``custom_pipelines`` in ``config.json``, ``bilstm_pipeline.py``), and
    one saved without it gets no tag rather than a widget that mis-feeds it.
    """
    if config.get("model_type") == "distilkit-bilstm" and "text-classification" not in (
            config.get("custom_pipelines") or {}):
        return None
    return "text-classification"


def card_data(metrics: dict, original_teacher: str, model_name: str, config: dict | None = None) -> ModelCardData:
    """The card's YAML header: library, pipeline, tags, base model, datasets and the ``model-index``.

    Args:
        metrics: The run's ``metrics.json``.
        original_teacher: The first teacher (a pipeline's original one); a Hub id becomes ``base_model``.
        model_name: The ``model-index`` name (the repository's name).
        config: The saved model's ``config.json`` (decides the ``pipeline_tag``, :func:`pipeline_tag`).
    """
    from huggingface_hub import ModelCardData

    task, student = metrics["task"], metrics["student"]
    tags = ["distilkit", "distillation", "model-compression", task]
    if "quantization" in student:
        tags.append("quantized")
    # A local teacher directory is not a Hub id: naming it as base_model would link to nothing.
    # Nor is an ensemble's "ensemble(a, b)" name: only a plain user/name is.
    hub_teacher = (re.fullmatch(r"[\w.-]+/[\w.-]+", original_teacher) is not None
                   and not Path(original_teacher).exists())
    return ModelCardData(
        library_name="transformers", pipeline_tag=pipeline_tag(config or {}), language=["en"], tags=tags,
        base_model=original_teacher if hub_teacher else None,
        datasets=[GLUE_DATASET] if task in GLUE_TASKS else None,
        model_name=model_name, eval_results=eval_results(metrics))


def loading_note(config: dict) -> str:
    """How the saved model loads, from its ``config.json``: stock, distilkit architecture, or quantized."""
    quantized = (config.get("quantization_config") or {}).get("quant_method") == "distilkit"
    custom = str(config.get("model_type", "")).startswith("distilkit-")
    if quantized:
        return ("Quantized with distilkit's integer format: `pip install distilkit` and `import distilkit` "
                "before loading (it registers the format with transformers).")
    if custom:
        return ("A distilkit architecture; the modeling file travels with the weights, so plain transformers "
                "loads it with `trust_remote_code=True` (with distilkit installed, no remote code is needed).")
    return "A stock transformers architecture: plain Auto classes load it."


def card_body(metrics: dict, summary: dict | None, recipe: str, config: dict, repo: str,
              original_teacher: str) -> str:
    """The Markdown under the header: measured results table, hardware, quantization, stages, use, recipe."""
    teacher, student, task = metrics["teacher"], metrics["student"], metrics["task"]
    lines = [f"# {repo.split('/')[-1]}", "",
             f"Compressed with [distilkit](https://github.com/distilkit/distilkit) from `{original_teacher}` on "
             f"{task.upper() if task in GLUE_TASKS else task} ({student['kind']} student). Every number below "
             "was measured by distilkit on the model as saved in this repository.", "",
             f"## Results ({metrics.get('eval_split', 'validation')})", "",
             "| | teacher | this model | ratio |", "| --- | ---: | ---: | ---: |"]
    for key, value in student["metrics"].items():
        t = teacher["metrics"].get(key)
        lines.append(f"| {key} | {t:.4f} | {value:.4f} | {value / t:.3f} |" if t else f"| {key} | | {value:.4f} | |")
    if "params" in teacher:
        lines.append(f"| parameters | {teacher['params']:,} | {student['params']:,} | "
                     f"{teacher['params'] / student['params']:.2f}× fewer |")
    lines.append(f"| size on disk (MB) | | {student['size_on_disk_bytes'] / MB:.2f} | |")
    for key, value in student.get("latency_ms", {}).items():
        t = teacher.get("latency_ms", {}).get(key)
        lines.append(f"| CPU latency {key} (ms) | {t:.2f} | {value:.2f} | {t / value:.2f}× faster |" if t
                     else f"| CPU latency {key} (ms) | | {value:.2f} | |")
    hw = metrics.get("hardware", {})
    lines += ["", "Hardware: " + ", ".join(f"{k} {v}" for k, v in hw.items()) + "." if hw else ""]
    if "quantization" in student:
        q = student["quantization"]
        lines += ["", f"Quantization: linear `{q['linear'] or 'float'}`, embedding `{q['embedding'] or 'float'}`"
                  + (" (quantization-aware training)" if q.get("qat") else " (post-training)")
                  + f"; float model {student['float_size_on_disk_bytes'] / MB:.2f} MB on disk."]
    if summary:
        lines += ["", "## Pipeline stages", "", *summary_markdown(summary).splitlines()[2:]]
    lines += ["", "## Use", "", loading_note(config), "", "```python",
              "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
              f'model = AutoModelForSequenceClassification.from_pretrained("{repo}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{repo}")', "```", "", *_pipeline_use(config, repo),
              "## Recipe", "", "```yaml", recipe.strip(), "```", ""]
    return "\n".join(lines)


def _pipeline_use(config: dict, repo: str) -> list[str]:
    """How a BiLSTM's own pipeline is called (sentences apart, no special tokens), when its folder has one."""
    if config.get("model_type") != "distilkit-bilstm" or pipeline_tag(config) is None:
        return []
    example = ('{"text": "A man plays a guitar.", "text_pair": "A man is playing music."}' if config.get("is_pair")
               else '"A gorgeous, witty film."')
    return ["The text-classification pipeline of this folder tokenizes as the BiLSTM reads (each sentence apart, "
            "without special tokens):", "", "```python", "from transformers import pipeline",
            f'classifier = pipeline("text-classification", model="{repo}", trust_remote_code=True)',
            f"classifier({example})", "```", ""]


def build_model_card(metrics: dict, summary: dict | None, recipe: str, config: dict, repo: str) -> ModelCard:
    """The whole card of a run, validated by ``huggingface_hub``.

    Args:
        metrics: The (last stage's) ``metrics.json``.
        summary: ``pipeline.json`` for a pipeline run, else ``None``.
        recipe: The recipe (or pipeline) YAML text, shown in the card.
        config: The saved model's ``config.json`` (decides how the card says to load it).
        repo: The Hub repository, ``user/name``.

    Raises:
        ValueError: ``huggingface_hub`` cannot parse the ``model-index`` it is given back.
    """
    from huggingface_hub import ModelCard

    original = summary["teacher"]["name"] if summary else metrics["teacher"]["name"]
    data = card_data(metrics, original, repo.split("/")[-1], config)
    body = card_body(metrics, summary, recipe, config, repo, original)
    # Rendered by the library and parsed back by it (ModelCard reads the header into ModelCardData), so the card
    # distilkit writes is one the Hub's tooling reads.
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
