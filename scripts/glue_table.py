"""The GLUE table of ``bench_glue.py``: published numbers, verdicts and the Markdown section, all from the cells
in ``docs/results/glue.json`` (so the section can be regenerated without running anything)."""

from __future__ import annotations

import statistics
import time

from bench_common import command_line

TASKS = ["sst2", "cola", "mrpc", "stsb", "rte", "wnli", "qnli"]
PAIR_TASKS = {"mrpc", "stsb", "rte", "wnli", "qnli"}
#: GLUE's own metrics per task (the first one is the task's main metric in tasks/<task>.yaml).
GLUE_METRICS = {"sst2": ["accuracy"], "cola": ["matthews_correlation"], "mrpc": ["f1", "accuracy"],
                "stsb": ["pearson", "spearmanr"], "rte": ["accuracy"], "wnli": ["accuracy"], "qnli": ["accuracy"]}
SHORT = {"accuracy": "acc", "matthews_correlation": "MCC", "f1": "F1", "pearson": "Pearson", "spearmanr": "Spearman"}
#: Published dev-set numbers (x100), for the side-by-side columns.
PUBLISHED = {
    "MiniLM-L6-H384 (Wang et al. 2020)": {"sst2": 91.5, "mrpc": 88.9, "cola": 47.5, "rte": 68.8, "qnli": 90.5},
    "DistilBERT (Sanh et al. 2019)": {"sst2": 91.3, "mrpc": 87.5, "cola": 51.3, "stsb": 86.9, "rte": 59.9},
    "Tang et al. 2019 BiLSTM (from BERT-large 94.9)": {"sst2": 90.7},
}
TEACHER_SST2 = 0.895
BILSTM_SST2, BILSTM_PAIR = 0.96, 0.90
TRANSFORMER_MACRO, MAX_LAYER_FRACTION = 0.97, 0.5
TRANSFORMER_TASK = 0.90  # the small transformer's retention on every task (issue 24)
#: The model cells of a task, in table order: both students and the plain baseline (issue 24).
MODELS = ("bilstm", "small_transformer", "baseline")
SPEEDUP_TEACHER, SPEEDUP_BERT_LARGE = 15.0, 300.0  # the BiLSTM served from ONNX Runtime, batch 1 (issue 26)
SPEEDUP_TEACHER_PYTORCH = 10.0  # the BiLSTM in PyTorch, batch 1
INT8_METRIC_CHANGE = 0.003  # an int8 export's dev main metric against its PyTorch model
LATENCY_PROCESSES = 3  # a speed verdict holds in this many fresh-process repeats, or it is not met
#: ONNX Runtime rows of the latency cells (``glue_latency.py``), when a cell has them.
ORT_MODELS = ("bilstm_ort_fp32", "bilstm_ort_int8", "small_transformer_ort_fp32", "small_transformer_ort_int8")
TOTAL_HOURS = 4.0


def score(metrics: dict, task: str) -> float:
    """GLUE's score of a task: its metric, or the mean of its two (MRPC F1/accuracy, STS-B Pearson/Spearman)."""
    return statistics.mean(metrics[m] for m in GLUE_METRICS[task])


def _main(cell: dict, task: str, who: str) -> float:
    m = cell["metrics"][who]["metrics"]
    return m[GLUE_METRICS[task][0]]


def retention(cell: dict, task: str) -> float:
    """Student / teacher on the task's main metric."""
    return _main(cell, task, "student") / _main(cell, task, "teacher")


def _row(task, model, metric, value, target, met) -> dict:
    return {"task": task, "model": model, "metric": metric, "value": round(value, 4) if value is not None else None,
            "target": target, "met": met}


def teacher_cell(cells: dict, task: str) -> dict | None:
    """A model cell of the task to read the teacher's numbers from (every family fine-tunes the same teacher)."""
    return next((cells[f"{task}/{f}"] for f in MODELS if f"{task}/{f}" in cells), None)


