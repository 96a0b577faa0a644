"""The side-by-side summary of a pipeline run (``pipeline.json`` and ``pipeline.md``).

Latency ratios between models timed minutes apart on a shared CPU are noise; so the summary reloads the
original teacher and every stage's saved model and times them *interleaved*, round by round, in one process.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from distilkit.core.measure import (
    MB,
    count_parameters,
    hardware_description,
    interleaved_latency_ms,
    repeated_inputs,
    size_on_disk,
)
from distilkit.core.saved_files import read_json
from distilkit.core.yaml_files import read_yaml
from distilkit.data.tasks import load_split, load_task
from distilkit.models.inference import encoder_for, load_saved


def _load(path: str):
    return load_saved(path)


def _disk_mb(name: str, model) -> float:
    if Path(name).is_dir():
        return size_on_disk(name) / MB
    with tempfile.TemporaryDirectory() as tmp:  # a Hub teacher: measure what save_pretrained writes
        model.save_pretrained(tmp)
        return size_on_disk(tmp) / MB


def _stage_rows(stages: list[dict], metrics: list[dict]) -> list[tuple[dict, dict, Path]]:
    """(stage info, its metric values, model dir) per row: a quantizing (or Deep Compression) stage first
    shows its float model."""
    rows = []
    for stage, m in zip(stages, metrics):
        float_dir = Path(stage["dir"]) / "model-float"
        if float_dir.is_dir() and "float_metrics" in m["student"]:
            before = "before encoding" if "deep_compression" in m["student"] else "before quantization"
            rows.append(({**stage, "name": f"{stage['name']} ({before})", "before_quantization": True},
                         m["student"]["float_metrics"], float_dir))
        rows.append((stage, m["student"]["metrics"], Path(stage["dir"]) / "model"))
    return rows


def summarize(pipeline, stages: list[dict], *, measure_side_by_side: bool = True, rounds: int = 3) -> dict:
    """Compare every stage's best model with the original teacher (metrics, params, size, CPU latency).

    A stage that quantizes its student gives two rows, its float model then its quantized one, so the
    table shows what distillation/pruning and what quantization each bought.
    """
    task = load_task(pipeline.task)
    metrics = [read_json(Path(s["dir"]) / "metrics.json") for s in stages]
    first = metrics[0]
    main = task.main_metric if task.main_metric in first["student"]["metrics"] else next(iter(first["student"]["metrics"]))
    teacher_name = first["teacher"]["name"]
    teacher_model, teacher_tok = _load(teacher_name)
    models = [(teacher_model, teacher_tok, pipeline.teacher.get("max_length", 128))]
    stage_rows = _stage_rows(stages, metrics)
    for stage, _, model_dir in stage_rows:
        model, tok = _load(str(model_dir))
        models.append((model, tok, _stage_max_length(Path(stage["dir"]))))
    latency: list[dict[str, float]] = [{} for _ in models]
    measure_cfg = pipeline.measure
    batch_sizes = measure_cfg.get("batch_sizes", [1, 32])
    if measure_side_by_side:
        data_dir = pipeline.data.get("dir")
        eval_split = (pipeline.data.get("eval_splits") or task.eval_splits)[0]
        eval_ds = load_split(task, eval_split, data_dir=data_dir, max_examples=64, seed=0)
        texts, pairs = list(eval_ds["text_a"]), (list(eval_ds["text_b"]) if task.is_pair else None)
        candidates = {i: (model, repeated_inputs(encoder_for(model), tok, texts, pairs, max_length))
                      for i, (model, tok, max_length) in enumerate(models)}
        timed = interleaved_latency_ms(candidates, rounds, batch_sizes=batch_sizes,
                                       repeats=max(3, measure_cfg.get("repeats", 10) // rounds),
                                       num_threads=measure_cfg.get("num_threads"))
        latency = [timed[i] for i in range(len(models))]

    t_metric = first["teacher"]["metrics"][main]
    teacher = {"name": teacher_name, "metric": t_metric, "params": count_parameters(teacher_model),
               "size_mb": round(_disk_mb(teacher_name, teacher_model), 3), "latency_ms": latency[0]}
    rows = []
    for i, (stage, values, model_dir) in enumerate(stage_rows, start=1):
        model = models[i][0]
        size_mb = size_on_disk(model_dir) / MB
        value = values[main]
        rows.append({**stage, "metric": value, "retained": round(value / t_metric, 4) if t_metric else float("nan"),
                     "params": count_parameters(model), "size_mb": round(size_mb, 3),
                     "size_ratio": round(teacher["size_mb"] / size_mb, 2),
                     "params_ratio": round(teacher["params"] / count_parameters(model), 2),
                     "latency_ms": latency[i],
                     "latency_ratios": {k: round(latency[0][k] / v, 2) for k, v in latency[i].items()},
                     "stage_metrics": values, "model_dir": str(model_dir)})
    return {"task": task.name, "output_dir": pipeline.output_dir, "main_metric": main, "teacher": teacher,
            "stages": rows, "latency_keys": [f"b{b}" for b in batch_sizes] if measure_side_by_side else [],
            "hardware": hardware_description()}


def _stage_max_length(directory: Path) -> int:
    recipe = read_yaml(directory / "recipe.yaml", "saved recipe")
    return int(recipe["student"]["max_length"])


def summary_markdown(summary: dict) -> str:
    """The stage table of ``pipeline.md``."""
    metric = summary["main_metric"]
    lines = [f"# Pipeline {summary['output_dir']} ({summary['task']})", "",
             f"Original teacher: `{summary['teacher']['name']}` — {metric} {summary['teacher']['metric']:.4f}, "
             f"{summary['teacher']['params']:,} params, {summary['teacher']['size_mb']:.1f} MB.", "",
             f"| stage | student | {metric} | retained | params | size MB | smaller (disk) | "
             + " | ".join(f"faster {k}" for k in summary["latency_keys"]) + " |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(summary["latency_keys"])]
    for stage in summary["stages"]:
        lines.append(
            f"| {stage['name']} | {stage['student']} | {stage['metric']:.4f} | {stage['retained']:.3f} | "
            f"{stage['params']:,} | {stage['size_mb']:.2f} | {stage['size_ratio']:.1f}× | "
            + " | ".join(f"{stage['latency_ratios'].get(k, float('nan')):.1f}×" for k in summary["latency_keys"])
            + " |")
    lines += ["", "Ratios are original teacher / stage, latencies measured side by side in one process "
              f"({summary['hardware']['torch_threads']} CPU threads).", ""]
    return "\n".join(lines)
