"""Damaged outputs (issue 17): every kind of file a run writes, truncated or zeroed, then read by every
command that reads it, ends in a named ``distilkit: error:`` or in success -- never a traceback."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from distilkit.cli import main as cli_main
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .conftest import FIXTURES
from .test_distill import tiny_recipe

GLUE = str(FIXTURES / "glue")
FILES = ("model/model.safetensors", "model/config.json", "model/tokenizer.json", "metrics.json",
         "checkpoint/model.safetensors")


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero(path: Path) -> None:
    path.write_bytes(bytes(path.stat().st_size))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_teacher_dir):
    tmp = tmp_path_factory.mktemp("damage")
    tree = tiny_recipe(tmp, tiny_teacher_dir, train={"epochs": 1}, measure={"latency": False})
    run(validate_recipe(tree))
    return Path(tree["output_dir"]), tiny_teacher_dir


def consumers(run_dir: Path, tmp: Path, teacher: Path) -> dict[str, list[str]]:
    checkpoint = next((run_dir / "checkpoints").glob("step-*"))
    as_teacher = tiny_recipe(tmp, run_dir / "model", train={"epochs": 0}, measure={"latency": False})
    as_teacher["output_dir"] = str(tmp / "student-of-damaged")
    (tmp / "teacher.yaml").write_text(yaml.safe_dump(as_teacher))
    resume = tiny_recipe(tmp, teacher, train={"epochs": 1, "resume_from": str(checkpoint)},
                         measure={"latency": False})
    resume["output_dir"] = str(run_dir)
    (tmp / "resume.yaml").write_text(yaml.safe_dump(resume))
    return {
        "report": ["report", str(run_dir), "--out", str(tmp / "report")],
        "push": ["push", str(run_dir), "--repo", "me/x", "--dry-run", str(tmp / "upload")],
        "export": ["export", str(run_dir / "model"), "--onnx", str(tmp / "onnx"), "--task", "sst2", "--data-dir",
                   GLUE, "--max-examples", "16"],
        "predict": ["predict", str(run_dir / "model"), "a fine film"],
        "quantize": ["quantize", str(run_dir / "model"), "--out", str(tmp / "int8")],
        "teacher": ["run", str(tmp / "teacher.yaml")],
        "resume": ["run", str(tmp / "resume.yaml")],
    }


CASES = [(f, d) for f in FILES for d in ("truncate", "zero")]


@pytest.mark.parametrize("file,damage", CASES, ids=[f"{f}-{d}" for f, d in CASES])
def test_damaged_output_gives_a_named_error_or_works(finished_run, tmp_path, capsys, file, damage):
    pytest.importorskip("onnxruntime", reason="the export extra is not installed")
    source, teacher = finished_run
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    target = next((run_dir / "checkpoints").glob("step-*")) / "model.safetensors" if file.startswith("checkpoint") \
        else run_dir / file
    (truncate if damage == "truncate" else zero)(target)
    outcomes = {}
    for name, argv in consumers(run_dir, tmp_path, teacher).items():
        code = cli_main(argv)
        err = capsys.readouterr().err
        assert code in (0, 2), (name, code)
        if code == 2:
            lines = [line for line in err.splitlines() if line.startswith("distilkit: error:")]
            assert lines and "Traceback" not in err, (name, err[-800:])
        outcomes[name] = code
    # Whatever reads the damaged file must notice it.
    readers = {"model/model.safetensors": {"export", "predict", "quantize", "teacher", "report"},
               "model/config.json": {"export", "predict", "quantize", "teacher", "report", "push"},
               "metrics.json": {"report", "push"}, "checkpoint/model.safetensors": {"resume"},
               "model/tokenizer.json": {"predict", "export"}}[file]
    assert all(outcomes[name] == 2 for name in readers), outcomes


def test_a_stage_with_damaged_metrics_runs_again(tmp_path, tiny_teacher_dir, caplog):
    from distilkit.run.pipeline import run_pipeline
    from distilkit.run.pipeline_config import validate_pipeline

    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 1}, measure={"latency": False})
    tree.pop("student")
    tree["output_dir"] = str(tmp_path / "pipe")
    tree["stages"] = [{"name": "small", "student": {"kind": "transformer", "num_layers": 1, "max_length": 32}},
                      {"name": "bilstm", "student": {"kind": "bilstm", "max_length": 32, "hidden_size": 8,
                                                     "mlp_hidden_size": 8}}]
    run_pipeline(validate_pipeline(tree), measure_side_by_side=False)
    metrics = tmp_path / "pipe" / "0-small" / "metrics.json"
    before = json.loads(metrics.read_text())
    zero(metrics)
    with caplog.at_level(logging.WARNING, logger="distilkit"):
        run_pipeline(validate_pipeline(tree), measure_side_by_side=False)
    assert any("0-small is not complete" in r.getMessage() for r in caplog.records)
    assert json.loads(metrics.read_text())["student"]["metrics"] == before["student"]["metrics"]
    assert list(metrics.parent.glob("metrics.json.damaged-*"))
