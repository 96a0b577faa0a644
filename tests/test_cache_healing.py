"""Self-healing caches (issue 17): every cache kind, truncated or zeroed, is reported in one warning line,
moved aside and recomputed to the same result; two writers of one entry never corrupt it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from distilkit.core.cache_entries import MANIFEST, cache_entry, entry_problem, open_entry
from distilkit.data.augment import build_transfer_set
from distilkit.data.config import AugmentConfig
from distilkit.data.logit_cache import label_with_teacher
from distilkit.data.tasks import example_features, load_task
from distilkit.models.config import FinetuneConfig, TeacherConfig
from distilkit.models.finetune import finetune_teacher

from .test_augment import ToyTagger
from .test_logit_cache import CountingTeacher


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


def biggest_file(folder: Path, suffix: str) -> Path:
    return max(folder.rglob(f"*{suffix}"), key=lambda p: p.stat().st_size)


def sst2_rows(n: int = 12) -> Dataset:
    words = ["good", "bad", "dull", "great", "slow", "fine"]
    rows = [{"id": f"train-{i}", "text_a": f"the film was {words[i % 6]} and {words[(i + 1) % 6]}", "text_b": None,
             "label": i % 2} for i in range(n)]
    return Dataset.from_list(rows, features=example_features(load_task("sst2")))


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "distilkit" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("damage", [truncate, zero, "legacy-truncate"])
def test_teacher_logits_heal(tmp_path, caplog, damage):
    ds, teacher = sst2_rows(), CountingTeacher()
    first = label_with_teacher(teacher, ds, cache_dir=tmp_path)
    entry = first.path
    if damage == "legacy-truncate":  # written before manifests: pyarrow itself finds the damage
        (entry / MANIFEST).unlink()
        truncate(biggest_file(entry, ".arrow"))
    else:
        damage(biggest_file(entry, ".arrow"))
    with caplog.at_level(logging.WARNING, logger="distilkit"):
        again = label_with_teacher(teacher, ds, cache_dir=tmp_path)
    assert not again.hit and teacher.calls == 2 * len(ds)
    assert (again.aligned(ds["id"]) == first.aligned(ds["id"])).all()
    lines = warnings_of(caplog)
    assert len(lines) == 1 and str(entry) in lines[0] and "recomputing" in lines[0]
    assert len(list(entry.parent.glob(f"{entry.name}.damaged-*"))) == 1
    assert entry_problem(entry) is None and label_with_teacher(teacher, ds, cache_dir=tmp_path).hit


def test_teacher_logits_for_other_ids_are_moved_aside(tmp_path, caplog):
    ds, teacher = sst2_rows(), CountingTeacher()
    entry = label_with_teacher(teacher, ds, cache_dir=tmp_path).path
    other = sst2_rows(6)
    shutil.rmtree(entry)
    with cache_entry(entry, "teacher-logit") as tmp:  # a sound entry under the wrong key (a key collision)
        label_with_teacher(teacher, other, cache_dir=None).table.save_to_disk(str(tmp))
    with caplog.at_level(logging.WARNING, logger="distilkit"):
        assert not label_with_teacher(teacher, ds, cache_dir=tmp_path).hit
    assert "ids differ" in warnings_of(caplog)[0]


@pytest.mark.parametrize("damage", [truncate, zero])
def test_transfer_sets_heal(tmp_path, caplog, damage):
    ds, cfg = sst2_rows(), AugmentConfig(n_iter=3)
    built, counts = build_transfer_set(ds, cfg, mask_token="[MASK]", cache_dir=tmp_path, tagger=ToyTagger(),
                                       show_progress=False)
    built = built.to_list()  # read before the damage: the table is memory-mapped from the entry
    entry = next((tmp_path / "transfer_sets").iterdir())
    damage(biggest_file(entry, ".arrow"))
    with caplog.at_level(logging.WARNING, logger="distilkit"):
        again, counts2 = build_transfer_set(ds, cfg, mask_token="[MASK]", cache_dir=tmp_path, tagger=ToyTagger(),
                                            show_progress=False)
    assert counts2["hit"] is False and again.to_list() == built
    assert len(warnings_of(caplog)) == 1 and entry_problem(entry) is None


def test_finetuned_teacher_heals(tmp_path, tiny_teacher_dir, caplog):
    cfg = TeacherConfig(model=str(tiny_teacher_dir), finetune=FinetuneConfig(epochs=1, batch_size=4, max_length=16))
    task, ds = load_task("sst2"), sst2_rows(8)
    first = finetune_teacher(cfg, task, ds, None, cache_dir=tmp_path)
    weights = {k: v.clone() for k, v in load_file(first / "model.safetensors").items()}  # not the mmapped file
    truncate(first / "model.safetensors")
    with caplog.at_level(logging.WARNING, logger="distilkit"):
        again = finetune_teacher(cfg, task, ds, None, cache_dir=tmp_path)
    assert again == first and len(warnings_of(caplog)) == 1
    healed = load_file(again / "model.safetensors")
    assert all(torch.equal(weights[k], healed[k]) for k in weights)  # the same seeded fine-tuning again


def test_two_writers_of_one_entry_first_wins(tmp_path):
    entry = tmp_path / "entry"
    with cache_entry(entry, "test") as slow:
        (slow / "value.txt").write_text("slow")
        with cache_entry(entry, "test") as fast:  # another process fills the same entry meanwhile
            (fast / "value.txt").write_text("fast")
    assert (entry / "value.txt").read_text() == "fast" and entry_problem(entry) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]  # the loser's copy is gone


def test_a_damaged_winner_is_replaced(tmp_path, caplog):
    entry = tmp_path / "entry"
    with cache_entry(entry, "test") as late:
        (late / "value.txt").write_text("late")
        with cache_entry(entry, "test") as early:
            (early / "value.txt").write_text("early")
        zero(entry / "value.txt")  # the first writer's entry is damaged before the second publishes
    assert (entry / "value.txt").read_text() == "late" and open_entry(entry, "test") == entry
