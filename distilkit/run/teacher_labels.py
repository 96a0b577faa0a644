"""The teacher's side of a distillation run, done once before the student exists: the transfer set labelled
with the teacher's logits (:func:`label_transfer_set`) and the teacher scored on every eval split
(:func:`score_teacher`).

Logits are cached (keyed by teacher and data fingerprints); an ensemble caches each member under its own key and
combines the cached logits (:func:`distilkit.methods.distillation.ensemble.label_with_ensemble`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from accelerate import Accelerator

from distilkit.data.augment import augment_for_run
from distilkit.data.metrics import compute_metrics
from distilkit.data.tasks import TaskSpec
from distilkit.methods.distillation.ensemble import is_ensemble, label_with_ensemble
from distilkit.run.schema import Recipe


@dataclass
class TransferSet:
    """The rows the student learns from.

    Attributes:
        rows: ``id, text_a, text_b, label`` and, with the cache on, ``teacher_logits`` (the training target).
        augment_counts: What ``data.augment`` added (``None`` without it).
        labelling_seconds: Time spent computing (or reading) the teacher's train logits.
    """

    rows: list[dict]
    augment_counts: dict | None = None
    labelling_seconds: float = 0.0


@dataclass
class TeacherScores:
    """How good the teacher is on each eval split.

    Attributes:
        splits: ``{split: metrics}``; for an ensemble, of its own (``average``) prediction.
        members: For an ensemble, one entry per teacher: ``name``, ``weight`` and ``{split: metrics}``;
            empty for a single teacher.
    """

    splits: dict[str, dict] = field(default_factory=dict)
    members: list[dict] = field(default_factory=list)


def _batch_sizes(recipe: Recipe) -> list[int]:
    return [cfg.batch_size for cfg in recipe.teachers]  # one per teacher (label_with_ensemble)


def label_transfer_set(recipe: Recipe, teacher, train_ds, accelerator: Accelerator) -> TransferSet:
    """The train split, grown by ``data.augment`` (Tang et al.'s transfer set) when asked, with the teacher's
    logits on every row when the cache is on (without it the loop runs the teacher on each batch), and gold
    labels dropped under ``data.labels: none``."""
    cache_dir = recipe.cache.dir if recipe.cache.enabled else None
    augment_counts = None
    if recipe.data.augment is not None:
        train_ds, augment_counts = augment_for_run(train_ds, recipe.data.augment, teacher, cache_dir, accelerator)
    start = time.perf_counter()
    rows = list(train_ds)
    if recipe.cache.enabled:
        cached = label_with_ensemble(teacher, train_ds, cache_dir=cache_dir, batch_size=_batch_sizes(recipe),
                                     accelerator=accelerator, desc="teacher logits (train)")
        for row, logits in zip(rows, cached.aligned(train_ds["id"]).tolist()):
            row["teacher_logits"] = logits
    seconds = time.perf_counter() - start
    if recipe.data.labels == "none":
        for row in rows:
            row["label"] = None
    return TransferSet(rows, augment_counts, seconds)


def score_teacher(recipe: Recipe, task: TaskSpec, teacher, eval_sets: dict, accelerator: Accelerator) -> TeacherScores:
    """The teacher's metrics on every eval split (its logits cached like the train split's); an ensemble's
    own prediction and each member's."""
    cache_dir = recipe.cache.dir if recipe.cache.enabled else None
    scores = TeacherScores()
    if is_ensemble(teacher):
        scores.members = [{"name": cfg.model, "weight": weight}
                          for cfg, weight in zip(recipe.teachers, recipe.teacher_weights)]
    for split, ds in eval_sets.items():
        logits = label_with_ensemble(teacher, ds, cache_dir=cache_dir, batch_size=_batch_sizes(recipe),
                                     accelerator=accelerator, desc=f"teacher logits ({split})")
        if is_ensemble(teacher):
            scores.splits[split] = compute_metrics(task, logits.predictions(ds["id"]), ds["label"])
            for entry, member in zip(scores.members, logits.members):
                entry[split] = compute_metrics(task, member.aligned(ds["id"]), ds["label"])
        else:
            scores.splits[split] = compute_metrics(task, logits.aligned(ds["id"]), ds["label"])
    return scores
