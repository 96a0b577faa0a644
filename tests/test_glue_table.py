"""scripts/glue_table.py and bench_glue.py's bookkeeping (issue 24): the table renders from a partial glue.json,
the previous numbers and the baseline rows sit beside the new ones, the verdicts judge the small transformer
against its targets and the baseline, and stale cells are found (changed recipe, cells from before the sha rule,
latency cells whose model cells were rerun)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scripts(import_script):
    return import_script("glue_table"), import_script("bench_glue")


def model_cell(teacher: dict, student: dict, **extra) -> dict:
    """A recipe cell as bench_glue writes it, with the fields the table reads."""
    train = {"examples": 100, "teacher_labelling_seconds": 2.0, "augment": None, "seconds": 10.0,
             "examples_per_second": 30.0}
    return {"metrics": {"teacher": {"metrics": teacher, "name": "/cache/teacher"}, "student": {"metrics": student},
                        "train": train},
            "teacher_finetune": {"seconds": 5.0}, "wall_seconds": 60.0, **extra}


SST2_TEACHER = {"accuracy": 0.90}
MRPC_TEACHER = {"f1": 0.84, "accuracy": 0.78}


def partial_cells() -> dict:
    """SST-2 with both students, MRPC with the BiLSTM only, QNLI without training data; nothing else run."""
    return {"sst2/bilstm": model_cell(SST2_TEACHER, {"accuracy": 0.88}),
            "sst2/small_transformer": model_cell(SST2_TEACHER, {"accuracy": 0.873}),
            "mrpc/bilstm": model_cell(MRPC_TEACHER, {"f1": 0.80, "accuracy": 0.70}),
            "qnli/data": {"status": "no training data"}}


def rows_of(lines: list[str], task: str, model: str) -> list[str]:
    return [line for line in lines if line.startswith(f"| {task} | {model} |")]


def test_render_from_a_partial_table_without_baseline_or_previous(scripts):
    glue_table, _ = scripts
    cells = partial_cells()
    results = {"cells": cells, "results": glue_table.verdicts(cells)}
    lines = glue_table.render(results, argv=["--table-only"])
    assert rows_of(lines, "sst2", "small transformer")[0].split(" | ")[3:8] == ["87.3", "—", "—", "0.970", "—"]
    assert "not run" in rows_of(lines, "sst2", "baseline (teacher truncated, gold labels)")[0]
    assert "not run" in rows_of(lines, "mrpc", "small transformer")[0]
    assert rows_of(lines, "mrpc", "BiLSTM")[0].split(" | ")[3] == "80.0/70.0"
    cola = [line for line in lines if line.startswith("| cola |")]
    assert len(cola) == 4 and all("not run" in line for line in cola)  # teacher, both students, baseline
    assert "no training data" in next(line for line in lines if line.startswith("| qnli |"))
    assert any(line.startswith("| **macro** | baseline") and "not run" in line for line in lines)
    # Cells without a recorded commit are older than the sha rule; nothing is judged table-wide yet.
    assert rows_of(lines, "sst2", "BiLSTM")[0].rstrip(" |").endswith("older than the sha rule")
    # A cell bench_glue.py found stale (its recipe changed since) says so and why.
    cells["sst2/bilstm"]["stale"] = "student.pooling: (not written, the default) -> 'max'"
    row = rows_of(glue_table.render(results, argv=[]), "sst2", "BiLSTM")[0]
    assert row.rstrip(" |").endswith("older than the sha rule; **stale**: student.pooling: (not written, the "
                                      "default) -> 'max'")
    macro = next(r for r in results["results"] if r["task"] == "macro")
    assert macro["met"] is None and "1 of 6 tasks so far" in macro["metric"]


def test_previous_column_and_change(scripts):
    glue_table, _ = scripts
    previous = {"cells": copy.deepcopy(partial_cells())}
    cells = partial_cells()
    cells["sst2/small_transformer"] = model_cell(SST2_TEACHER, {"accuracy": 0.891}, commit="abc1234")
    lines = glue_table.render({"cells": cells, "results": []}, argv=[], previous=previous)
    small = rows_of(lines, "sst2", "small transformer")[0].split(" | ")
    assert small[3:6] == ["89.1", "87.3", "+1.8"] and small[8].startswith("`abc1234`")
    assert rows_of(lines, "sst2", "BiLSTM")[0].split(" | ")[5] == "same run"  # kept, not rerun
    macro = next(line for line in lines if line.startswith("| **macro** (1 tasks) | small transformer"))
    assert macro.split(" | ")[3:6] == ["89.1", "87.3", "+1.8"]


def test_verdicts_against_the_baseline(scripts):
    glue_table, _ = scripts
    cells = partial_cells()
    cells["sst2/baseline"] = model_cell(SST2_TEACHER, {"accuracy": 0.85})  # the small transformer leads
    cells["mrpc/small_transformer"] = model_cell(MRPC_TEACHER, {"f1": 0.83, "accuracy": 0.74})
    cells["mrpc/baseline"] = model_cell(MRPC_TEACHER, {"f1": 0.84, "accuracy": 0.76})  # it trails
    rows = {(r["task"], r["model"], r["metric"]): r for r in glue_table.verdicts(cells)}
    ahead, behind = rows["sst2", "small_transformer", "vs baseline"], rows["mrpc", "small_transformer", "vs baseline"]
    assert ahead["value"] == pytest.approx(0.023) and ahead["target"] == "> 0" and ahead["met"] is True
    assert behind["value"] == pytest.approx(-0.015) and behind["met"] is False
    retained = rows["mrpc", "small_transformer", "retention"]
    assert retained["value"] == pytest.approx(0.83 / 0.84, abs=1e-4) and retained["met"] is True
    assert retained["target"] == ">= 0.9"
    assert rows["sst2", "baseline", "retention"]["target"] is None
    lines = glue_table.render({"cells": cells, "results": []}, argv=[])
    assert rows_of(lines, "sst2", "baseline (teacher truncated, gold labels)")[0].split(" | ")[7] == "+2.3"
    assert rows_of(lines, "mrpc", "baseline (teacher truncated, gold labels)")[0].split(" | ")[7] == "-1.5"


def test_stale_cells(scripts, tmp_path):
    _, bench = scripts
    args = type("Args", (), {"data_dir": str(tmp_path / "glue"), "cache_dir": str(tmp_path / "cache")})()
    current = bench.current_recipes("sst2", args)
    sha, sets, _ = current["small_transformer"]
    stamp = {"commit": "abc1234", "finished": "2026-12-01T10:00:00"}
    fresh = {"recipe_sha256": sha, "overrides": sets, **stamp}
    cells = {"sst2/small_transformer": dict(fresh), "sst2/bilstm": {"metrics": {}},
             "sst2/baseline": {"recipe_sha256": current["baseline"][0], "overrides": current["baseline"][1], **stamp}}
    assert bench.stale_reason("sst2/small_transformer", cells, current) is None
    assert bench.stale_reason("sst2/baseline", cells, current) is None
    # Another machine's paths are not a change of what runs.
    elsewhere = [s.replace(str(tmp_path), "/elsewhere") for s in sets]
    assert bench.stale_reason("sst2/small_transformer", {"sst2/small_transformer": {**fresh, "overrides": elsewhere}},
                              current) is None
    changed = {"sst2/small_transformer": {**fresh, "recipe_sha256": "0" * 64}}
    reason = bench.stale_reason("sst2/small_transformer", changed, current)
    assert "bert-large-to-small-transformer.yaml changed: sha256 000000000000 recorded" in reason
    other = {"sst2/small_transformer": {**fresh, "overrides": [*sets, "train.epochs=9"]}}
    assert "overrides changed" in bench.stale_reason("sst2/small_transformer", other, current)
    # Before the sha rule: small transformer and baseline cells rerun, BiLSTM cells are kept and marked.
    assert "before the sha rule" in bench.stale_reason("sst2/small_transformer", {"sst2/small_transformer": {}}, current)
    assert "before the sha rule" in bench.stale_reason("sst2/baseline", {"sst2/baseline": {}}, current)
    assert bench.stale_reason("sst2/bilstm", cells, current) is None
    bench.mark_older(cells["sst2/bilstm"])
    assert cells["sst2/bilstm"]["code"] == "older than the sha rule"
    # Latency: stale once a model cell it timed was rerun after it.
    cells["sst2/latency"] = {"model_cells": {"bilstm": {"commit": None, "finished": None}, "small_transformer": stamp},
                             "processes": [{}, {}, {}]}
    assert bench.stale_reason("sst2/latency", cells, current) is None
    one = {**cells, "sst2/latency": {**cells["sst2/latency"], "processes": [{}]}}
    assert bench.stale_reason("sst2/latency", one, current) == ("timed in 1 fresh process(es); a speed verdict "
                                                                 "needs 3")
    cells["sst2/small_transformer"] = {**fresh, "finished": "2026-12-02T09:00:00"}
    assert "sst2/small_transformer was rerun" in bench.stale_reason("sst2/latency", cells, current)
    assert "was rerun" in bench.stale_reason("sst2/latency", {**cells, "sst2/latency": {}}, current)  # older cell
    assert bench.stale_reason("sst2/latency", {"sst2/bilstm": {}, "sst2/latency": {"processes": [{}] * 3}},
                              current) is None
    assert "1 fresh process" in bench.stale_reason("sst2/latency", {"sst2/bilstm": {}, "sst2/latency": {}}, current)


def test_stale_rule_keeps_a_cell_whose_resolved_recipe_is_unchanged(scripts, tmp_path):
    """A changed recipe file or override list that runs the same thing (wording, locations, an override the
    recipe now says itself) keeps the cell; a changed setting reruns it."""
    _, bench = scripts
    args = type("Args", (), {"data_dir": str(tmp_path / "glue"), "cache_dir": str(tmp_path / "cache")})()
    sha, sets = bench.recipe_sha256("stsb", "baseline"), bench.overrides("stsb", "baseline", args)
    resolved = bench.resolve("stsb", "baseline", sets)
    current = {"baseline": (sha, sets, resolved)}
    elsewhere = resolved.replace(str(tmp_path), "/elsewhere").replace("description: ", "description: Old words. ")
    kept = {"stsb/baseline": {"recipe_sha256": "0" * 64, "overrides": [*sets, "intermediate=null"],
                              "resolved_recipe": elsewhere}}
    assert bench.stale_reason("stsb/baseline", kept, current) is None
    changed = {"stsb/baseline": {**kept["stsb/baseline"],
                                 "resolved_recipe": elsewhere.replace("epochs: 5\n", "epochs: 4\n", 1)}}
    assert changed["stsb/baseline"]["resolved_recipe"] != elsewhere
    assert "changed: sha256 000000000000" in bench.stale_reason("stsb/baseline", changed, current)
    # Same file and overrides, but the task file's teacher_finetune (merged into the recipe) changed: rerun.
    same = {"stsb/baseline": {"recipe_sha256": sha, "overrides": sets, "resolved_recipe": resolved}}
    assert bench.stale_reason("stsb/baseline", same, current) is None
    tree = yaml.safe_load(resolved)
    epochs = tree["teacher"]["finetune"]["epochs"]
    tree["teacher"]["finetune"]["epochs"] = epochs + 1
    same["stsb/baseline"]["resolved_recipe"] = yaml.safe_dump(tree)
    assert bench.stale_reason("stsb/baseline", same, current) == (
        f"the resolved recipe changed (teacher.finetune.epochs: {epochs + 1!r} -> {epochs!r})")
    # Without a recorded resolved recipe the sha decides.
    bare = {"stsb/baseline": {"recipe_sha256": "0" * 64, "overrides": sets}}
    assert "changed" in bench.stale_reason("stsb/baseline", bare, current)
    # A cell from before the sha rule, dumped by code that had no student.pooling yet: it ran the default
    # (last states), so it is kept while the recipe says last and rerun once the recipe says max.
    lstm_sets = bench.overrides("stsb", "bilstm", args)
    older = bench.resolve("stsb", "bilstm", [*lstm_sets, "student.pooling=last"]).replace("  pooling: last\n", "")
    assert "pooling" not in older
    for pooling, kept in (("last", True), ("max", False)):
        now = bench.resolve("stsb", "bilstm", [*lstm_sets, f"student.pooling={pooling}"])
        reason = bench.stale_reason("stsb/bilstm", {"stsb/bilstm": {"resolved_recipe": older}},
                                    {"bilstm": ("0" * 64, lstm_sets, now)})
        assert (reason is None) == kept
    assert "student.pooling: (not written, the default) -> 'max'" in reason
    assert bench.differences(older, older.replace("epochs: 3", "epochs: 2")) == ["train.epochs: 3 -> 2"]


def test_baseline_overrides_make_the_truncated_teacher_on_gold_labels(scripts, tmp_path):
    _, bench = scripts
    from distilkit.run.recipe_io import load_recipe

    shipped = bench.recipe_path("stsb", "baseline")
    has_intermediate = yaml.safe_load((ROOT / shipped).read_text()).get("intermediate") is not None
    assert bench.baseline_overrides(shipped) == ["student.init_from_teacher_layers=bottom", "loss.alpha=1.0",
                                                 "data.labels=gold", *(["intermediate=null"] * has_intermediate)]
    recipe = load_recipe(ROOT / shipped, ["teacher.model=minilm", *bench.baseline_overrides(shipped)])
    assert recipe.student.init_from_teacher_layers == "bottom" and recipe.loss.alpha == 1.0
    assert recipe.loss.kind == "mse" and recipe.data.labels == "gold" and recipe.intermediate is None
    # STS-B: alpha 1 is the MSE on the gold scores alone, whatever the teacher says.
    from distilkit.methods.distillation.losses import distillation_loss

    student, teacher, gold = torch.tensor([[0.5], [2.0]]), torch.tensor([[9.0], [-9.0]]), torch.tensor([1.0, 3.0])
    loss, _ = distillation_loss(student, teacher, gold, kind="mse", alpha=1.0, problem_type="regression")
    torch.testing.assert_close(loss, F.mse_loss(student[:, 0], gold))
    # A recipe with an intermediate section: --set intermediate=null drops it.
    tree = yaml.safe_load((ROOT / shipped).read_text())
    tree["intermediate"] = {"hidden": {"layer_map": "uniform"}}
    path = tmp_path / "with-intermediate.yaml"
    path.write_text(yaml.safe_dump(tree))
    sets = bench.baseline_overrides(path)
    assert sets[-1] == "intermediate=null"
    assert load_recipe(path, []).intermediate is not None
    assert load_recipe(path, ["teacher.model=minilm", *sets]).intermediate is None


def test_bench_intermediate_table_judges_variants_against_logits_and_the_baseline(scripts, import_script):
    """scripts/bench_intermediate.py: Δ is against the same task's logits-only cell, the best distilled variant
    is named, and it is called behind when the gold-label baseline scores higher; what a cell ran is read from
    its resolved recipe; every variant's overrides resolve on the shipped recipe (so a renamed section fails
    here, not after an hour of training)."""
    _, glue = scripts
    bench = import_script("bench_intermediate")

    def cell(variant, student):
        sets = ["teacher.model=minilm", *(bench.VARIANTS[variant][0] or [])]
        return {"task": "stsb", "variant": variant, "student": student, "teacher": 0.80, "params": 10,
                "wall_seconds": 5.0, "date": "2026-12-03", "commit": "abc",
                "resolved_recipe": glue.resolve("stsb", bench.family(variant), sets)}

    results = {"cells": {"stsb/logits": cell("logits", 0.70), "stsb/logits-gold": cell("logits-gold", 0.74),
                         "stsb/two-stage": cell("two-stage", 0.69), "stsb/augmented": cell("augmented", 0.71),
                         "stsb/augmented-1ep": cell("augmented-1ep", 0.705)}}
    bench_glue_cells = {"stsb/baseline": cell("baseline", 0.72)}
    lines, rows = bench.render(results["cells"], [])

    def row(variant):
        return next(line for line in lines if line.startswith(f"| stsb | {variant} |"))

    assert "| 0.5 | uniform | 0.5 | — | — | 5 | 0.7400 |" in row("logits-gold")
    assert "| Tang ×4 | 1 | 0.7050 |" in row("augmented-1ep") and "| Tang ×4 | 5 | 0.7100 |" in row("augmented")
    assert "| +4.00 |" in row("logits-gold") and "| 0.925 |" in row("logits-gold")  # 0.74 - 0.70; 0.74 / 0.80
    assert "| uniform | 0 | — |" in row("logits")
    assert "| hidden, attention, value_relation, two stages | — |" in row("two-stage")
    assert "| bottom | 0.5 | — | Tang ×4 |" in row("augmented")
    assert {r["model"] for r in rows} >= {"small_transformer (logits)", "small_transformer (logits-gold)"}
    verdict = bench.best_lines({**results["cells"], **bench_glue_cells})
    assert verdict == ["- stsb: best distilled variant `logits-gold` (0.7400), +2.00 points against the baseline "
                       "(0.7200): ahead."]
    behind = bench.best_lines({"stsb/logits": cell("logits", 0.70), **bench_glue_cells})
    assert "**behind**" in behind[0]
    for variant in bench.VARIANTS:
        if bench.VARIANTS[variant][0] is not None:
            glue.resolve("stsb", bench.family(variant), ["teacher.model=minilm", *bench.VARIANTS[variant][0]])
    # BiLSTM variants: their own table (pooling, width, transfer set), Δ against the shipped BiLSTM, and the
    # 90% retention verdict.
    lstm_cells = {"stsb/bilstm-shipped": cell("bilstm-shipped", 0.69), "stsb/bilstm-last": cell("bilstm-last", 0.73)}
    lines, rows = bench.render(lstm_cells, [])
    assert "| 0.7300 | 0.8000 | 0.912 | +4.00 |" in row("bilstm-last") and "| last | 150 | Tang ×10 |" in row("bilstm-last")
    assert "| max | 150 |" in row("bilstm-shipped")  # the STS-B recipe max-pools
    assert bench.best_lines(lstm_cells) == ["- stsb: best BiLSTM variant `bilstm-last`, retention 0.912 (target >= "
                                            "0.9: met)."]


def test_stale_latency_cells_are_named_under_the_speed_table(scripts):
    glue_table, _ = scripts
    names = ("bert_large", "teacher", "small_transformer", "bilstm")
    cell = {"latency_ms": {n: {"b1": 1.0 + i, "b32": 10.0 + i} for i, n in enumerate(names)},
            "params": dict.fromkeys(names, 1), "size_mb": dict.fromkeys(names, 1.0)}
    assert not any("Stale latency" in line for line in glue_table._speed_table({"mrpc/latency": cell}))
    cell["stale"] = "mrpc/bilstm was rerun"
    lines = glue_table._speed_table({"mrpc/latency": cell})
    assert lines[-1].startswith("**Stale latency cells**") and "mrpc (mrpc/bilstm was rerun)" in lines[-1]


def test_table_only_leaves_the_recorded_cells_and_data_status_alone(scripts, tmp_path, monkeypatch):
    """``--table-only --no-write`` writes nothing, and a table-only call never records a data status from its
    --data-dir (a wrong one used to mark every task "no training data" in glue.json)."""
    _, bench = scripts
    results = tmp_path / "glue.json"
    results.write_text(json.dumps({"cells": partial_cells()}, indent=1, sort_keys=True) + "\n")
    before = results.read_bytes()
    monkeypatch.setattr(bench, "RESULTS", results)
    monkeypatch.setattr(bench, "PREVIOUS", tmp_path / "no-previous.json")
    published = []
    monkeypatch.setattr(bench, "publish", lambda begin, end, lines, args: published.append(args.no_write))
    wrong = str(tmp_path / "not-glue")
    monkeypatch.setattr("sys.argv", ["bench_glue.py", "--table-only", "--no-write", "--data-dir", wrong,
                                     "--cache-dir", str(tmp_path / "cache")])
    bench.main()
    assert results.read_bytes() == before
    monkeypatch.setattr("sys.argv", ["bench_glue.py", "--table-only", "--data-dir", wrong,
                                     "--cache-dir", str(tmp_path / "cache")])
    bench.main()
    cells = json.loads(results.read_text())["cells"]
    assert [k for k in cells if k.endswith("/data")] == ["qnli/data"]
    assert set(cells) == set(partial_cells())
    assert published == [True, False]


def test_latency_cell_of_three_processes_and_its_speed_verdicts(scripts):
    """The cell keeps each process's timings and their median; a speed verdict is met only when it holds in
    each of three fresh processes (one slow process, or a cell timed in one process, is not met)."""
    glue_table, bench = scripts

    def run(bilstm_b1: float) -> dict:
        ms = {"teacher": {"b1": 20.0, "b32": 400.0}, "bert_large": {"b1": 400.0, "b32": 12000.0},
              "bilstm": {"b1": bilstm_b1, "b32": 30.0}, "bilstm_ort_int8": {"b1": 0.5, "b32": 10.0}}
        return {"latency_ms": ms, "params": {"bilstm": 7}, "ort": {}}

    cell = bench.combine_latency_runs([run(1.0), run(3.0), run(1.5)])
    assert cell["latency_ms"]["bilstm"]["b1"] == 1.5 and cell["latency_ms"]["teacher"]["b1"] == 20.0
    assert [p["bilstm"]["b1"] for p in cell["processes"]] == [1.0, 3.0, 1.5] and cell["params"] == {"bilstm": 7}
    rows = {(r["model"], r["metric"]): r for r in glue_table._latency_rows("mrpc", cell)}
    pytorch = rows[("bilstm", "speed-up b1 vs teacher, 3 fresh process(es)")]
    assert pytorch["value"] == [20.0, 6.67, 13.33] and pytorch["target"] == ">= 10.0" and pytorch["met"] is False
    served = rows[("bilstm_ort_int8", "speed-up b1 vs teacher (PyTorch), 3 fresh process(es)")]
    assert served["value"] == [40.0] * 3 and served["met"] is True
    assert rows[("bilstm_ort_int8", "speed-up b1 vs bert_large (PyTorch), 3 fresh process(es)")]["met"] is True
    assert rows[("bilstm", "speed-up b32 vs teacher, 3 fresh process(es)")]["met"] is None  # no b32 target
    single = glue_table._latency_rows("mrpc", {"latency_ms": run(1.0)["latency_ms"]})
    served = next(r for r in single if r["model"] == "bilstm_ort_int8" and "b1 vs teacher" in r["metric"])
    assert served["value"] == [40.0] and served["met"] is None and "1 fresh process" in served["metric"]  # pending
    slow = next(r for r in single if r["model"] == "bilstm" and "b1 vs teacher" in r["metric"])
    assert slow["value"] == [20.0] and slow["met"] is None  # held in its one process: pending
    assert next(r for r in glue_table._latency_rows("mrpc", {"latency_ms": run(3.0)["latency_ms"]})
                if r["model"] == "bilstm" and "b1 vs teacher" in r["metric"])["met"] is False  # fails: missed


def test_latency_cell_exports_in_a_process_of_its_own_then_times_in_three(scripts, monkeypatch, tmp_path):
    """No timing process is the one that exported the ORT models: the exports run first, alone. Recorded
    cells whose models are not on this machine are named before anything runs."""
    import subprocess
    import types

    _, bench = scripts
    calls = []

    def fake_run(command, **kwargs):
        if not any(str(part).endswith("glue_latency.py") for part in command):  # git, for the cell's commit
            return subprocess.CompletedProcess(command, 0, stdout="abc1234\n", stderr="")
        calls.append(command)
        ms = {"teacher": {"b1": 10.0 + len(calls), "b32": 100.0}}
        return subprocess.CompletedProcess(command, 0, stdout="noise\n" + json.dumps(
            {"latency_ms": ms, "params": {}, "ort": {}}), stderr="")

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    cells = {f"mrpc/{family}": {"model_dir": str(tmp_path / family), "commit": "abc", "finished": "t"}
             for family in bench.TIMED}
    cells["mrpc/bilstm"]["metrics"] = {"teacher": {"name": str(tmp_path / "teacher")}}
    args = types.SimpleNamespace(data_dir="/data", rounds=3)
    for folder in ("teacher", *bench.TIMED[1:]):
        (tmp_path / folder).mkdir()
    with pytest.raises(SystemExit, match=f"not here \\({bench.TIMED[0]}: .*--redo mrpc"):  # a new machine
        bench.latency_cell("mrpc", args, {"cells": cells})
    assert calls == []
    (tmp_path / bench.TIMED[0]).mkdir()
    cell = bench.latency_cell("mrpc", args, {"cells": cells})
    assert ["--export-only" in c for c in calls] == [True, False, False, False]
    assert [p["teacher"]["b1"] for p in cell["processes"]] == [12.0, 13.0, 14.0]
    assert cell["latency_ms"]["teacher"]["b1"] == 13.0
