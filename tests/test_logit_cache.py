"""Teacher-logit cache: hits skip the teacher, any teacher or data change misses, rows join by id."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from distilkit.core.errors import DataError
from distilkit.data.logit_cache import data_fingerprint, label_with_teacher
from distilkit.models.teachers import load_hf_teacher


class CountingTeacher:
    """Deterministic teacher that counts how many examples it was asked to label."""

    num_labels = 2

    def __init__(self, bias: float = 0.0):
        self.bias, self.calls = bias, 0

    def __call__(self, texts, text_pairs=None):
        self.calls += len(texts)
        lengths = torch.tensor([float(len(t)) for t in texts])
        return torch.stack([lengths, -lengths + self.bias], dim=1)

    def fingerprint(self):
        return f"counting-{self.bias}"


def table(texts, pairs=None, prefix="train"):
    return Dataset.from_dict({"id": [f"{prefix}-{i}" for i in range(len(texts))], "text_a": texts,
                              "text_b": pairs or [None] * len(texts), "label": [0] * len(texts)})


def test_hit_skips_teacher_and_returns_same_logits(tmp_path):
    ds = table(["a", "bb", "ccc", "dddd", "eeeee"])
    teacher = CountingTeacher()
    first = label_with_teacher(teacher, ds, cache_dir=tmp_path, batch_size=2)
    assert not first.hit and teacher.calls == 5
    second = label_with_teacher(teacher, ds, cache_dir=tmp_path, batch_size=2)
    assert second.hit and teacher.calls == 5, "a cache hit must not run the teacher"
    np.testing.assert_array_equal(first.aligned(ds["id"]), second.aligned(ds["id"]))
    np.testing.assert_array_equal(first.aligned(["train-2"]), [[3.0, -3.0]])


def test_teacher_change_invalidates(tmp_path):
    ds = table(["a", "bb", "ccc"])
    label_with_teacher(CountingTeacher(0.0), ds, cache_dir=tmp_path)
    other = CountingTeacher(1.0)
    result = label_with_teacher(other, ds, cache_dir=tmp_path)
    assert not result.hit and other.calls == 3
    np.testing.assert_array_equal(result.aligned(["train-0"]), [[1.0, 0.0]])


def test_data_change_invalidates_but_order_does_not(tmp_path):
    ds = table(["a", "bb", "ccc"])
    teacher = CountingTeacher()
    label_with_teacher(teacher, ds, cache_dir=tmp_path)
    changed = table(["a", "bb", "cccc"])
    assert data_fingerprint(changed) != data_fingerprint(ds)
    assert not label_with_teacher(teacher, changed, cache_dir=tmp_path).hit
    shuffled = ds.select([2, 0, 1])
    assert data_fingerprint(shuffled) == data_fingerprint(ds)
    result = label_with_teacher(teacher, shuffled, cache_dir=tmp_path)
    assert result.hit
    # Joined by id, not by position: the shuffled order gets its own rows back.
    np.testing.assert_array_equal(result.aligned(shuffled["id"])[:, 0], [3.0, 1.0, 2.0])


def test_pairs_are_passed_and_disabled_cache_always_runs(tmp_path):
    seen = []

    class PairTeacher(CountingTeacher):
        def __call__(self, texts, text_pairs=None):
            seen.append(text_pairs)
            return super().__call__(texts, text_pairs)

    ds = table(["a", "b"], ["x", "y"])
    teacher = PairTeacher()
    label_with_teacher(teacher, ds, cache_dir=None)
    label_with_teacher(teacher, ds, cache_dir=None)
    assert teacher.calls == 4 and all(p is not None for p in seen)
    assert not list(tmp_path.iterdir())


def test_missing_ids_are_an_error(tmp_path):
    result = label_with_teacher(CountingTeacher(), table(["a"]), cache_dir=tmp_path)
    with pytest.raises(DataError, match="missing for 1 example ids"):
        result.aligned(["dev-0"])


def test_real_hf_teacher_weight_change_invalidates(tmp_path, tiny_teacher_dir):
    ds = table(["a good movie", "a bad film", "fine"])
    teacher = load_hf_teacher(str(tiny_teacher_dir), num_labels=2, problem_type="single_label_classification")
    first = label_with_teacher(teacher, ds, cache_dir=tmp_path)
    again = load_hf_teacher(str(tiny_teacher_dir), num_labels=2, problem_type="single_label_classification")
    assert label_with_teacher(again, ds, cache_dir=tmp_path).hit
    with torch.no_grad():
        again.model.classifier.bias.add_(1e-3)
    again._fingerprint = None
    changed = label_with_teacher(again, ds, cache_dir=tmp_path)
    assert not changed.hit
    np.testing.assert_allclose(changed.aligned(ds["id"]), first.aligned(ds["id"]) + 1e-3, atol=1e-5)
    # A different truncation length changes the logits, so it is part of the key too.
    shorter = load_hf_teacher(str(tiny_teacher_dir), num_labels=2, problem_type="single_label_classification",
                              max_length=3)
    assert not label_with_teacher(shorter, ds, cache_dir=tmp_path).hit
