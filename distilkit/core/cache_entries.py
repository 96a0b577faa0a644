"""Self-healing cache entries: written atomically with a checksum manifest, verified on every read.

A truncated teacher-logit table (a crash or a full disk) used to make every later run with the same teacher
and data die inside pyarrow until someone deleted the cache by hand (issue 17). Every cache entry --
teacher logits, transfer sets, fine-tuned teachers -- now goes through this module:

* :func:`cache_entry` fills a temporary sibling folder, writes ``distilkit_manifest.json`` (size and BLAKE2b
  digest of every file) and publishes the folder with one ``rename``. A rename onto an existing folder fails,
  so when two processes fill the same entry at once the first one wins and the second discards its copy
  (after checking the winner is sound): neither can corrupt the other.
* :func:`open_entry` verifies the manifest before anything reads the entry. A damaged entry is reported in one
  warning line, moved aside to ``<name>.damaged-<time>`` (kept for inspection, never read again) and
  reported missing, so the caller recomputes it. Callers also call :func:`quarantine` when the entry passes
  the checksum but its content does not match what they asked for (row count, ids).

Entries written before manifests existed have none; they are read as before and checked by their callers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MANIFEST = "distilkit_manifest.json"
logger = logging.getLogger("distilkit")


def _digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> dict:
    """Record the size and digest of every file under ``folder`` in its manifest."""
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "blake2b": _digest(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def entry_problem(folder: Path) -> str | None:
    """What is wrong with a cache entry (``None``: sound, or written before manifests existed)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != expected["bytes"]:
            return f"{name} has {size} bytes, {expected['bytes']} were written"
        if _digest(path) != expected["blake2b"]:
            return f"{name} does not match its checksum"
    return None


def quarantine(folder: Path, problem: str, what: str) -> Path:
    """Move a damaged entry aside (one warning line) so it is recomputed; return where it went."""
    aside = folder.with_name(f"{folder.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        os.replace(folder, aside)
    except FileNotFoundError:  # another process moved it first
        return aside
    logger.warning(f"distilkit: warning: damaged {what} cache entry {folder} ({problem}); moved to {aside.name}, "
                   "recomputing")
    return aside


def open_entry(folder: str | Path, what: str) -> Path | None:
    """The entry at ``folder`` if it exists and is sound; ``None`` (after quarantining a damaged one) else."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    problem = entry_problem(folder)
    if problem is not None:
        quarantine(folder, problem, what)
        return None
    return folder


@contextmanager
def cache_entry(folder: str | Path, what: str) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes ``folder`` with a manifest (first writer wins).

    Example:
        >>> with cache_entry(cache / "teacher_logits" / key, "teacher-logit") as tmp:   # doctest: +SKIP
        ...     table.save_to_disk(str(tmp))
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        yield tmp
        write_manifest(tmp)
        for _ in range(3):
            try:
                os.rename(tmp, folder)  # fails if folder exists: never replaces another writer's entry
                return
            except OSError:
                if open_entry(folder, what) is not None:
                    return  # a sound entry is already there (another process filled it): keep that one
        raise OSError(f"could not publish the {what} cache entry {folder}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
