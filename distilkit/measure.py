"""Measurements reported in ``metrics.json``, model cards and benchmarks: size, CPU latency, and the
assembly of a run's ``metrics.json`` (:func:`measure_run`).

Latency is the median wall time of ``repeats`` forward passes after warm-up, on real task texts (so
sequence lengths are realistic), with tokenization excluded: we time the model, not the tokenizer.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # annotations only: the recipe modules import this one
    from distilkit.config import Recipe
    from distilkit.tasks import TaskSpec

MB = 1024 * 1024
"""Bytes per megabyte (MiB) in every size distilkit reports."""


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            # bitsandbytes 4-bit weights pack two values per byte; their quant_state keeps the real shape.
            shape = getattr(getattr(param, "quant_state", None), "shape", None)
            total += torch.Size(shape).numel() if shape is not None else param.numel()
    # Quantized layers (distilkit.quantize) keep their weights as integer buffers: count the weights they
    # stand for, so a quantized model reports the same parameter count as its float original.
    total += sum(m.rows * m.cols for m in model.modules() if hasattr(m, "qweight") and hasattr(m, "rows"))
    return total


def size_on_disk(path: str | Path, suffixes: tuple[str, ...] = (".safetensors", ".bin", ".pt")) -> int:
    """Bytes of the weight files under ``path`` (what a user downloads for the model itself)."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and p.suffix in suffixes]
    return sum(p.stat().st_size for p in files)


