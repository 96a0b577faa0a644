"""Raw rows of a task's files, and their normalization into ``id / text_a / text_b / label`` columns.

:mod:`distilkit.data.tasks` decides which file or Hub split to read and with which column layout; this module
reads the rows (CSV/TSV, JSON, JSON-lines, Parquet) and validates every label on the way, so a bad row is
reported with its file, line and column.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distilkit.core.errors import DataError

if TYPE_CHECKING:  # annotations only: tasks imports this module
    from distilkit.data.tasks import Column, TaskSpec

Rows = Iterator[tuple[str, Sequence[Any]]]
"""(location for messages, fields); the first item is the header when the layout has one."""


def read_delimited(path: Path, delimiter: str, quoting: int) -> Rows:
    """Rows of a CSV/TSV file with their ``file:line`` locations; blank lines skipped."""
    # GLUE fields can be long (MNLI parse trees); the csv module's default 128 KiB cap is arbitrary.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))
    # utf-8-sig drops the BOM that starts MRPC's header, which would otherwise be part of "Quality".
    with open(path, encoding="utf-8-sig", newline="") as handle:
        # QUOTE_NONE: GLUE text contains bare quote characters that must stay part of the sentence.
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        try:
            for row in reader:
                if row:  # a blank line (often a trailing one) is not an example
                    yield f"{path}:{reader.line_num}", row
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid UTF-8 after line {reader.line_num} ({exc.reason}); "
                            "re-encode the file as UTF-8") from None
        except csv.Error as exc:  # e.g. a NUL byte
            raise DataError(f"{path}:{reader.line_num + 1}: unreadable row: {exc}") from None


def read_records(path: Path, fmt: str) -> Rows:
    """A JSON, JSON-lines or Parquet file as a header (every key seen) followed by one row per record."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        records = pq.read_table(path).to_pylist()
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid UTF-8 at byte {exc.start} ({exc.reason}); re-encode the file "
                            "as UTF-8") from None
        try:
            records = json.loads(text) if text.lstrip().startswith("[") else [
                json.loads(line) for line in text.splitlines() if line.strip()
            ]
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON (line {exc.lineno}): {exc.msg}") from None
    keys = list(dict.fromkeys(k for record in records for k in record))
    yield str(path), keys
    for i, record in enumerate(records):
        yield f"{path}: record {i}", [record.get(k) for k in keys]


def normalize_rows(
    spec: TaskSpec, split: str, source: str, rows: Rows, layout, header: bool
) -> dict[str, list]:
    """Turn raw rows into the normalized columns, validating every label on the way."""
    unlabeled_ok = split.startswith("test")  # GLUE test files carry no labels
    label_values, skip_malformed = getattr(layout, "label_values", None), getattr(layout, "skip_malformed", False)
    names: list[str] | None = None
    if header:
        _, first = next(rows, ("", None))
        if first is None:
            raise DataError(f"{source}: file is empty (expected a header row)")
        names = [str(h) for h in first]

    def position(column: Column | None, key: str) -> int | None:
        if column is None or isinstance(column, int) and not isinstance(column, bool):
            return column
        if names is None:
            raise DataError(f"{source}: {key}={column!r} names a column but the file has no header; use a number")
        if column in names:
            return names.index(column)
        if key == "label" and unlabeled_ok:
            return None
        raise DataError(f"{source}: column {column!r} ({key}) not found; columns found: {names}")

    pos = {key: position(getattr(layout, key), key) for key in ("text_a", "text_b", "label", "index")}
    needed = max(p for p in pos.values() if p is not None) + 1
    label = names[pos["label"]] if names is not None and pos["label"] is not None else layout.label
    out: dict[str, list] = {"id": [], "text_a": [], "text_b": [], "label": []}
    seen: set[str] = set()
    skipped = 0
    for number, (where, row) in enumerate(rows):
        if len(row) < needed:
            if skip_malformed:
                skipped += 1
                continue
            raise DataError(f"{where}: malformed row: {len(row)} fields, expected at least {needed}")
        example_id = f"{split}-{row[pos['index']] if pos['index'] is not None else number}"
        if example_id in seen:
            raise DataError(f"{where}: duplicate example id '{example_id}'")
        seen.add(example_id)
        out["id"].append(example_id)
        out["text_a"].append(_text(row[pos["text_a"]]))
        out["text_b"].append(None if pos["text_b"] is None else _text(row[pos["text_b"]]))
        raw = None if pos["label"] is None else row[pos["label"]]
        out["label"].append(_parse_label(spec, raw, label_values, unlabeled_ok, f"{where}: column {label!r}"))
    if skipped:
        warnings.warn(f"{source}: skipped {skipped} malformed rows (fewer than {needed} fields)", stacklevel=4)
    if not out["id"]:
        # A header-only file used to train 0 steps and write a model with chance accuracy, as if all were well.
        raise DataError(f"{source}: split '{split}' has no examples" + (" (only a header row)" if header else ""))
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _parse_label(
    spec: TaskSpec, raw: Any, label_values: dict[str, int] | None, unlabeled_ok: bool, where: str
) -> int | float | None:
    """A raw label as a class id or float; ``None`` only where a split may be unlabeled."""
    if raw is None or raw == "":
        if unlabeled_ok:
            return None
        raise DataError(f"{where}: missing label")
    if spec.is_regression:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise DataError(f"{where}: label {raw!r} is not a number (regression task)") from None
        if not np.isfinite(value):
            raise DataError(f"{where}: label {raw!r} is not a finite number")
        return value
    labels = spec.label_names or []
    if label_values is not None:
        if str(raw) not in label_values:
            raise DataError(f"{where}: label {raw!r} is not one of {sorted(label_values)} (label_values)")
        return label_values[str(raw)]
    if isinstance(raw, str) and raw in labels:
        return labels.index(raw)
    try:
        class_id = int(raw) if not isinstance(raw, float) or raw.is_integer() else None
    except (TypeError, ValueError):
        class_id = None
    if class_id is None or not 0 <= class_id < len(labels):
        raise DataError(f"{where}: label {raw!r} is neither a class id in [0, {len(labels)}) nor one of {labels}")
    return class_id
