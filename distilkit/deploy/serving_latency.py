"""Latency of served students, PyTorch and ONNX Runtime side by side (``distilkit predict --time``, issue 26).

Every model is timed on the same sentences, interleaved round by round (a busy or warming machine slows every
model of a round alike, so the ratios hold better than absolute numbers), tokenization excluded: each batch is
encoded once and the same forward repeated. Batch 1 cycles through the first sentences (realistic lengths);
batch ``n`` is the first ``n`` sentences (repeated when there are fewer).
"""

from __future__ import annotations

import statistics
import time


def _batches(texts: list[str], pairs: list[str] | None, batch_size: int, count: int):
    if batch_size == 1:
        picks = [[i % len(texts)] for i in range(min(count, len(texts)))]
    else:
        picks = [[i % len(texts) for i in range(batch_size)]]
    for rows in picks:
        yield [texts[i] for i in rows], (None if pairs is None else [pairs[i] for i in rows])


def time_classifiers(classifiers: dict, texts: list[str], pairs: list[str] | None = None,
                     batch_sizes: tuple[int, ...] = (1, 32), rounds: int = 5, repeats: int = 5) -> dict:
    """Median ms per forward of each classifier (an :class:`~distilkit.deploy.ort_runner.OnnxClassifier` or
    :class:`~distilkit.deploy.ort_runner.TorchClassifier`), per batch size.

    Args:
        classifiers: name -> classifier (anything with ``runner(texts, pairs)``).
        texts: Sentences (at least one).
        pairs: Second sentences for pair models.
        batch_sizes: Batch sizes timed.
        rounds: Interleaved rounds (every model, every batch size, each round).
        repeats: Timed forwards per batch and round (after one untimed warm-up).

    Returns:
        ``{name: {"b1": ms, "b32": ms}}``.

    Raises:
        ValueError: no sentences.
    """
    if not texts:
        raise ValueError("time_classifiers needs at least one sentence")
    calls = {name: {b: [c.runner(t, p) for t, p in _batches(texts, pairs, b, repeats)] for b in batch_sizes}
             for name, c in classifiers.items()}
    for per_size in calls.values():
        for runs in per_size.values():
            for run in runs:
                run()  # warm-up: allocations, kernel choice
    samples: dict[str, dict[str, list[float]]] = {name: {f"b{b}": [] for b in batch_sizes} for name in calls}
    for _ in range(rounds):
        for name, per_size in calls.items():
            for b, runs in per_size.items():
                for i in range(repeats):
                    run = runs[i % len(runs)]
                    start = time.perf_counter()
                    run()
                    samples[name][f"b{b}"].append((time.perf_counter() - start) * 1000)
    return {name: {k: round(statistics.median(v), 3) for k, v in cells.items()} for name, cells in samples.items()}


def timing_table(latency: dict, reference: str) -> str:
    """A small text table: ms per batch size and the speed-up against ``reference``."""
    sizes = list(next(iter(latency.values())))
    rows = [["model", *(f"{k} ms" for k in sizes), *(f"{k} vs {reference}" for k in sizes)]]
    for name, cells in latency.items():
        rows.append([name, *(f"{cells[k]:.3f}" for k in sizes),
                     *(f"{latency[reference][k] / cells[k]:.2f}x" for k in sizes)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)