def cpu_latency_ms(model: torch.nn.Module, make_inputs: Callable[[int], dict], batch_sizes=(1, 32),
                   repeats: int = 10, warmup: int = 2, num_threads: int | None = None) -> dict[str, float]:
    """Median CPU forward latency in milliseconds for each batch size.

    Args:
        model: The model (moved to CPU and eval mode for the measurement, then restored).
        make_inputs: ``make_inputs(batch_size)`` returns the keyword inputs of one batch.
        batch_sizes: Batch sizes to time.
        repeats: Timed runs per batch size (the median is reported).
        warmup: Untimed runs first (allocator and kernel selection).
        num_threads: ``torch.set_num_threads`` during timing (``None``: leave as is).

    Returns:
        ``{"b1": ms, "b32": ms, ...}``.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.to("cpu").eval()
    old_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    results = {}
    try:
        with torch.inference_mode():
            for batch_size in batch_sizes:
                inputs = make_inputs(batch_size)
                for _ in range(warmup):
                    model(**inputs)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model(**inputs)
                    times.append((time.perf_counter() - start) * 1000)
                results[f"b{batch_size}"] = round(statistics.median(times), 3)
    finally:
        torch.set_num_threads(old_threads)
        model.to(device).train(was_training)
    return results


def repeated_inputs(encode: Callable, tokenizer, texts: list[str], pairs: list[str] | None,
                    max_length: int) -> Callable[[int], dict]:
    """``make_inputs(batch_size)`` for :func:`cpu_latency_ms`: real texts, repeated up to the batch size."""
    def make(batch_size: int) -> dict:
        reps = -(-batch_size // len(texts))  # repeat the texts if there are fewer than the batch
        a = (texts * reps)[:batch_size]
        b = None if pairs is None else (pairs * reps)[:batch_size]
        return dict(encode(tokenizer, a, b, max_length))
    return make


def interleaved_latency_ms(candidates: dict[str, tuple[torch.nn.Module, Callable[[int], dict]]], rounds: int,
                           **timing) -> dict[str, dict[str, float]]:
    """Median CPU latency of several models timed in alternating rounds.

    Ratios between models timed minutes apart on a shared CPU are noise; timed round by round, a busy machine
    slows every model alike. ``timing`` goes to :func:`cpu_latency_ms` (batch_sizes, repeats, num_threads).

    Returns:
        ``{name: {"b1": ms, ...}}``, each value the median over rounds.
    """
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in candidates}
    for _ in range(rounds):
        for name, (model, make_inputs) in candidates.items():
            for key, value in cpu_latency_ms(model, make_inputs, **timing).items():
                samples[name].setdefault(key, []).append(value)
    return {name: {k: round(statistics.median(v), 3) for k, v in s.items()} for name, s in samples.items()}


def hardware_description() -> dict[str, str | int]:
    """Where measurements were taken (for metrics.json and model cards)."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def measure_run(recipe: Recipe, task: TaskSpec, teacher, eval_ds, teacher_metrics: dict, progress,
                train_stats: dict) -> dict:
    """Assemble ``metrics.json``: teacher vs student quality, size and CPU latency.

    The student is reloaded from ``output_dir/model`` (which also proves it round-trips); a quantized
    student is re-scored as reloaded, since its accuracy is not the float model's.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distilkit.quantize_run import evaluate_model
    from distilkit.students import STUDENTS
    from distilkit.teachers import HFTeacher

    out, measure = Path(recipe.output_dir), recipe.measure
    student = AutoModelForSequenceClassification.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    kind = STUDENTS[recipe.student.kind]
    texts = list(eval_ds["text_a"])
    pairs = None if eval_ds[0]["text_b"] is None else list(eval_ds["text_b"])

    best = progress.history[[r["epoch"] for r in progress.history].index(progress.best_epoch)]
    main_split = next(iter(teacher_metrics))
    student_info = {
        "kind": recipe.student.kind,
        "metrics": {k.split("/", 1)[1]: v for k, v in best.items() if k.startswith(f"{main_split}/")},
        "best_epoch": progress.best_epoch,
        "params": count_parameters(student),
        "size_on_disk_bytes": size_on_disk(out / "model"),
    }
    if getattr(student.config, "distilkit_vocab", None):  # student.vocab trimmed the embedding
        student_info["vocab"] = student.config.distilkit_vocab
    if recipe.quantize is not None:  # the saved model is the quantized one: score it as reloaded
        student_info["float_metrics"] = student_info["metrics"]
        student_info["metrics"] = evaluate_model(student, kind.encode, tokenizer, recipe.student.max_length,
                                                 eval_ds, task)
        student_info["float_size_on_disk_bytes"] = size_on_disk(out / "model-float")
        student_info["quantization"] = recipe.quantize.model_dump()
    teacher_info = {"name": getattr(teacher, "name", type(teacher).__name__),
                    "metrics": teacher_metrics[main_split]}
    if isinstance(teacher, HFTeacher):
        teacher_info["params"] = count_parameters(teacher.model)
    if measure.latency:
        candidates = {"student": (student, repeated_inputs(kind.encode, tokenizer, texts, pairs,
                                                           recipe.student.max_length))}
        if isinstance(teacher, HFTeacher):
            candidates["teacher"] = (teacher.model, repeated_inputs(STUDENTS["transformer"].encode, teacher.tokenizer,
                                                                    texts, pairs, teacher.max_length))
        rounds = 3 if len(candidates) > 1 else 1
        timed = interleaved_latency_ms(candidates, rounds, batch_sizes=measure.batch_sizes,
                                       repeats=max(1, measure.repeats // rounds), num_threads=measure.num_threads)
        student_info["latency_ms"] = timed["student"]
        if "teacher" in timed:
            teacher_info["latency_ms"] = timed["teacher"]
    ratios = {}
    if "params" in teacher_info:
        ratios["params_teacher_over_student"] = round(teacher_info["params"] / student_info["params"], 2)
    for key, value in student_info.get("latency_ms", {}).items():
        if "latency_ms" in teacher_info:
            ratios[f"latency_{key}_teacher_over_student"] = round(teacher_info["latency_ms"][key] / value, 2)
    retained = {k: round(v / teacher_info["metrics"][k], 4) for k, v in student_info["metrics"].items()
                if teacher_info["metrics"].get(k)}
    return {"task": task.name, "eval_split": main_split, "teacher": teacher_info, "student": student_info,
            "ratios": ratios, "retained_fraction_of_teacher": retained, "teacher_all_splits": teacher_metrics,
            "history": progress.history, "train": train_stats, "hardware": hardware_description()}
