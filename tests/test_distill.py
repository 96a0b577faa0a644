"""End-to-end distillation runs on tiny random teachers and the real GLUE fixture files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.cli import main as cli_main
from distilkit.models.bilstm import encode_bilstm
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .conftest import FIXTURES, make_tiny_teacher


def tiny_recipe(tmp_path: Path, teacher: Path, **sections) -> dict:
    tree = {
        "task": "sst2",
        "output_dir": str(tmp_path / "run"),
        "data": {"dir": str(FIXTURES / "glue"), "max_train_examples": 160, "max_eval_examples": 64},
        "teacher": {"model": str(teacher), "max_length": 32, "batch_size": 32},
        "student": {"kind": "bilstm", "max_length": 32, "hidden_size": 24, "mlp_hidden_size": 24},
        "train": {"epochs": 2, "batch_size": 16, "lr": 5e-3, "log_every": 1},
        "cache": {"dir": str(tmp_path / "cache")},
        "measure": {"batch_sizes": [1, 4], "repeats": 2},
    }
    for key, value in sections.items():
        tree[key] = {**tree.get(key, {}), **value} if isinstance(value, dict) else value
    if tree["measure"].get("latency") is False:  # latency off: its batch sizes and repeats would mean nothing
        tree["measure"] = {"latency": False}
    return tree


def train_losses(out: Path) -> list[float]:
    lines = (out / "logs" / "train_log.jsonl").read_text().splitlines()
    return [rec["train/loss"] for rec in map(json.loads, lines) if "train/loss" in rec]


def test_bilstm_end_to_end_outputs_and_cache(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir)
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    for name in ("metrics.json", "recipe.yaml", "model/config.json", "model/model.safetensors",
                 "model/metrics.json", "model/recipe.yaml", "model/tokenizer.json", "logs/train_log.jsonl"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert set(metrics["student"]["metrics"]) == {"accuracy"}
    assert metrics["student"]["params"] < metrics["teacher"]["params"] * 2
    assert set(metrics["student"]["latency_ms"]) == {"b1", "b4"}
    assert metrics["train"]["examples"] == 160 and len(metrics["history"]) == 2
    losses = train_losses(out)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, "the student did not learn the teacher's logits"

    # The saved student reloads with the Auto classes and reproduces the logits of the in-memory best.
    model = AutoModelForSequenceClassification.from_pretrained(out / "model", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    inputs = encode_bilstm(tokenizer, ["a gorgeous film", "dull"], None, 32)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (2, 2)

    # Two cache entries (train + validation); a second run is a pure cache hit and adds none.
    entries = sorted((tmp_path / "cache" / "teacher_logits").iterdir())
    assert len(entries) == 2
    tree["output_dir"] = str(tmp_path / "run2")
    run(validate_recipe(tree))
    assert sorted((tmp_path / "cache" / "teacher_logits").iterdir()) == entries
    # A different transfer set is a different entry.
    tree["data"]["max_train_examples"] = 100
    tree["output_dir"] = str(tmp_path / "run3")
    run(validate_recipe(tree))
    assert len(list((tmp_path / "cache" / "teacher_logits").iterdir())) == 3


def test_transformer_student_on_pair_task_with_kl_and_labels(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(
        tmp_path, tiny_teacher_dir, task="mrpc",
        data={"max_train_examples": 40, "max_eval_examples": 40},
        student={"kind": "transformer", "max_length": 48, "num_layers": 1, "init_from_teacher_layers": [1]},
        loss={"kind": "kl", "temperature": 2.0, "alpha": 0.5})
    tree["student"] = {"kind": "transformer", "max_length": 48, "num_layers": 1, "init_from_teacher_layers": [1]}
    metrics = run(validate_recipe(tree))
    assert set(metrics["student"]["metrics"]) == {"accuracy", "f1", "combined_score"}
    model = AutoModelForSequenceClassification.from_pretrained(Path(tree["output_dir"]) / "model")
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_hidden_layers == 1


def test_regression_stsb_with_bilstm(tmp_path, tiny_tokenizer_dir):
    teacher = make_tiny_teacher(tmp_path / "reg-teacher", tiny_tokenizer_dir, num_labels=1, problem_type="regression")
    tree = tiny_recipe(tmp_path, teacher, task="stsb", data={"max_train_examples": 40, "max_eval_examples": 40},
                       loss={"kind": "mse", "alpha": 0.3})
    metrics = run(validate_recipe(tree))
    assert {"pearson", "spearmanr", "combined_score"} <= set(metrics["student"]["metrics"])
    model = AutoModelForSequenceClassification.from_pretrained(Path(tree["output_dir"]) / "model")
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"


def test_label_free_training(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, data={"labels": "none"}, train={"epochs": 1})
    metrics = run(validate_recipe(tree))
    assert metrics["train"]["examples"] == 160


def test_online_teacher_when_cache_disabled(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, cache={"enabled": False}, train={"epochs": 1})
    run(validate_recipe(tree))
    assert not (tmp_path / "cache").exists()
    assert train_losses(Path(tree["output_dir"]))


def cli(capsys, *argv) -> tuple[int, str]:
    code = cli_main(list(argv))
    return code, capsys.readouterr().err


def write_recipe(tmp_path: Path, tree: dict) -> str:
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_cli_errors_name_file_and_key(tmp_path, tiny_teacher_dir, capsys):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir)
    path = write_recipe(tmp_path, tree)
    code, err = cli(capsys, "run", path, "--set", "train.epocs=1")
    assert code == 2 and "--set train.epocs=1: train.epocs: unknown key" in err

    code, err = cli(capsys, "run", path, "--set", f"data.dir={tmp_path / 'empty'}")
    assert code == 2 and "SST-2" in err and "train.tsv" in err

    code, err = cli(capsys, "run", path, "--set", "task=stsb")
    assert code == 2 and "predicts 2 labels but the task has 1" in err

    code, err = cli(capsys, "run", path, "--set", "teacher.model=my_missing_pkg.mod:Teacher")
    assert code == 2 and "teacher.model: plug-in 'my_missing_pkg.mod:Teacher': module 'my_missing_pkg.mod' cannot be " \
                         "found" in err  # by preflight, before anything loads

    code, err = cli(capsys, "run", path, "--set", "train.resume_from=latest")
    assert code == 2 and "no checkpoint" in err


def test_cli_missing_column_and_label_out_of_range(tmp_path, tiny_teacher_dir, capsys):
    data = tmp_path / "glue" / "SST-2"
    data.mkdir(parents=True)
    (data / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t7\n")
    (data / "dev.tsv").write_text("text\tlabel\ngood\t1\n")
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, data={"dir": str(tmp_path / "glue"), "max_train_examples": None})
    code, err = cli(capsys, "run", write_recipe(tmp_path, tree))
    assert code == 2 and "train.tsv" in err and "7" in err


def test_cli_validate_and_tasks(tmp_path, tiny_teacher_dir, capsys):
    path = write_recipe(tmp_path, tiny_recipe(tmp_path, tiny_teacher_dir))
    assert cli_main(["validate", path, "--set", "train.epochs=9"]) == 0
    assert "epochs: 9" in capsys.readouterr().out
    assert cli_main(["tasks"]) == 0
    listing = capsys.readouterr().out
    for name in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"):
        assert name in listing


@pytest.mark.parametrize("field", ["student", "teacher"])
def test_recipe_validation_happens_before_work(tmp_path, tiny_teacher_dir, capsys, field):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir)
    tree[field]["unexpected"] = 1
    code, err = cli(capsys, "run", write_recipe(tmp_path, tree))
    assert code == 2 and f"{field}.unexpected: unknown key" in err
    assert not Path(tree["output_dir"]).exists()
