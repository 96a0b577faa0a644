"""Compression pipelines: stage chaining, resume in the middle, budget search, summary and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import distilkit.run.pipeline as pipeline_module
from distilkit.cli import main as cli_main
from distilkit.core.errors import RecipeError
from distilkit.run.pipeline import run_pipeline
from distilkit.run.pipeline_config import load_pipeline, stage_tree, validate_pipeline

from .conftest import FIXTURES


def pipeline_tree(tmp_path: Path, teacher: Path, stages: list[dict]) -> dict:
    return {
        "task": "sst2",
        "output_dir": str(tmp_path / "pipe"),
        "data": {"dir": str(FIXTURES / "glue"), "max_train_examples": 96, "max_eval_examples": 48},
        "teacher": {"model": str(teacher), "max_length": 32, "batch_size": 32},
        "train": {"epochs": 1, "batch_size": 16, "lr": 5e-3},
        "cache": {"dir": str(tmp_path / "cache")},
        "measure": {"batch_sizes": [1, 4], "repeats": 3},
        "stages": stages,
    }


THREE_STAGES = [
    {"name": "distil", "student": {"kind": "transformer", "num_layers": 2, "max_length": 32}},
    {"name": "shallow", "student": {"kind": "transformer", "num_layers": 1, "max_length": 32}},
    {"name": "bilstm", "student": {"kind": "bilstm", "max_length": 32, "hidden_size": 16, "mlp_hidden_size": 16},
     "train": {"epochs": 2}},
]


def test_three_stage_pipeline_chains_teachers_and_summarizes(tmp_path, tiny_teacher_dir):
    pipeline = validate_pipeline(pipeline_tree(tmp_path, tiny_teacher_dir, THREE_STAGES))
    summary = run_pipeline(pipeline)
    out = Path(pipeline.output_dir)
    dirs = [out / "0-distil", out / "1-shallow", out / "2-bilstm"]
    for d in dirs:
        assert (d / "model" / "config.json").is_file() and (d / "metrics.json").is_file()
    # Each later stage was taught by the previous stage's best model, and its recipe says so.
    for previous, current in zip(dirs, dirs[1:]):
        used = yaml.safe_load((current / "recipe.yaml").read_text())
        assert used["teacher"]["model"] == str(previous / "model")
        assert json.loads((current / "metrics.json").read_text())["teacher"]["name"] == str(previous / "model")
    assert yaml.safe_load((dirs[2] / "recipe.yaml").read_text())["train"]["epochs"] == 2  # stage override
    assert [s["name"] for s in summary["stages"]] == ["distil", "shallow", "bilstm"]
    # The summary compares every stage with the ORIGINAL teacher, with measured latencies.
    assert summary["teacher"]["name"] == str(tiny_teacher_dir)
    params = [s["params"] for s in summary["stages"]]
    assert params[0] > params[1], "one layer fewer must mean fewer parameters"
    for stage in summary["stages"]:
        assert set(stage["latency_ms"]) == {"b1", "b4"} and all(v > 0 for v in stage["latency_ms"].values())
        assert stage["params_ratio"] == pytest.approx(summary["teacher"]["params"] / stage["params"], rel=0.01)
    assert json.loads((out / "pipeline.json").read_text())["stages"][2]["student"] == "bilstm"
    assert "| bilstm | bilstm |" in (out / "pipeline.md").read_text()


def test_resume_in_the_middle_skips_finished_stages(tmp_path, tiny_teacher_dir, monkeypatch):
    stages = THREE_STAGES[:2]
    tree = pipeline_tree(tmp_path, tiny_teacher_dir, stages)
    real_run, calls = pipeline_module.run, []

    def crash_on_second_stage(recipe):
        calls.append(recipe.output_dir)
        if recipe.output_dir.endswith("1-shallow"):
            raise KeyboardInterrupt("simulated crash")
        return real_run(recipe)

    monkeypatch.setattr(pipeline_module, "run", crash_on_second_stage)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(validate_pipeline(tree))
    first = Path(tree["output_dir"]) / "0-distil" / "metrics.json"
    stamp = first.stat().st_mtime_ns
    assert not (Path(tree["output_dir"]) / "1-shallow" / "metrics.json").exists()

    monkeypatch.setattr(pipeline_module, "run", real_run)
    summary = run_pipeline(validate_pipeline(tree), measure_side_by_side=False)
    assert first.stat().st_mtime_ns == stamp, "the finished stage was run again"
    assert summary["stages"][0]["resumed"] == "skipped (already complete)"
    assert (Path(tree["output_dir"]) / "1-shallow" / "metrics.json").is_file()

    # A finished stage that ran with other settings is not passed off as this run's: the change is named.
    tree["data"]["max_train_examples"] = 64
    with pytest.raises(RecipeError, match=r"stages\[0\] \(distil\): .*0-distil holds a finished stage run with a "
                                          r"different recipe \(data.max_train_examples: 96 -> 64\)"):
        run_pipeline(validate_pipeline(tree), measure_side_by_side=False)
    assert first.stat().st_mtime_ns == stamp


def test_budget_search_trains_the_first_candidate_inside_the_budget(tmp_path, tiny_teacher_dir):
    stages = [{"name": "fit", "student": {"kind": "transformer", "max_length": 32},
               "search": {"key": "student.num_layers", "values": [2, 1], "max_params": 1}}]
    tree = pipeline_tree(tmp_path, tiny_teacher_dir, stages)
    with pytest.raises(RecipeError, match="no value of student.num_layers fits"):
        run_pipeline(validate_pipeline(tree))

    # Budget between the 1-layer and 2-layer students: the search must pick 1 layer, by measurement.
    from transformers import AutoModelForSequenceClassification
    teacher_params = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).num_parameters()
    tree["stages"][0]["search"]["max_params"] = teacher_params - 1
    tree["output_dir"] = str(tmp_path / "pipe2")
    summary = run_pipeline(validate_pipeline(tree), measure_side_by_side=False)
    search = summary["stages"][0]["search"]
    assert [c["value"] for c in search["candidates"]] == [2, 1]
    assert search["candidates"][0]["params"] == teacher_params and not search["candidates"][0]["fits"]
    assert search["chosen"] == 1 and summary["stages"][0]["params"] <= teacher_params - 1
    assert json.loads((Path(tree["output_dir"]) / "0-fit" / "search.json").read_text())["chosen"] == 1


def test_pipeline_errors_name_the_stage(tmp_path, tiny_teacher_dir):
    bad = pipeline_tree(tmp_path, tiny_teacher_dir, [{"name": "a", "student": {"kind": "bilstm", "hiden": 3}}])
    with pytest.raises(RecipeError, match=r"stages\[0\] \(a\).*student.hiden"):
        validate_pipeline(bad)
    after_bilstm = pipeline_tree(tmp_path, tiny_teacher_dir, [THREE_STAGES[2], THREE_STAGES[0]])
    with pytest.raises(RecipeError, match="can teach only a copy of itself"):
        validate_pipeline(after_bilstm)
    dupes = pipeline_tree(tmp_path, tiny_teacher_dir, [THREE_STAGES[0], THREE_STAGES[0]])
    with pytest.raises(RecipeError, match="unique"):
        validate_pipeline(dupes)


def test_cli_validate_and_set_on_stages(tmp_path, tiny_teacher_dir, capsys):
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(pipeline_tree(tmp_path, tiny_teacher_dir, THREE_STAGES[:2])))
    assert cli_main(["validate", str(path), "--set", "stages.1.student.num_layers=1", "train.epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["stages"][1]["train"]["epochs"] == 3
    pipeline = load_pipeline(path, ["stages.0.train.lr=0.01"])
    assert stage_tree(pipeline, 0)["train"]["lr"] == 0.01
    assert cli_main(["validate", str(path), "--set", "stages.7.train.lr=1"]) == 2
    assert "not an index" in capsys.readouterr().err


def test_distil_prune_quantize_pipeline_then_report_and_push_folder(tmp_path, tiny_teacher_dir):
    """Han et al.'s chain on tiny models: each stage smaller than the last, the result publishable."""
    from transformers import AutoModelForSequenceClassification

    stages = [
        {"name": "distil", "student": {"kind": "transformer", "num_layers": 2, "max_length": 32}},
        {"name": "prune", "student": {"kind": "pruned", "max_length": 32, "heads": 0.5, "ffn": 0.25,
                                      "importance_examples": 32}},
        {"name": "int8", "student": {"kind": "copy", "max_length": 32}, "train": {"epochs": 0},
         "quantize": {"linear": "int8", "embedding": "int8"}},
    ]
    summary = run_pipeline(validate_pipeline(pipeline_tree(tmp_path, tiny_teacher_dir, stages)))
    rows = {row["name"]: row for row in summary["stages"]}
    out = Path(summary["output_dir"])
    assert rows["prune"]["params"] < rows["distil"]["params"]
    assert rows["int8"]["params"] == rows["prune"]["params"]  # quantization keeps the weights, in 8 bits
    assert rows["int8"]["size_mb"] < rows["prune"]["size_mb"] / 2
    # The quantizing stage also reports its float model, measured side by side like every row.
    before = rows["int8 (before quantization)"]
    assert before["before_quantization"] and before["params"] == rows["int8"]["params"]
    assert before["size_mb"] > 2 * rows["int8"]["size_mb"] and before["model_dir"].endswith("model-float")
    assert set(before["latency_ms"]) == {"b1", "b4"}
    assert "| int8 (before quantization) | copy |" in (out / "pipeline.md").read_text()
    assert (out / "pipeline.yaml").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(out / "2-int8" / "model")
    assert type(model).__name__ == "PrunedBertForSequenceClassification"

    assert cli_main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert all(f"pipe/{name}" in md for name in ("distil", "prune", "int8"))
    assert cli_main(["push", str(out), "--repo", "me/pipe", "--dry-run", str(tmp_path / "up")]) == 0
    card = (tmp_path / "up" / "README.md").read_text()
    assert "## Pipeline stages" in card and "| int8 |" in card and "stages:" in card


