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

import torch

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
    # Quantized layers (distilkit.methods.quantization) keep their weights as integer buffers: count the weights they
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
