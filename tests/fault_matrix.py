"""The bad-input matrix of issue 17, shared by ``tests/test_bad_input.py`` and ``scripts/bench_reliability.py``.

Data cases: every GLUE fixture file with labels (6 tasks x train/dev) under 14 mutations a real file suffers --
missing columns, extra tabs, bad and out-of-range labels, empty files, header-only files, empty texts,
invalid UTF-8, a BOM in the middle, a header repeated mid-file (concatenated files), CRLF line ends, a
truncated last line, binary garbage. Each case must end in a named :class:`DataError` that names the file, or
in rows the students can encode and run (never a traceback, never a silent empty run).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distilkit.core.errors import DistilkitError
from distilkit.data.tasks import load_split, load_task

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "glue"
TASKS = ("sst2", "cola", "mrpc", "stsb", "rte", "wnli")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _drop_column(data: bytes, at: int) -> bytes:
    return b"\n".join(b"\t".join(f for i, f in enumerate(line.split(b"\t")) if i != at) if line else line
                      for line in _lines(data))


def _set_field(data: bytes, row: int, at: int, value: bytes) -> bytes:
    lines = _lines(data)
    fields = lines[row].split(b"\t")
    fields[at] = value
    lines[row] = b"\t".join(fields)
    return b"\n".join(lines)


def _insert_line(data: bytes, row: int, line: bytes) -> bytes:
    lines = _lines(data)
    return b"\n".join([*lines[:row], line, *lines[row:]])


def _truncate_last_line(data: bytes) -> bytes:
    body = data.rstrip(b"\n")
    last = body.rfind(b"\n") + 1
    return body[:last] + body[last:].split(b"\t")[0][:10]  # the last row cut inside its first field


@dataclass(frozen=True)
class Mutation:
    """``apply(file bytes, text column index, label column index, first data row)`` -> mutated bytes."""

    name: str
    apply: Callable[[bytes, int, int, int], bytes]


MUTATIONS = (
    Mutation("missing_text_column", lambda d, t, lab, r: _drop_column(d, t)),
    Mutation("missing_label_column", lambda d, t, lab, r: _drop_column(d, lab)),
    Mutation("extra_tab_in_text", lambda d, t, lab, r: _set_field(d, r + 1, t, b"a tab\there")),
    Mutation("bad_label", lambda d, t, lab, r: _set_field(d, r + 1, lab, b"banana")),
    Mutation("label_out_of_range", lambda d, t, lab, r: _set_field(d, r + 2, lab, b"7")),
    Mutation("empty_file", lambda d, t, lab, r: b""),
    Mutation("header_only", lambda d, t, lab, r: _lines(d)[0] + b"\n" if r else b""),
    Mutation("empty_text", lambda d, t, lab, r: _set_field(d, r, t, b"")),
    Mutation("invalid_utf8", lambda d, t, lab, r: _set_field(d, r + 1, t, b"caf\xe9 \xff\xfe")),
    Mutation("bom_in_middle", lambda d, t, lab, r: _set_field(d, r + 2, t, "\ufeffsecond file".encode())),
    Mutation("header_repeated_mid_file", lambda d, t, lab, r: _insert_line(d, r + 3, _lines(d)[0])),
    Mutation("crlf_line_ends", lambda d, t, lab, r: d.replace(b"\n", b"\r\n")),
    Mutation("truncated_last_line", lambda d, t, lab, r: _truncate_last_line(d)),
    Mutation("binary_garbage", lambda d, t, lab, r: bytes(range(256)) * 4),
)


@dataclass(frozen=True)
class DataCase:
    task: str
    split: str
    mutation: Mutation

    @property
    def name(self) -> str:
        return f"{self.task}/{self.split}/{self.mutation.name}"


def data_cases() -> list[DataCase]:
    return [DataCase(task, split, m) for task in TASKS for split in ("train", "validation") for m in MUTATIONS]


def prepare(case: DataCase, root: Path) -> Path:
    """A GLUE folder under ``root`` whose ``case.split`` file is mutated; returns the mutated file."""
    spec = load_task(case.task).tsv
    entry = spec.files[case.split]
    layout = spec.model_copy(update={k: getattr(entry, k) for k in entry.model_fields_set - {"file"}})
    folder = root / spec.folder
    shutil.copytree(FIXTURES / spec.folder, folder, dirs_exist_ok=True)
    path = folder / entry.file
    data = path.read_bytes()
    header = _lines(data)[0].decode("utf-8-sig").split("\t") if layout.header else []

    def index(column) -> int:
        return column if isinstance(column, int) else header.index(column)

    path.write_bytes(case.mutation.apply(data, index(layout.text_a), index(layout.label), int(layout.header)))
    return path


ALWAYS_FAIL = {"missing_text_column", "missing_label_column", "bad_label", "empty_file", "header_only",
               "invalid_utf8", "truncated_last_line", "binary_garbage"}


def must_fail(case: DataCase) -> bool:
    """Whether the mutation makes the file wrong (rather than odd but valid: empty texts, CRLF, a BOM inside a
    sentence, an STS-B score above 5, a repeated first row of a header-less file)."""
    name, spec = case.mutation.name, load_task(case.task)
    has_header = spec.tsv.files[case.split].model_dump(exclude_unset=True).get("header", spec.tsv.header)
    return (name in ALWAYS_FAIL or (name == "label_out_of_range" and not spec.is_regression)
            or (name == "header_repeated_mid_file" and has_header))


def check(case: DataCase, root: Path, exercise: Callable[[list[dict], object], None]) -> tuple[str, str]:
    """Run one case: ``("named_error", message)`` or ``("valid", "<n> rows")`` -- anything else raises."""
    path = prepare(case, root)
    task = load_task(case.task)
    try:
        rows = load_split(task, case.split, data_dir=root)
    except DistilkitError as exc:
        if str(path) not in str(exc):
            raise AssertionError(f"{case.name}: the error does not name {path}: {exc}") from None
        return "named_error", str(exc)
    exercise(list(rows), task)
    return "valid", f"{len(rows)} rows"
