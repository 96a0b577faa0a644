"""Named fault points: where the fault-injection suite kills a run to prove nothing is lost (issue 17).

Long stages call :func:`fault_point` at their boundaries and inside their loops. Normally it is one
dictionary lookup. With ``DISTILKIT_KILL_AT=<name>[:<n>]`` in the environment, the process sends itself
``SIGKILL`` at the n-th time (default 1st) it reaches ``<name>``: no ``finally`` block, no atexit handler,
nothing flushed, exactly what a power cut, an OOM kill or a preempted spot instance leaves. The suite
(``tests/test_faults.py``) then reruns the same command and requires the final weights and metrics of an
uninterrupted run.

Points (stage boundaries are ``*.done``): ``finetune.step``, ``finetune.done``, ``augment.row``,
``augment.done``, ``label.batch``, ``label.done``, ``train.step``, ``train.epoch``, ``quantize.done``,
``quantize.swap`` (between the two renames that swap the float and quantized models),
``deep_compression.encoded`` (the encoded model written, the float one not yet moved), ``measure.start``,
``pipeline.stage``, ``export.written``.
"""

from __future__ import annotations

import os
import signal

ENV = "DISTILKIT_KILL_AT"
POINTS = ("finetune.step", "finetune.done", "augment.row", "augment.done", "label.batch", "label.done",
          "train.step", "train.epoch", "quantize.done", "quantize.swap", "deep_compression.encoded",
          "measure.start", "pipeline.stage", "export.written")
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kill this process with SIGKILL if ``DISTILKIT_KILL_AT`` names this point (and hit count)."""
    target = os.environ.get(ENV)
    if not target:
        return
    point, _, count = target.partition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
