"""Atomic writes: a crash (or a kill -9) never leaves a half-written model, cache entry or metrics file.

Everything is first written to a temporary sibling on the same filesystem and then moved into place with
``os.replace``, which POSIX guarantees to be atomic. Readers therefore see either the old complete
artifact or the new complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: object) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block finishes without error.

    An existing ``path`` is moved aside first and deleted after the swap, so at every instant either the
    old or the new directory is complete at ``path`` (the window between the two renames holds neither,
    never a partial one).

    Example:
        >>> with atomic_directory("out/model") as tmp:   # doctest: +SKIP
        ...     model.save_pretrained(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_directory_atomic(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_dir)`` and atomically publish ``tmp_dir`` as ``path``."""
    with atomic_directory(path) as tmp:
        writer(tmp)
    return Path(path)


def remove_stale_temporaries(directory: str | Path) -> int:
    """Delete leftovers of interrupted atomic writes (``.name.*.tmp``) in ``directory``; return the count."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    count = 0
    for entry in directory.glob(".*.tmp"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        count += 1
    return count
