"""Integration: the real pretrained MiniLM as teacher, real SST-2 sentences, the quickstart recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distilkit.run.distill import run
from distilkit.run.recipe_io import load_recipe

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quickstart_recipe_small(tmp_path, minilm):
    recipe = load_recipe(REPO / "recipes" / "quickstart" / "sst2-minilm-to-bilstm.yaml", [
        f"output_dir={tmp_path / 'run'}", f"cache.dir={tmp_path / 'cache'}",
        f"data.dir={REPO / 'tests' / 'fixtures' / 'glue'}",
        "data.max_train_examples=600", "data.max_eval_examples=300",
        "teacher.finetune.epochs=3", "teacher.finetune.lr=1e-4", "train.epochs=3", "measure.repeats=3",
        # Frozen embeddings keep the Adam state (and each epoch's checkpoint) small: this is a CI test.
        "student.freeze_embeddings=true",
    ])
    metrics = run(recipe)
    teacher, student = metrics["teacher"], metrics["student"]
    # A real encoder fine-tuned on 600 real sentences is far above chance on 300 dev sentences, and the
    # BiLSTM trained only on its logits (no gold labels) learns a real signal too.
    assert teacher["metrics"]["accuracy"] > 0.75
    assert student["metrics"]["accuracy"] > 0.6
    assert teacher["params"] == pytest.approx(22.7e6, rel=0.01)
    assert metrics["ratios"]["latency_b1_teacher_over_student"] > 1.0
    finetune_dirs = list((tmp_path / "cache" / "finetuned_teachers").iterdir())
    assert len(finetune_dirs) == 1
    report = json.loads((finetune_dirs[0] / "finetune.json").read_text())
    assert report["train_examples"] == 600 and report["eval_metrics"]["accuracy"] == teacher["metrics"]["accuracy"]

    # Second run: the fine-tuned teacher and both logit tables come from the cache.
    again = run(load_recipe(REPO / "recipes" / "quickstart" / "sst2-minilm-to-bilstm.yaml", [
        f"output_dir={tmp_path / 'run2'}", f"cache.dir={tmp_path / 'cache'}",
        f"data.dir={REPO / 'tests' / 'fixtures' / 'glue'}",
        "data.max_train_examples=600", "data.max_eval_examples=300",
        "teacher.finetune.epochs=3", "teacher.finetune.lr=1e-4", "train.epochs=1", "measure.latency=false",
        "student.freeze_embeddings=true",
    ]))
    assert again["teacher"]["metrics"] == teacher["metrics"]
    assert len(list((tmp_path / "cache" / "finetuned_teachers").iterdir())) == 1
    assert again["train"]["teacher_labelling_seconds"] < 5