def verdicts(cells: dict) -> list[dict]:
    """Every number and target verdict as plain rows (task, model, metric, value, target, met)."""
    rows, retained = [], []
    for task in TASKS:
        present = {f: cells[f"{task}/{f}"] for f in MODELS if f"{task}/{f}" in cells}
        if not present:
            continue
        teacher = teacher_cell(cells, task)["metrics"]["teacher"]["metrics"]
        for metric in GLUE_METRICS[task]:
            rows.append(_row(task, "teacher", metric, teacher[metric], None, None))
            rows += [_row(task, f, metric, c["metrics"]["student"]["metrics"][metric], None, None)
                     for f, c in present.items()]
        if task == "sst2":
            rows.append(_row(task, "teacher", "accuracy (target)", teacher["accuracy"], f">= {TEACHER_SST2}",
                             teacher["accuracy"] >= TEACHER_SST2))
        if "bilstm" in present:
            need = BILSTM_SST2 if task == "sst2" else BILSTM_PAIR if task in PAIR_TASKS else None
            kept = retention(present["bilstm"], task)
            rows.append(_row(task, "bilstm", "retention", kept, None if need is None else f">= {need}",
                             None if need is None else kept >= need))
        if "small_transformer" in present:
            retained.append(retention(present["small_transformer"], task))
            rows.append(_row(task, "small_transformer", "retention", retained[-1], f">= {TRANSFORMER_TASK}",
                             retained[-1] >= TRANSFORMER_TASK))
        if "baseline" in present:
            rows.append(_row(task, "baseline", "retention", retention(present["baseline"], task), None, None))
        if "small_transformer" in present and "baseline" in present:
            lead = lead_over_baseline(present["small_transformer"], present["baseline"], task)
            rows.append(_row(task, "small_transformer", "vs baseline", lead, "> 0", lead > 0))
        latency = cells.get(f"{task}/latency")
        if latency:
            rows += _latency_rows(task, latency)
    # Table-wide verdicts are given only once every task with training data has its cells.
    wanted = [t for t in TASKS if f"{t}/data" not in cells]
    if retained:
        done = [t for t in wanted if f"{t}/small_transformer" in cells]
        scope = "" if len(done) == len(wanted) else f" ({len(done)} of {len(wanted)} tasks so far: no verdict yet)"
        macro = statistics.mean(retained)
        rows.append(_row("macro", "small_transformer", "retention" + scope, macro, f">= {TRANSFORMER_MACRO}",
                         macro >= TRANSFORMER_MACRO if not scope else None))
    # The wall-time budget is issue 11's table (both students and latency); the baseline came later (issue 24).
    walls = [c["wall_seconds"] for k, c in cells.items() if "wall_seconds" in c and not k.endswith("/baseline")]
    if walls:
        done = [t for t in wanted if all(f"{t}/{f}" in cells for f in ("bilstm", "small_transformer", "latency"))]
        scope = "" if len(done) == len(wanted) else f" ({len(done)} of {len(wanted)} tasks so far: no verdict yet)"
        hours = sum(walls) / 3600
        rows.append(_row("all", "table", "wall hours (issue 11 cells)" + scope, hours, f"<= {TOTAL_HOURS}",
                         hours <= TOTAL_HOURS if not scope else None))
    return rows


def lead_over_baseline(small: dict, baseline: dict, task: str) -> float:
    """The small transformer's GLUE score minus the baseline's (above 0: distillation beat the plain baseline)."""
    return score(small["metrics"]["student"]["metrics"], task) - score(baseline["metrics"]["student"]["metrics"], task)


def _latency_rows(task: str, latency: dict) -> list[dict]:
    """Speed-ups of the BiLSTM (PyTorch and ORT) and the int8 exports' dev metric change, with their targets.

    A speed verdict is judged in every fresh process the cell timed (``processes``: one ``latency_ms`` per
    process; a cell from before that rule has one): missed when it fails in any of them, met when it holds in
    each of at least :data:`LATENCY_PROCESSES`, else pending (``None``); the value is the ratio in each process."""
    rows, ms = [], latency["latency_ms"]
    runs = latency.get("processes") or [ms]
    for name in ("bilstm", *(m for m in ORT_MODELS if m.startswith("bilstm") and m in ms)):
        served = name != "bilstm"
        for b in ("b1", "b32"):
            for ref in ("teacher", "bert_large"):
                target = (SPEEDUP_TEACHER if served else SPEEDUP_TEACHER_PYTORCH) if ref == "teacher" else \
                    (SPEEDUP_BERT_LARGE if served else None)
                target = target if b == "b1" else None
                ratios = [round(run[ref][b] / run[name][b], 2) for run in runs]
                met = None if target is None else False if min(ratios) < target else \
                    True if len(ratios) >= LATENCY_PROCESSES else None  # held, but in too few processes: pending
                rows.append({"task": task, "model": name, "metric": f"speed-up {b} vs {ref}"
                             + (" (PyTorch)" if served else "") + f", {len(ratios)} fresh process(es)",
                             "value": ratios, "target": None if target is None else f">= {target}", "met": met})
    for name, report in (latency.get("ort") or {}).items():
        if report.get("precision") != "int8":
            continue
        metric = GLUE_METRICS[task][0]
        change = abs(report["dev_metrics_onnx"][metric] - report["dev_metrics_pytorch"][metric])
        rows.append(_row(task, name, f"int8 dev {metric} change vs PyTorch", change, f"<= {INT8_METRIC_CHANGE}",
                         change <= INT8_METRIC_CHANGE + 1e-12))
    return rows


