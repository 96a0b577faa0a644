"""A JSON-lines experiment tracker for Accelerate: works offline, needs no extra package.

Accelerate's built-in trackers (TensorBoard, W&B, MLflow...) still work through ``train.log_with``; this one
is the default so every run leaves a machine-readable log in ``output_dir/logs/train_log.jsonl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from accelerate.tracking import GeneralTracker


class JSONLTracker(GeneralTracker):
    """Append one JSON object per ``accelerator.log`` call (with step and wall time)."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | Path):
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / "train_log.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self._write({"event": "config", "config": values})

    def log(self, values: dict, step: int | None = None, **kwargs):
        self._write({"step": step, **values})

    def _write(self, record: dict) -> None:
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")


def build_trackers(names: list[str], run_name: str, logging_dir: str | Path) -> list:
    """Turn ``train.log_with`` names into what ``Accelerator(log_with=...)`` accepts."""
    return [JSONLTracker(run_name, logging_dir) if name == "jsonl" else name for name in names]
