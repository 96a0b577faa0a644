"""Pruning as a recipe: one-shot and iterative rounds, budgets, recovery distillation, quantized pruned models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.cli import main as cli_main
from distilkit.core.errors import RecipeError
from distilkit.core.measure import count_parameters
from distilkit.methods.quantization.layers import QuantLinear
from distilkit.run.distill import run
from distilkit.run.pipeline import run_recipe
from distilkit.run.recipe_io import validate_recipe

from .conftest import make_tiny_teacher
from .test_distill import tiny_recipe


@pytest.fixture(scope="module")
def wide_teacher(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A 3-layer, 4-head tiny BERT: room for uneven head counts and a layer drop."""
    return make_tiny_teacher(tmp_path_factory.mktemp("wide-teacher"), tiny_tokenizer_dir, num_layers=3,
                             num_heads=4)


def pruned_recipe(tmp_path, teacher, **student):
    tree = tiny_recipe(tmp_path, teacher, train={"epochs": 1})
    tree["student"] = {"kind": "pruned", "max_length": 32, "importance_examples": 64, **student}
    return tree


def logits_of(path: Path, texts=("a gorgeous film", "dull and tedious")):
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    enc = AutoTokenizer.from_pretrained(path)(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        return model, model(**enc).logits


def test_one_shot_heads_and_ffn_with_recovery(tmp_path, wide_teacher):
    tree = pruned_recipe(tmp_path, wide_teacher, heads=0.5, ffn=0.25)
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["model_type"] == "distilkit-pruned-bert"
    shapes = config["distilkit_pruning"]
    assert sum(shapes["heads"]) == 6 and min(shapes["heads"]) >= 1  # 12 heads -> 6, no layer emptied
    assert sum(shapes["intermediate_sizes"]) == 144  # 3 x 64 -> 75%
    model, _ = logits_of(out / "model")
    assert count_parameters(model) == metrics["student"]["params"] < metrics["teacher"]["params"]
    assert metrics["history"], "recovery distillation ran"


def test_iterative_rounds_drop_a_layer_then_prune_heads(tmp_path, wide_teacher):
    tree = pruned_recipe(tmp_path, wide_teacher, heads=0.5, layers=1, rounds=2)
    metrics = run_recipe(validate_recipe(tree))
    out = Path(tree["output_dir"])
    first = json.loads((out / "rounds" / "1" / "model" / "config.json").read_text())["distilkit_pruning"]
    final = json.loads((out / "model" / "config.json").read_text())["distilkit_pruning"]
    # Round 1 goes half way: round(0.5 x 1) = 0 layers dropped, 25% of 12 heads removed; round 2 reaches the
    # targets (one layer dropped, at least 6 of the teacher's 12 heads removed in all: the dropped layer takes
    # its heads with it, which may already pass the heads target when round 1 left it with more than 3).
    assert len(first["heads"]) == 3 and sum(first["heads"]) == 9
    assert len(final["heads"]) == 2 and sum(final["heads"]) <= 6 and min(final["heads"]) >= 1
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert (out / "recipe.yaml").is_file() and (out / "metrics.json").is_file()
    assert metrics["rounds"][0]["params"] > metrics["rounds"][1]["params"]
    assert metrics["student"] == json.loads((out / "rounds" / "2" / "metrics.json").read_text())["student"]
    # Every round is taught by the unpruned teacher and starts from the previous round's model.
    second = yaml.safe_load((out / "rounds" / "2" / "recipe.yaml").read_text())
    assert second["teacher"]["model"] == str(wide_teacher)
    assert second["student"]["start_from"] == str(out / "rounds" / "1" / "model")
    assert second["student"]["round_fraction"] == 1.0 and second["student"]["rounds"] == 1
    # Resume: a finished round is not re-run.
    stamp = (out / "rounds" / "1" / "metrics.json").stat().st_mtime_ns
    run_recipe(validate_recipe(tree))
    assert (out / "rounds" / "1" / "metrics.json").stat().st_mtime_ns == stamp
    # The rounds are pipeline stages: a finished round that ran other settings is named, not reused.
    tree["student"]["heads"] = 0.25
    with pytest.raises(RecipeError, match=r"round 1 of 2.*student.heads: 0.5 -> 0.25"):
        run_recipe(validate_recipe(tree))


def test_iterative_rounds_resume_a_crashed_round_from_its_checkpoint(tmp_path, wide_teacher):
    tree = pruned_recipe(tmp_path, wide_teacher, heads=0.5, rounds=2)
    tree["train"]["epochs"] = 2
    out = Path(tree["output_dir"])
    with pytest.raises(RecipeError, match="student.rounds: 2 rounds are 2 runs"):
        run(validate_recipe(tree))  # the one-run recipe program refuses: rounds are a pipeline
    assert not (out / "rounds").exists()
    run_recipe(validate_recipe(tree))
    reference = json.loads((out / "metrics.json").read_text())
    # Round 2 crashed after its first epoch: its metrics and model are gone, its epoch-1 checkpoint is left.
    second = out / "rounds" / "2"
    (second / "metrics.json").unlink()
    for step in sorted((second / "checkpoints").glob("step-*"))[1:]:
        shutil.rmtree(step)
    stamp = (out / "rounds" / "1" / "metrics.json").stat().st_mtime_ns
    resumed = run_recipe(validate_recipe(tree))
    assert (out / "rounds" / "1" / "metrics.json").stat().st_mtime_ns == stamp
    assert yaml.safe_load((second / "recipe.yaml").read_text())["train"]["resume_from"] == "latest"
    # Resuming continues exactly: the second epoch retrains from the checkpoint to the same student.
    assert resumed["student"]["metrics"] == reference["student"]["metrics"]
    assert resumed["history"] == reference["history"]


def test_parameter_budget_is_met(tmp_path, wide_teacher):
    teacher = AutoModelForSequenceClassification.from_pretrained(wide_teacher)
    budget = count_parameters(teacher) - 12_000
    metrics = run(validate_recipe(pruned_recipe(tmp_path, wide_teacher, max_params=budget)))
    assert budget - 2_000 < metrics["student"]["params"] <= budget


def test_pruned_then_quantized_reloads(tmp_path, wide_teacher):
    tree = pruned_recipe(tmp_path, wide_teacher, heads=0.25)
    tree["quantize"] = {"linear": "int8", "embedding": "int8"}
    metrics = run(validate_recipe(tree))
    model, logits = logits_of(Path(tree["output_dir"]) / "model")
    assert type(model).__name__ == "PrunedBertForSequenceClassification"
    assert isinstance(model.bert.encoder.layer[0].attention.self.query, QuantLinear)
    assert torch.isfinite(logits).all()
    assert metrics["student"]["size_on_disk_bytes"] < metrics["student"]["float_size_on_disk_bytes"] / 2


def test_one_shot_without_recovery_keeps_teacher_predictions_close(tmp_path, tiny_teacher_dir):
    tree = pruned_recipe(tmp_path, tiny_teacher_dir, ffn=0.1)
    tree["train"]["epochs"] = 0
    metrics = run(validate_recipe(tree))
    assert metrics["history"][0]["step"] == 0
    _, pruned = logits_of(Path(tree["output_dir"]) / "model")
    _, full = logits_of(tiny_teacher_dir)
    assert 0 < (pruned - full).abs().max() < full.abs().max()


@pytest.mark.parametrize("student,message", [
    ({"heads": 1.5}, "student.heads"),
    ({}, "nothing to prune"),
    ({"layers": 2}, "every one of the teacher's 2 layers"),
])
def test_bad_targets_are_clear_errors(tmp_path, tiny_teacher_dir, capsys, student, message):
    import yaml

    path = tmp_path / "prune.yaml"
    path.write_text(yaml.safe_dump(pruned_recipe(tmp_path, tiny_teacher_dir, **student)))
    assert cli_main(["run", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_unsupported_architecture_is_named(tmp_path, tiny_teacher_dir):
    from distilkit.core.errors import RecipeError
    from distilkit.methods.pruning.config import PrunedStudentConfig
    from distilkit.methods.pruning.student import build_pruned_student
    from distilkit.models.teachers import load_hf_teacher

    teacher = load_hf_teacher(str(tiny_teacher_dir), num_labels=2, problem_type="single_label_classification")
    teacher.model.config.model_type = "gpt2"
    spec = PrunedStudentConfig(kind="pruned", heads=0.5)
    with pytest.raises(RecipeError, match="bert, roberta, distilbert; got gpt2"):
        build_pruned_student(spec, teacher, None, [{"text_a": "x", "text_b": None, "label": 0}])