def test_a_stage_with_pruning_rounds_runs_them_as_stages_of_its_own(tmp_path, tiny_teacher_dir):
    """A stage that prunes iteratively: its rounds run (and resume) like stages in ``<stage>/rounds/<r>``, each
    taught by the stage's teacher, and the next stage is taught by the last round's model."""
    stages = [
        {"name": "prune", "student": {"kind": "pruned", "max_length": 32, "heads": 0.5, "rounds": 2,
                                      "importance_examples": 32}},
        {"name": "int8", "student": {"kind": "copy", "max_length": 32}, "train": {"epochs": 0},
         "quantize": {"linear": "int8"}},
    ]
    tree = pipeline_tree(tmp_path, tiny_teacher_dir, stages)
    summary = run_pipeline(validate_pipeline(tree), measure_side_by_side=False)
    prune = Path(tree["output_dir"]) / "0-prune"
    metrics = json.loads((prune / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    heads = [sum(json.loads((prune / "rounds" / str(r) / "model" / "config.json").read_text())
                 ["distilkit_pruning"]["heads"]) for r in (1, 2)]
    assert heads == [3, 2]  # 4 heads: a quarter removed in round 1, half in all by round 2
    for r in (1, 2):
        assert yaml.safe_load((prune / "rounds" / str(r) / "recipe.yaml").read_text())["teacher"]["model"] == \
            str(tiny_teacher_dir)
    assert yaml.safe_load((Path(tree["output_dir"]) / "1-int8" / "recipe.yaml").read_text())["teacher"]["model"] \
        == str(prune / "model")
    rows = {row["name"]: row for row in summary["stages"]}
    assert rows["int8"]["params"] == rows["prune"]["params"] == metrics["student"]["params"]
    stamp = (prune / "rounds" / "1" / "metrics.json").stat().st_mtime_ns
    again = run_pipeline(validate_pipeline(tree), measure_side_by_side=False)
    resumed = {row["name"]: row.get("resumed") for row in again["stages"]}
    assert resumed["prune"] == resumed["int8"] == "skipped (already complete)"
    assert (prune / "rounds" / "1" / "metrics.json").stat().st_mtime_ns == stamp
