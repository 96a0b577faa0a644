"""Atomic writes leave either the old or the new artifact, never a partial one."""

from __future__ import annotations

import json

import pytest

from distilkit.core.atomic import atomic_directory, remove_stale_temporaries, write_json_atomic


def test_atomic_directory_replaces_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("v1")
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("v2")
    assert (target / "weights.bin").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_directory_keeps_old_version_on_crash(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "weights.bin").write_text("half")
            raise RuntimeError("killed mid-save")
    assert (target / "weights.bin").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_crash_before_first_save_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(tmp_path / "model") as tmp:
            (tmp / "config.json").write_text("{}")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_json_atomic_and_stale_cleanup(tmp_path):
    write_json_atomic(tmp_path / "metrics.json", {"accuracy": 0.9})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"accuracy": 0.9}
    # What a SIGKILL during a save leaves behind: a hidden temporary, removed on the next start.
    (tmp_path / ".model.abc.tmp").mkdir()
    (tmp_path / ".metrics.json.x.tmp").write_text("partial")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
