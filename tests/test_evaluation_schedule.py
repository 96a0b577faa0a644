"""``train.eval_every_epoch``: evaluate (and compete for the best model) after every epoch, or after the last only."""

from __future__ import annotations

from pathlib import Path

import pytest

from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe


@pytest.mark.parametrize("train, last", [({"epochs": 3}, 2), ({"epochs": 3, "max_steps": 5}, 1)],
                         ids=["epochs", "max_steps mid-epoch"])
def test_eval_every_epoch_false_evaluates_and_keeps_the_last_epoch_only(tmp_path, tiny_teacher_dir, train, last):
    # 64 examples in batches of 16: 4 steps an epoch, so max_steps 5 stops in the second epoch (epoch 1).
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={**train, "eval_every_epoch": False},
                       data={"max_train_examples": 64, "max_eval_examples": 32}, measure={"latency": False})
    metrics = run(validate_recipe(tree))
    assert [record["epoch"] for record in metrics["history"]] == [last]
    assert metrics["student"]["best_epoch"] == last
    assert (Path(tree["output_dir"]) / "model" / "model.safetensors").is_file()
