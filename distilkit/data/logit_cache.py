"""Teacher-logit cache: run the teacher once per (teacher, data) pair and reuse the logits.

Running BERT-large every step dominates distillation cost (Tang et al. 2019 label their whole transfer set
once). The cache is a ``datasets`` table with columns ``id`` and ``teacher_logits`` stored under
``<cache_dir>/teacher_logits/<teacher fp>-<data fp>``. The key changes whenever the teacher's weights,
tokenizer or truncation change (:meth:`Teacher.fingerprint`) or the examples change
(:func:`data_fingerprint`), so a stale entry is never read. Entries are written atomically with a checksum
manifest and verified on read; a damaged one is moved aside and recomputed (:mod:`distilkit.core.cache_entries`).

Rows are joined to the student's data **by id**, never by position.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, Features, Sequence, Value, load_from_disk
from tqdm.auto import tqdm

from distilkit.core.cache_entries import cache_entry, open_entry, quarantine
from distilkit.core.errors import DataError
from distilkit.core.faults import fault_point


def data_fingerprint(ds: Dataset) -> str:
    """Hash the ids and texts of ``ds`` independent of row order (a shuffled copy has the same key)."""
    rows = sorted(zip(ds["id"], ds["text_a"], ds["text_b"]), key=lambda row: row[0])
    digest = hashlib.blake2b(digest_size=16)
    for ident, text_a, text_b in rows:
        digest.update(f"{ident}\x1f{text_a}\x1f{'' if text_b is None else text_b}\x1e".encode())
    return digest.hexdigest()


@dataclass
class CachedLogits:
    """Teacher logits for a set of examples.

    Attributes:
        table: ``datasets`` table with ``id`` and ``teacher_logits``.
        hit: Whether the logits came from the cache (the teacher did not run).
        path: Where the entry lives (``None`` when caching is disabled).
    """

    table: Dataset
    hit: bool
    path: Path | None

    def aligned(self, ids: list[str]) -> np.ndarray:
        """Logits as a ``[len(ids), num_labels]`` array in the order of ``ids``."""
        index = {ident: row for row, ident in enumerate(self.table["id"])}
        missing = [ident for ident in ids if ident not in index]
        if missing:
            raise DataError(f"teacher logits are missing for {len(missing)} example ids, e.g. {missing[:3]}")
        logits = np.asarray(self.table["teacher_logits"], dtype=np.float32)
        return logits[[index[ident] for ident in ids]]


WHAT = "teacher-logit"


def _read_entry(path: Path, ds: Dataset) -> Dataset | None:
    """The cached table for ``ds`` if the entry is sound and holds exactly its ids; a damaged entry is moved
    aside (see :mod:`distilkit.core.cache_entries`) and ``None`` returned, so the teacher runs again."""
    if open_entry(path, WHAT) is None:
        return None
    try:
        table = load_from_disk(str(path))
    except Exception as exc:  # pyarrow, json or OS errors: whatever a truncated or zeroed file raises
        quarantine(path, f"unreadable: {type(exc).__name__}", WHAT)
        return None
    if len(table) != len(ds) or set(table["id"]) != set(ds["id"]):
        quarantine(path, f"holds {len(table)} rows whose ids differ from the {len(ds)} examples asked for", WHAT)
        return None
    return table


def _run_teacher(teacher, ds: Dataset, indices: list[int], batch_size: int, desc: str, show: bool) -> list:
    """Return ``[(id, logits), ...]`` for ``indices``, batching similar lengths together to cut padding."""
    text_a, text_b, ids = ds["text_a"], ds["text_b"], ds["id"]
    order = sorted(indices, key=lambda i: len(text_a[i]) + len(text_b[i] or ""), reverse=True)
    out = []
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not show, unit="batch"):
        chunk = order[start:start + batch_size]
        pairs = None if text_b[chunk[0]] is None else [text_b[i] for i in chunk]
        logits = teacher([text_a[i] for i in chunk], pairs)
        if logits.ndim == 1:
            logits = logits[:, None]
        out.extend(zip([ids[i] for i in chunk], logits.float().cpu().tolist()))
        fault_point("label.batch")
    return out


def label_with_teacher(teacher, ds: Dataset, *, cache_dir: str | Path | None, batch_size: int = 64,
                       accelerator=None, desc: str = "teacher logits") -> CachedLogits:
    """Get the teacher's logits for every example of ``ds``, from the cache when possible.

    With several processes each one labels its own shard and the shards are all-gathered, so the teacher
    pass scales with the number of GPUs. The main process writes the cache entry.

    Args:
        teacher: A :class:`distilkit.models.teachers.Teacher`.
        ds: Normalized examples (``id``, ``text_a``, ``text_b``).
        cache_dir: Cache root; ``None`` disables caching.
        batch_size: Teacher batch size.
        accelerator: An ``accelerate.Accelerator`` (``None``: single process).
        desc: Progress-bar label.

    Returns:
        A :class:`CachedLogits`.
    """
    path = None
    if cache_dir is not None:
        key = f"{teacher.fingerprint()[:20]}-{data_fingerprint(ds)[:20]}"
        path = Path(cache_dir).expanduser() / "teacher_logits" / key
        table = _read_entry(path, ds)
        if table is not None:
            return CachedLogits(table, hit=True, path=path)

    is_main = accelerator is None or accelerator.is_main_process
    indices = list(range(len(ds)))
    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        with accelerator.split_between_processes(indices) as shard:
            rows = _run_teacher(teacher, ds, list(shard), batch_size, desc, is_main)
        rows = gather_object(rows)
    else:
        rows = _run_teacher(teacher, ds, indices, batch_size, desc, is_main)

    # Restore the dataset's order (batches were length-sorted, shards interleaved).
    by_id = dict(rows)
    ids = ds["id"]
    num_labels = len(rows[0][1]) if rows else 1
    features = Features({"id": Value("string"), "teacher_logits": Sequence(Value("float32"), length=num_labels)})
    table = Dataset.from_dict({"id": ids, "teacher_logits": [by_id[i] for i in ids]}, features=features)

    if path is not None:
        if is_main:
            with cache_entry(path, WHAT) as tmp:
                table.save_to_disk(str(tmp))
                (tmp / "distilkit_meta.json").write_text(json.dumps({
                    "teacher": getattr(teacher, "name", type(teacher).__name__),
                    "teacher_fingerprint": teacher.fingerprint(),
                    "data_fingerprint": data_fingerprint(ds),
                    "num_examples": len(ds),
                }, indent=2))
            fault_point("label.done")
        if accelerator is not None:
            accelerator.wait_for_everyone()
    return CachedLogits(table, hit=False, path=path)


def logits_tensor(rows: list[list[float]]) -> torch.Tensor:
    """Stack per-example logits from a batch of dataset rows into a float tensor."""
    return torch.tensor(rows, dtype=torch.float32)
