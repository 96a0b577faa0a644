"""scripts/bench_linear_attention.py's bookkeeping: a --variants run measures only those variants, resumes
finished cells, and carries the other rows over from the previous results (json, or the published section)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent

SECTION = """<!-- bench_linear_attention:begin -->
## Linear attention vs softmax (issue 6)

| method | 128 | 4096 (ms) |
| --- | ---: | ---: |
| softmax | 0.35 | 289.43 |
| elu | 0.47 (0.7×) | 7.88 (36.7×) |
| hedgehog | 3.10 (0.1×) | 20.44 (14.2×) |

Peak memory of one forward (resident-set growth of a fresh process, MB; ratio to softmax):

| method | 128 | 4096 |
| --- | ---: | ---: |
| softmax | 2.9 | 74.0 |
| elu | 4.5 (0.7×) | 45.0 (1.6×) |
| hedgehog | 4.6 (0.6×) | 56.5 (1.3×) |

SST-2 dev accuracy of the MiniLM teacher (softmax: 0.8555) with each variant swapped in:

| variant | swapped, no recovery | recovered | Δ vs softmax (pts) |
| --- | ---: | ---: | ---: |
| elu | 0.7718 | 0.7901 | -6.54 |
| hedgehog | 0.7867 | 0.8429 | -1.26 |