def _f(x, digits=4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def cell_threads(cells: dict) -> str:
    """The CPU threads the cells that recorded them ran with (``2``, or ``1, 2`` when they differ; ``?``: none
    did -- cells from before bench_glue recorded threads ran with 2, docs/benchmarks.md's earlier sections)."""
    found = sorted({str(c["threads"]) for c in cells.values() if "threads" in c})
    return ", ".join(found) or "?"


def render(results: dict, argv: list[str], previous: dict | None = None) -> list[str]:
    """The Markdown section of docs/benchmarks.md; ``previous``: the frozen earlier table
    (``docs/results/glue_previous.json``), shown beside the new scores."""
    cells = results["cells"]
    walls = sum(c.get("wall_seconds", 0) for c in cells.values())
    lines = ["## GLUE: every task with training data, MiniLM teacher, BiLSTM and small transformer (issue 11)", "",
             command_line(walls, argv=argv, note=" (sum of the cells' wall times; cells resume across runs)",
                          threads=cell_threads(cells)), "",
             "Each row runs the shipped `recipes/glue/<task>/bert-large-to-bilstm.yaml` and "
             "`bert-large-to-small-transformer.yaml` with `teacher.model=minilm teacher.finetune={}` (the task's "
             "`teacher_finetune` settings, full train split) and `data.dir`; nothing else changes. The baseline "
             "(issue 24) is the plain model a user tries first: the small-transformer recipe with "
             "`student.init_from_teacher_layers=bottom loss.alpha=1.0 data.labels=gold` (and `intermediate=null`, "
             "`data.augment=null`, `loss.mutual=null` where the recipe has them), i.e. the teacher truncated to the student's depth and fine-tuned on gold "
             "labels, same depth, epochs and lr. Dev-set scores x100; retention = model / teacher on the task's "
             "main metric.", "", *score_table(cells, (previous or {}).get("cells"))]
    lines += ["", "Published dev-set numbers, for comparison (not measured here):", "",
              "| model | " + " | ".join(TASKS) + " |", "| --- |" + " ---: |" * len(TASKS)]
    for name, values in PUBLISHED.items():
        lines.append(f"| {name} | " + " | ".join(_f(values.get(t), 1) for t in TASKS) + " |")
    lines += _speed_table(cells) + _ort_table(cells) + _time_table(cells)
    lines += ["", "Verdicts:", ""]
    for row in results.get("results", []):
        if row["target"] is not None:
            verdict = "pending" if row["met"] is None else "met" if row["met"] else "missed"
            lines.append(f"- {row['task']} {row['model']} {row['metric']}: {row['value']} (target {row['target']}): "
                         f"**{verdict}**")
    lines += ["", f"Numbers: `docs/results/glue.json` (regenerated {time.strftime('%Y-%m-%d')})."]
    return lines


def _show(metrics: dict | None, task: str) -> str:
    """The task's GLUE metrics x100, slash-separated ("—" for none)."""
    return "—" if metrics is None else "/".join(f"{100 * metrics[k]:.1f}" for k in GLUE_METRICS[task])


NAMES = {"teacher": "teacher", "bilstm": "BiLSTM", "small_transformer": "small transformer",
         "baseline": "baseline (teacher truncated, gold labels)"}


def score_table(cells: dict, previous: dict | None) -> list[str]:
    """Dev scores per task and model: the new score, the previous table's (``previous``: its cells, matched by
    ``<task>/<family>`` key; ``None``: no previous file), the change, retention, and on the baseline row the
    small transformer's lead over it; the code column is the commit a cell ran on. Missing cells: "not run"."""
    lines = ["| task | model | metric | score | previous | Δ | retained | small transformer's lead | code |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    # Per model: (score, teacher's score, previous score or None, whether the cell is the previous one) per task.
    totals: dict[str, list[tuple]] = {m: [] for m in ("teacher", *MODELS)}
    for task in TASKS:
        if f"{task}/data" in cells:
            lines.append(f"| {task} | — | — | no training data | | | | | |")
            continue
        source = teacher_cell(cells, task)
        teacher = None if source is None else source["metrics"]["teacher"]["metrics"]
        names = "/".join(SHORT[m] for m in GLUE_METRICS[task])
        old_source = teacher_cell(previous, task) if previous else None
        rows = [("teacher", teacher, old_source and old_source["metrics"]["teacher"]["metrics"], None, None)]
        for family in MODELS:
            cell, old = cells.get(f"{task}/{family}"), (previous or {}).get(f"{task}/{family}")
            rows.append((family, cell and cell["metrics"]["student"]["metrics"],
                         old and old["metrics"]["student"]["metrics"], cell, old))
        for family, new, old, cell, old_cell in rows:
            if new is None:
                lines.append(f"| {task} | {NAMES[family]} | {names} | not run | {_show(old, task)} | | | | |")
                continue
            kept = "—" if cell is None else f"{retention(cell, task):.3f}"
            lead = "—"
            if family == "baseline" and f"{task}/small_transformer" in cells:
                lead = f"{100 * lead_over_baseline(cells[f'{task}/small_transformer'], cell, task):+.1f}"
            lines.append(f"| {task} | {NAMES[family]} | {names} | {_show(new, task)} | {_show(old, task)} | "
                         f"{_change(new, old, task, same=_same(cell, old_cell))} | {kept} | "
                         f"{lead} | {_code(cell)} |")
            if teacher is not None:
                totals[family].append((score(new, task), score(teacher, task), old and score(old, task),
                                       _same(cell, old_cell)))
    for family, scores in totals.items():
        if not scores:
            lines.append(f"| **macro** | {NAMES[family]} | GLUE score | not run | | | | | |")
            continue
        mean, teacher_mean = (statistics.mean(x[i] for x in scores) for i in (0, 1))
        old = None if any(x[2] is None for x in scores) else statistics.mean(x[2] for x in scores)
        change = "—" if old is None else "same run" if all(x[3] for x in scores) else f"{100 * (mean - old):+.1f}"
        lines.append(f"| **macro** ({len(scores)} tasks) | {NAMES[family]} | GLUE score | {100 * mean:.1f} | "
                     f"{_f(None if old is None else 100 * old, 1)} | {change} | {mean / teacher_mean:.3f} | | |")
    return lines


def _same(cell: dict | None, old: dict | None) -> bool:
    """Whether a model cell is the previous table's own (kept, not rerun): the same metrics, timings included."""
    return cell is not None and old is not None and cell["metrics"] == old["metrics"]


def _change(new: dict, old: dict | None, task: str, same: bool) -> str:
    """The GLUE score's change from the previous table, in points; "same run" when the cell was kept."""
    if old is None:
        return "—"
    return "same run" if same else f"{100 * (score(new, task) - score(old, task)):+.1f}"


def _code(cell: dict | None) -> str:
    """The commit a cell ran on, or what is known of its code (a cell from before cells recorded commits)."""
    if cell is None:
        return ""
    code = f"`{cell['commit']}`" if cell.get("commit") else cell.get("code", "older than the sha rule")
    # bench_glue.py marks a cell whose recipe has changed since it ran (it reruns when its task is run).
    return f"{code}; **stale**: {cell['stale']}" if cell.get("stale") else code


def _ratio(x: float) -> str:
    return f"{x:.1f}×" if x >= 1 else f"{x:.3f}×"


def _speed_table(cells: dict) -> list[str]:
    lines = ["", "Size and CPU latency, timed interleaved on the task's dev sentences in fresh processes (three since "
             "issue 26; ms = their median, the speed verdicts hold in each). "
             "BERT-large is the architecture with random weights (latency does not depend on the values); its "
             "MB are its fp32 weights. `*_ort_*` rows are the students served from ONNX Runtime (`distilkit "
             "export`; transformer: ORT's transformer optimizer; int8: dynamic, `--fp32-fallback auto`), their MB "
             "the `model.onnx`; every ratio is against the teacher and BERT-large in PyTorch.", "",
             "| task | model | params | MB | b1 ms | b32 ms | b1 vs teacher | b32 vs teacher | b1 vs BERT-large | "
             "b32 vs BERT-large |", "| --- | --- |" + " ---: |" * 8]
    for task in TASKS:
        cell = cells.get(f"{task}/latency")
        if not cell:
            continue
        ms = cell["latency_ms"]
        for name in ("bert_large", "teacher", "small_transformer", "bilstm", *(m for m in ORT_MODELS if m in ms)):
            lines.append(f"| {task} | {name} | {cell['params'][name]:,} | {cell['size_mb'][name]:.1f} | "
                         f"{ms[name]['b1']:.2f} | {ms[name]['b32']:.1f} | "
                         + " | ".join(_ratio(ms[ref][b] / ms[name][b]) for ref in ("teacher", "bert_large")
                                      for b in ("b1", "b32")) + " |")
    stale = [f"{task} ({cells[f'{task}/latency']['stale']})" for task in TASKS
             if (cells.get(f"{task}/latency") or {}).get("stale")]
    if stale:  # timed models that have been retrained since: the rows above are theirs, not today's recipes'
        lines += ["", "**Stale latency cells** (they timed models that were retrained since, or ran in fewer than "
                  f"{LATENCY_PROCESSES} fresh processes; rerun with "
                  "`--families latency` on an idle machine): " + "; ".join(stale) + "."]
    return lines


def _ort_table(cells: dict) -> list[str]:
    """Dev metrics of the ORT exports against their PyTorch models (every dev sentence)."""
    lines = []
    for task in TASKS:
        cell = cells.get(f"{task}/latency") or {}
        for name, report in (cell.get("ort") or {}).items():
            metric = GLUE_METRICS[task][0]
            torch_value, ort_value = report["dev_metrics_pytorch"][metric], report["dev_metrics_onnx"][metric]
            fused = ", ".join(f"{k} {v}" for k, v in (report.get("fused") or {}).items()) or "—"
            kept = "—" if report.get("fp32_nodes") is None else str(len(report["fp32_nodes"]))
            lines.append(f"| {task} | {name} | {SHORT[metric]} | {100 * torch_value:.2f} | {100 * ort_value:.2f} | "
                         f"{100 * (ort_value - torch_value):+.2f} | {report['max_abs_logit_diff']:.1e} | {kept} | "
                         f"{fused} |")
    if not lines:
        return []
    return ["", "ONNX Runtime exports against their PyTorch models on every dev sentence (x100):", "",
            "| task | model | metric | PyTorch | ORT | change | max abs logit diff | fp32 nodes | fused |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |", *lines]


def _time_table(cells: dict) -> list[str]:
    lines = ["", "Wall time per stage (seconds) and the teacher's labelling throughput:", "",
             "| task | teacher fine-tune | transfer set built | labelled rows | labelling (ex/s) | BiLSTM training "
             "(ex/s) | transformer training (ex/s) | baseline training (ex/s) | cells total |",
             "| --- |" + " ---: |" * 8]
    for task in TASKS:
        bilstm, small = cells.get(f"{task}/bilstm"), cells.get(f"{task}/small_transformer")
        if bilstm is None or small is None:
            continue
        train, small_train = bilstm["metrics"]["train"], small["metrics"]["train"]
        augment = train.get("augment") or {}
        labelled = train["examples"]
        seconds = train["teacher_labelling_seconds"]
        total = sum(cells[f"{task}/{f}"].get("wall_seconds", 0) for f in (*MODELS, "latency") if f"{task}/{f}" in cells)
        base = (cells.get(f"{task}/baseline") or {}).get("metrics", {}).get("train")
        base = "not run" if base is None else f"{base['seconds']:.0f} ({base['examples_per_second']:.0f})"
        lines.append(f"| {task} | {bilstm['teacher_finetune'].get('seconds', '—')} | {augment.get('seconds', '—')} | "
                     f"{labelled:,} | {seconds:.0f} ({labelled / max(seconds, 1e-9):.0f}) | "
                     f"{train['seconds']:.0f} ({train['examples_per_second']:.0f}) | "
                     f"{small_train['seconds']:.0f} ({small_train['examples_per_second']:.0f}) | {base} | {total:.0f} |")
    return lines
