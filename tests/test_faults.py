"""Fault injection (issue 17): a run killed with SIGKILL at any stage boundary or inside any long stage, then
rerun with the same command, ends with the weights and metrics of a run that was never interrupted.

One tiny recipe passes through every stage -- teacher fine-tuning, Tang augmentation, labelling, training,
post-training quantization, measurement -- and one two-stage pipeline through a stage boundary. Each kill uses
a fresh cache, so the killed stage really runs. ``distilkit.core.faults`` names the points.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from distilkit.core.faults import ENV, POINTS

from .conftest import FIXTURES

REPO = Path(__file__).resolve().parent.parent
RECIPE_POINTS = [p for p in POINTS if p not in ("pipeline.stage", "export.written", "deep_compression.encoded")]


def recipe(tmp: Path, teacher: Path, name: str) -> Path:
    tree = {
        "task": "sst2", "output_dir": str(tmp / name / "run"),
        "data": {"dir": str(FIXTURES / "glue"), "max_train_examples": 24, "max_eval_examples": 16,
                 "labels": "none", "augment": {"n_iter": 2, "tagger": "tests.test_augment:ToyTagger"}},
        "teacher": {"model": str(teacher), "max_length": 16, "batch_size": 8,
                    "finetune": {"epochs": 1, "batch_size": 8, "max_length": 16}},
        "student": {"kind": "bilstm", "max_length": 16, "embedding_dim": 16, "init_embeddings_from_teacher": "pca",
                    "hidden_size": 8, "mlp_hidden_size": 8},
        "train": {"epochs": 2, "batch_size": 8, "lr": 5e-3},
        "quantize": {"linear": "int8", "embedding": "int8"},
        "cache": {"dir": str(tmp / name / "cache")}, "measure": {"latency": False},
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def pipeline(tmp: Path, teacher: Path, name: str) -> Path:
    tree = yaml.safe_load(recipe(tmp, teacher, name).read_text())
    tree.pop("student"), tree.pop("quantize")
    tree["data"].pop("augment"), tree["teacher"].pop("finetune")
    tree["output_dir"] = str(tmp / name / "pipe")
    tree["stages"] = [{"name": "small", "student": {"kind": "transformer", "num_layers": 1, "max_length": 16},
                       "loss": {"kind": "kl", "temperature": 2.0}},
                      {"name": "bilstm", "student": {"kind": "bilstm", "max_length": 16, "embedding_dim": 16,
                                                     "init_embeddings_from_teacher": "pca", "hidden_size": 8,
                                                     "mlp_hidden_size": 8}}]
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def distilkit(path: Path, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(ENV, None)
    if kill_at:
        env[ENV] = kill_at
    return subprocess.run([sys.executable, "-m", "distilkit", "run", str(path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def outcome(model_dir: Path) -> tuple[dict, dict]:
    """Final weights (every tensor) and the metrics that do not depend on the clock."""
    weights = {k: v.clone() for k, v in load_file(model_dir / "model.safetensors").items()}
    metrics = json.loads((model_dir / "metrics.json").read_text())
    kept = {"student": metrics["student"]["metrics"], "teacher": metrics["teacher"]["metrics"],
            "history": metrics["history"], "examples": metrics["train"]["examples"]}
    return weights, kept


def same(a: tuple[dict, dict], b: tuple[dict, dict]) -> bool:
    return a[1] == b[1] and a[0].keys() == b[0].keys() and all((a[0][k] == b[0][k]).all() for k in a[0])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_teacher_dir):
    tmp = tmp_path_factory.mktemp("faults")
    done = distilkit(recipe(tmp, tiny_teacher_dir, "reference"))
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp, outcome(tmp / "reference" / "run" / "model")


@pytest.mark.parametrize("point", RECIPE_POINTS)
def test_killed_run_reruns_to_the_uninterrupted_result(reference, tiny_teacher_dir, point):
    tmp, expected = reference
    kill_at = f"{point}:2" if point.endswith((".step", ".row", ".batch")) else point  # inside the loop
    path = recipe(tmp, tiny_teacher_dir, point)
    killed = distilkit(path, kill_at)
    assert killed.returncode == -signal.SIGKILL, f"{point} was never reached: {killed.stderr[-1500:]}"
    rerun = distilkit(path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert same(outcome(tmp / point / "run" / "model"), expected)
    leftovers = [p for p in (tmp / point).rglob(".*.tmp")]
    assert not leftovers, leftovers


def test_killed_pipeline_resumes_at_the_next_stage(tmp_path, tiny_teacher_dir):
    expected_run = distilkit(pipeline(tmp_path, tiny_teacher_dir, "whole"))
    assert expected_run.returncode == 0, expected_run.stderr[-2000:]
    expected = outcome(tmp_path / "whole" / "pipe" / "1-bilstm" / "model")
    path = pipeline(tmp_path, tiny_teacher_dir, "killed")
    assert distilkit(path, "pipeline.stage").returncode == -signal.SIGKILL
    assert (tmp_path / "killed" / "pipe" / "0-small" / "metrics.json").is_file()
    assert not (tmp_path / "killed" / "pipe" / "1-bilstm").exists()
    rerun = distilkit(path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert same(outcome(tmp_path / "killed" / "pipe" / "1-bilstm" / "model"), expected)
    assert json.loads((tmp_path / "killed" / "pipe" / "pipeline.json").read_text())["stages"][0]["resumed"]


def test_killed_export_leaves_nothing_and_reruns(tmp_path):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    saved = Path(__file__).resolve().parent / "fixtures" / "saved-0.1.0" / "bilstm"
    out = tmp_path / "onnx"
    argv = [sys.executable, "-m", "distilkit", "export", str(saved), "--onnx", str(out), "--task", "sst2",
            "--data-dir", str(FIXTURES / "glue"), "--max-examples", "16"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(argv, cwd=REPO, env={**env, ENV: "export.written"}, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists()  # the half-built folder is a hidden temporary, never OUT_DIR
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1500:]
    assert json.loads((out / "export.json").read_text())["max_abs_logit_diff"] < 1e-4
    assert not list(tmp_path.glob(".onnx.*"))  # the killed run's temporary was cleared

