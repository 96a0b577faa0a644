"""``distilkit report``: points from runs and pipelines, counted operations, Pareto frontier, files."""

from __future__ import annotations

from pathlib import Path

from transformers import BertConfig, BertForSequenceClassification

from distilkit.cli import main as cli_main
from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
from distilkit.report.pareto import count_macs, pareto_front
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe


def test_pareto_front_keeps_only_undominated_points():
    points = [{"name": "a", "metric": 0.9, "params": 100}, {"name": "b", "metric": 0.8, "params": 10},
              {"name": "c", "metric": 0.7, "params": 50}, {"name": "d", "metric": 0.85, "params": 40},
              {"name": "e", "metric": None, "params": 1}]
    assert [p["name"] for p in pareto_front(points, "params")] == ["b", "d", "a"]


def test_count_macs_matches_the_architecture():
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)
    bert = BertForSequenceClassification(config)
    per_token = 2 * (4 * 32 * 32 + 2 * 32 * 64)  # q, k, v, o + two FFN projections per layer
    assert count_macs(bert, length=10) == 10 * per_token + 32 * 32 + 32 * 2  # + pooler + classifier (CLS only)
    lstm = BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=100, embedding_dim=8, hidden_size=4,
                                                        mlp_hidden_size=6, num_labels=2))
    assert count_macs(lstm, length=5) == 5 * 2 * 4 * 4 * (8 + 4) + 8 * 6 + 6 * 2


def test_report_files_and_table(tmp_path, tiny_teacher_dir, capsys):
    runs = []
    for name, student in (("bilstm", None), ("small", {"kind": "transformer", "max_length": 32, "num_layers": 1})):
        tree = tiny_recipe(tmp_path / name, tiny_teacher_dir, train={"epochs": 1})
        if student:
            tree["student"] = student
        run(validate_recipe(tree))
        runs.append(tree["output_dir"])
    out = tmp_path / "report"
    assert cli_main(["report", *runs, "--out", str(out), "--length", "16"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "pareto_params.png", "pareto_macs.png", "pareto_latency_b1.png"} <= names
    md = (out / "report.md").read_text()
    assert "| bilstm/run |" in md and "| small/run |" in md and "teacher (tiny-teacher0)" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith(("| run |", "| ---"))]
    assert len(rows) == 3
    assert all(Path(out / f).stat().st_size > 1000 for f in names if f.endswith(".png"))


def test_report_rejects_unfinished_dirs(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "neither metrics.json nor pipeline.json" in capsys.readouterr().err