Target: met.
<!-- bench_linear_attention:end -->
"""


@pytest.fixture
def bench(tmp_path, monkeypatch, import_script):
    module = import_script("bench_linear_attention")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "benchmarks.md").write_text("# Benchmarks\n\n" + SECTION)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "docs" / "results" / "linear_attention.json")
    calls = []

    def fake_latency(method, lengths, rounds, block_size, star_window=1):
        calls.append(("latency", method))
        return {"ms": {str(n): n / 100 for n in lengths}, "softmax_ms": {str(n): n / 10 for n in lengths}}

    def fake_memory(method, n, block_size, star_window=1):
        calls.append(("memory", method, n))
        return {"mb": n / 1000}

    def fake_accuracy(args, teacher, method):
        calls.append(("accuracy", method, teacher))
        return {"teacher": 0.85, "swapped": 0.6, "recovered": 0.84, "epochs": args.recovery_epochs,
                "examples": args.recovery_examples}

    monkeypatch.setattr(module, "latency_cell", fake_latency)
    monkeypatch.setattr(module, "memory_cell", fake_memory)
    monkeypatch.setattr(module, "accuracy_cell", fake_accuracy)
    monkeypatch.setattr(module, "sst2_minilm_teacher", lambda data_dir, cache_dir: Path("/teacher"))
    return module, calls


def args_for(tmp_path, variants) -> SimpleNamespace:
    return SimpleNamespace(cache_dir=str(tmp_path / "cache"), quick=False, rounds=5, lengths=[128, 4096],
                           recovery_examples=4000, recovery_epochs=1, lr=5e-5, feature_lr=1e-2, attention_weight=1.0, block_size=8,
                           op_block_size=32, star_window=1, variants=variants, data_dir="glue")


def test_published_section_parses_into_cells(bench):
    module, _ = bench
    old = module.previous_results()
    assert old["latency"]["elu"] == {"ms": {"128": 0.47, "4096": 7.88}, "softmax_ms": {"128": 0.35, "4096": 289.43}}
    assert old["memory"][("hedgehog", 4096)] == 56.5 and old["memory"][("softmax", 128)] == 2.9
    assert old["accuracy"]["hedgehog"] == {"teacher": 0.8555, "swapped": 0.7867, "recovered": 0.8429,
                                           "epochs": 1, "examples": 4000}  # the budget every published row ran


def test_a_sinkhorn_only_run_measures_sinkhorn_and_keeps_the_other_rows(bench, tmp_path):
    module, calls = bench
    args = args_for(tmp_path, ["sinkhorn"])
    latency, memory, accuracy = module.measure(args)
    measured = {c[1] for c in calls}
    assert measured == {"softmax", "sinkhorn"}  # softmax only for memory; its latency is timed beside sinkhorn
    assert ("accuracy", "sinkhorn", "/teacher") in calls
    assert set(latency) == {"softmax", "elu", "hedgehog", "sinkhorn"}
    assert latency["elu"]["ms"]["4096"] == 7.88 and latency["softmax"]["ms"]["4096"] == 409.6
    assert accuracy["hedgehog"]["recovered"] == 0.8429 and accuracy["sinkhorn"]["recovered"] == 0.84
    assert memory[("elu", 4096)] == 45.0 and memory[("sinkhorn", 4096)] == 4.096
    # Each row's ratio is to the softmax of its own run: the carried elu row keeps the published 74.0 MB, the
    # sinkhorn row measured now gets the softmax measured now (a resident-set growth moves with the machine).
    assert memory[("elu", 4096, "base")] == 74.0 and memory[("sinkhorn", 4096, "base")] == 4.096
    # The results json written from this run holds every row; the next run reads it back unchanged.
    rows = module.result_rows(args, latency, memory, accuracy, both=["sinkhorn"])
    assert all(set(r) == {"task", "model", "metric", "value", "target", "met"} for r in rows)
    module.RESULTS.parent.mkdir(parents=True)
    module.RESULTS.write_text(json.dumps(rows))
    again = module.previous_results()
    assert again["latency"]["sinkhorn"] == latency["sinkhorn"] and again["latency"]["elu"] == latency["elu"]
    assert again["accuracy"] == accuracy
    assert again["memory"] == {k: v for k, v in memory.items()}
    # Finished cells resume: a second run computes nothing.
    calls.clear()
    assert module.measure(args) == (latency, memory, accuracy)
    assert calls == []


def test_a_full_run_measures_every_variant(bench, tmp_path):
    module, calls = bench
    latency, memory, accuracy = module.measure(args_for(tmp_path, list(module.VARIANTS)))
    assert {c[1] for c in calls if c[0] == "latency"} == set(module.VARIANTS)
    assert set(accuracy) == set(module.VARIANTS) and accuracy["elu"]["recovered"] == 0.84  # not the old 0.7901


def test_the_published_section_has_every_row(bench, tmp_path, monkeypatch, capsys):
    module, _ = bench
    monkeypatch.setattr(sys, "argv", ["bench_linear_attention.py", "--data-dir", str(ROOT / "tests" / "fixtures" / "glue"),
                                      "--cache-dir", str(tmp_path / "cache"), "--lengths", "128", "4096",
                                      "--variants", "sinkhorn", "--no-write"])
    module.main()
    out = capsys.readouterr().out
    assert "| sinkhorn | 1.28 (10.0×) | 40.96 (10.0×) |" in out  # fake timings: softmax 10x slower
    assert "| elu | 0.47 (0.7×) | 7.88 (36.7×) |" in out  # carried over from the published section
    assert "| hedgehog | 0.7867 | 0.8429 | -1.26 | 1 ep × 4,000 |" in out
    assert "| sinkhorn | 0.6000 | 0.8400 | -1.00 | 1 ep × 4,000 |" in out
    assert "rows carried over from the previous results: elu, hedgehog" in out
    assert "**met by hedgehog, sinkhorn**" in out
    assert not module.RESULTS.exists()  # --no-write


def test_star_only_has_to_be_faster_than_softmax(bench, tmp_path, monkeypatch):
    module, calls = bench

    def twice_as_fast(method, lengths, rounds, block_size, star_window=1):  # 2x: enough for star, not for elu
        calls.append(("latency", method, star_window))
        return {"ms": {str(n): n / 20 for n in lengths}, "softmax_ms": {str(n): n / 10 for n in lengths}}
    monkeypatch.setattr(module, "latency_cell", twice_as_fast)
    args = args_for(tmp_path, ["elu", "star"])
    args.star_window = 2
    latency, memory, accuracy = module.measure(args)
    assert ("latency", "star", 2) in calls and set(accuracy) >= {"elu", "star"}
    assert (tmp_path / "cache" / "linear_attention" / "op-r5-n128-4096" / "lat-star-w2.json").is_file()
    rows = module.result_rows(args, latency, memory, accuracy, both=["star"])
    speed = {r["model"]: r for r in rows if r["metric"] == "speedup@4096"}
    assert speed["star"]["target"] == 1.0 and speed["star"]["met"] is True
    assert speed["elu"]["target"] == 4.0 and speed["elu"]["met"] is False
    recovered = next(r for r in rows if r["model"] == "star" and r["metric"] == "accuracy_recovered")
    assert recovered["met"] is True and recovered["target"] == 0.83  # within 2 points of the teacher's 0.85


def test_star_recovery_recipe_is_valid_and_carries_the_window(bench, tmp_path):
    from distilkit.run.recipe_io import validate_recipe

    module, _ = bench
    args = args_for(tmp_path, ["star"])
    args.star_window, args.data_dir = 3, str(ROOT / "tests" / "fixtures" / "glue")
    tree = module.recovery_tree(args, "some/teacher", "star", 1, tmp_path / "out")
    assert tree["student"]["star_window"] == 3 and "feature_lr" not in tree["student"]  # nothing to train there
    recipe = validate_recipe(tree)  # no key the star variant would call meaningless
    assert recipe.student.variant == "star" and recipe.student.star_window == 3


def test_a_longer_recovery_has_its_own_cells_and_shows_its_budget(bench, tmp_path, monkeypatch, capsys):
    """``--recovery-epochs 3`` for star: new cells in a folder of their own (the one-epoch cells stay valid), the
    star row shows 3 epochs, the rows carried over keep the one epoch they ran, and the json records both."""
    module, calls = bench
    # Writes the results json (module.RESULTS is under tmp_path), never the repository's section or figure.
    monkeypatch.setattr(module, "FIGURE", tmp_path / "figure.png")
    monkeypatch.setattr(module, "publish", lambda begin, end, lines, args: print("\n".join(lines)))
    monkeypatch.setattr(sys, "argv", ["bench_linear_attention.py", "--data-dir", str(ROOT / "tests" / "fixtures" / "glue"),
                                      "--cache-dir", str(tmp_path / "cache"), "--lengths", "128", "4096",
                                      "--variants", "star", "--recovery-epochs", "3"])
    module.main()
    out = capsys.readouterr().out
    assert "| star | 0.6000 | 0.8400 | -1.00 | 3 ep × 4,000 |" in out
    assert "| hedgehog | 0.7867 | 0.8429 | -1.26 | 1 ep × 4,000 |" in out
    assert (tmp_path / "cache" / "linear_attention" / "acc-e4000-lr5e-05-flr0.01-aw1-ep3" / "acc-star-w1.json").is_file()
    rows = json.loads(module.RESULTS.read_text())
    epochs = {r["model"]: r["value"] for r in rows if r["metric"] == "recovery_epochs"}
    assert epochs["star"] == 3 and epochs["hedgehog"] == 1
    assert module.previous_results()["accuracy"]["star"]["epochs"] == 3  # read back for the next run
