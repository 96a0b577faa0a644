"""Benchmark: what each part of the shipped small-transformer GLUE recipe buys (issue 24).

The shipped ``recipes/glue/<task>/bert-large-to-small-transformer.yaml`` trains a student with half the
teacher's layers on the teacher's logits *and* its inside (``intermediate:``: hidden states of uniformly
mapped layers, TinyBERT, Jiao et al. 2020 eq. 8; the last layers' attention distributions and value
relations, MiniLM, Wang et al. 2020 eq. 6-9). Each cell here is that recipe with one part changed, run as a
user runs it (a fresh ``distilkit run`` process) with bench_glue.py's overrides (the offline all-MiniLM-L6-v2
fine-tuned on the task's train split replaces the Hub BERT-large teacher; GLUE TSVs; the benchmark cache), so
the teacher and its cached logits are the ones bench_glue.py's cells use. The recipe as shipped is
bench_glue.py's ``small_transformer`` cell (``docs/results/glue.json``), shown beside these, not run twice:

* ``logits``        -- the same depth, logits only (no ``intermediate:``);
* ``quarter-depth`` -- the previous recipe: a quarter of the teacher's depth, logits only;
* ``two-stage``     -- TinyBERT's schedule: the first half of the steps on the intermediate terms alone;
* ``hidden-only``   -- the hidden-state term without MiniLM's attention and value-relation terms;
* ``logits-gold``   -- logits only, mixed half and half with the gold labels (``loss.alpha: 0.5``; the STS-B
  recipe learns from the teacher alone, and its plain gold-label baseline beat the distilled student).
* ``bottom``        -- logits only from the baseline's starting point: the teacher's bottom layers instead of
  evenly spaced ones (``init_from_teacher_layers: bottom``).
* ``bottom-gold``   -- the baseline plus the teacher: bottom layers, half logits and half gold labels;
* ``augmented``     -- logits only on Tang et al.'s augmented transfer set (``data.augment``, 4 teacher-labelled
  samples per example; TinyBERT's students train on such a set too): where the teacher's logits can add what the
  gold labels cannot.

Every finished cell is written at once to ``docs/results/intermediate.json`` (with the git commit it ran on
and the resolved recipe), and a rerun skips it, so the sweep resumes across sessions and machines; a cell whose
overrides changed is rerun. The docs section and the ``results`` rows (task, model, metric, value, target, met)
are regenerated from the JSON.

    python scripts/bench_intermediate.py --data-dir ../shared/glue --tasks stsb mrpc --variants logits shipped
    python scripts/bench_intermediate.py --table-only
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench_common import ROOT, bench_parser, publish
from bench_glue import load_results, output_dir, overrides, recipe_path, run_recipe
from glue_table import score

from distilkit.core.atomic import write_text_atomic

RESULTS = ROOT / "docs" / "results" / "intermediate.json"
BEGIN, END = "<!-- bench_intermediate:begin -->", "<!-- bench_intermediate:end -->"
#: Each variant: what it changes in the shipped recipe (``--set`` overrides) and what the table calls it.
VARIANTS = {
    "shipped": (None, "as shipped: half depth, logits + hidden + attention + value relation (bench_glue.py)"),
    "baseline": (None, "baseline: teacher truncated to half depth, gold labels only (bench_glue.py)"),
    "logits": (["intermediate=null"], "half depth, logits only"),
    "quarter-depth": (["intermediate=null", "student.num_layers=0.25"], "quarter depth, logits only (previous recipe)"),
    "two-stage": (["intermediate.stages={intermediate_fraction: 0.5}"],
                  "as shipped, TinyBERT's two stages (first half of the steps: inside only)"),
    "hidden-only": (["intermediate.attention=null", "intermediate.value_relation=null"],
                    "half depth, logits + hidden states only"),
    "logits-gold": (["intermediate=null", "loss.alpha=0.5", "data.labels=gold"],
                    "half depth, logits + gold labels (alpha 0.5)"),
    "bottom": (["intermediate=null", "student.init_from_teacher_layers=bottom"],
               "half depth from the teacher's bottom layers (the baseline's start), logits only"),
    "bottom-gold": (["intermediate=null", "student.init_from_teacher_layers=bottom", "loss.alpha=0.5",
                     "data.labels=gold"],
                    "half depth from the teacher's bottom layers, logits + gold labels (alpha 0.5)"),
    "augmented": (["intermediate=null", "data.augment={n_iter: 4}"],
                  "half depth, logits only, on Tang et al.'s transfer set (4 samples per example, teacher-labelled)"),
}


#: bench_glue.py's families shown here, and the variant name each takes in this table.
GLUE_FAMILIES = {"small_transformer": "shipped", "baseline": "baseline"}
PLOT = ROOT / "docs" / "results" / "intermediate.png"


def load() -> dict:
    """The finished cells (none on a new checkout)."""
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"cells": {}}


def glue_cells() -> dict:
    """bench_glue.py's ``small_transformer`` (the recipe as shipped) and ``baseline`` cells, in this table's
    columns; cells from before the current recipes (no recipe hash) are left out."""
    cells = {}
    for key, cell in load_results()["cells"].items():
        task, family = key.split("/")
        if family not in GLUE_FAMILIES or "recipe_sha256" not in cell:
            continue
        metrics = cell["metrics"]
        variant = GLUE_FAMILIES[family]
        cells[f"{task}/{variant}"] = {
            "task": task, "variant": variant, "wall_seconds": cell["wall_seconds"], "date": cell["date"],
            "student": score(metrics["student"]["metrics"], task), "teacher": score(metrics["teacher"]["metrics"], task),
            "params": metrics["student"]["params"], "commit": cell.get("commit", "?")}
    return cells


def run_cell(task: str, variant: str, args) -> dict:
    """One recipe run in a fresh process; returns what the table needs (score, time, provenance)."""
    sets = overrides(task, f"intermediate-{variant}", args) + VARIANTS[variant][0]
    ran = run_recipe(recipe_path(task, "small_transformer"), sets, output_dir(task, f"intermediate-{variant}", args),
                     f"{task} {variant}")
    metrics = ran["metrics"]
    return {"task": task, "variant": variant, "overrides": sets, "variant_overrides": VARIANTS[variant][0], **ran,
            "student": score(metrics["student"]["metrics"], task), "teacher": score(metrics["teacher"]["metrics"], task),
            "best_epoch": metrics["student"].get("best_epoch"), "params": metrics["student"]["params"],
            "date": time.strftime("%Y-%m-%d")}


def render(cells: dict, argv: list[str]) -> tuple[list[str], list[dict]]:
    """The docs section and the results rows, one per cell (this script's and :func:`glue_cells`; Δ against
    ``logits`` of the same task)."""
    commits = sorted({c["commit"] for c in cells.values()})
    lines = ["## Small-transformer recipe: what each part buys (issue 24)", "",
             f"Command: `python scripts/bench_intermediate.py {' '.join(argv)}` (cells resume; each ran in its own "
             f"process on commit {', '.join(commits) or '—'}; dates and seconds per cell below). Teacher: "
             "all-MiniLM-L6-v2 fine-tuned on the task (bench_glue.py's teacher, the same weights in every row of a "
             "task); dev GLUE score (the task's metric, or the mean of its two: MRPC F1/accuracy, STS-B "
             "Pearson/Spearman); retention = student / teacher. A task's first cell also fine-tunes the teacher "
             "(its seconds include that).", "",
             "| task | variant | student | teacher | retention | Δ vs logits only (points) | params | cell s | date |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    rows = []
    for key in sorted(cells, key=lambda k: (cells[k]["task"], list(VARIANTS).index(cells[k]["variant"]))):
        c = cells[key]
        base = cells.get(f"{c['task']}/logits")
        delta = f"{100 * (c['student'] - base['student']):+.2f}" if base and c["variant"] != "logits" else "—"
        lines.append(f"| {c['task']} | {VARIANTS[c['variant']][1]} | {c['student']:.4f} | {c['teacher']:.4f} | "
                     f"{c['student'] / c['teacher']:.3f} | {delta} | {c['params']:,} | {c['wall_seconds']:.0f} | "
                     f"{c['date']} |")
        rows.append({"task": c["task"], "model": f"small_transformer ({c['variant']})", "metric": "dev score",
                     "value": round(c["student"], 4), "target": None, "met": None, "commit": c["commit"]})
    lines += ["", *best_lines(cells), "", f"![small-transformer variants](results/{PLOT.name})"]
    return lines, rows


def best_lines(cells: dict) -> list[str]:
    """Per task: the best distilled variant, and whether it is ahead of the plain gold-label baseline."""
    out = []
    for task in sorted({c["task"] for c in cells.values()}):
        mine = {c["variant"]: c["student"] for c in cells.values() if c["task"] == task}
        distilled = {v: x for v, x in mine.items() if v != "baseline"}
        if not distilled:
            continue
        best = max(distilled, key=distilled.get)
        line = f"- {task}: best distilled variant `{best}` ({distilled[best]:.4f})"
        if "baseline" in mine:
            lead = 100 * (distilled[best] - mine["baseline"])
            line += f", {lead:+.2f} points against the baseline ({mine['baseline']:.4f}): " + (
                "ahead" if lead > 0 else "**behind**")
        out.append(line + ".")
    return out


def plot(cells: dict) -> None:
    """One bar group per task: each variant's retention of the teacher (the baseline included)."""
    from bench_common import pyplot

    plt = pyplot()
    tasks = sorted({c["task"] for c in cells.values()})
    variants = [v for v in VARIANTS if any(c["variant"] == v for c in cells.values())]
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(tasks) * max(1, len(variants)) / 3), 3.4))
    width = 0.8 / max(1, len(variants))
    for i, variant in enumerate(variants):
        values = [next((c["student"] / c["teacher"] for c in cells.values() if c["task"] == t and c["variant"] == variant),
                       0.0) for t in tasks]
        ax.bar([j + i * width for j in range(len(tasks))], values, width, label=variant)
    ax.axhline(0.97, color="#c44e52", linestyle="--", linewidth=1, label="97% target")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks)
    ax.set_ylabel("retention of the teacher")
    ax.set_ylim(0.5, 1.05)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--tasks", nargs="+", default=["stsb", "mrpc", "rte"], help="GLUE tasks")
    runnable = [v for v in VARIANTS if VARIANTS[v][0] is not None]
    parser.add_argument("--variants", nargs="+", default=runnable, choices=runnable)
    parser.add_argument("--table-only", action="store_true", help="regenerate the section from the JSON")
    args = parser.parse_args()
    args.cache_dir = str(Path(args.cache_dir).expanduser().resolve())
    results = load()
    if not args.table_only:
        for task in args.tasks:
            for variant in args.variants:
                key = f"{task}/{variant}"
                done = results["cells"].get(key)
                if done and done["variant_overrides"] == VARIANTS[variant][0]:
                    continue  # finished with the same change; a variant whose change was edited reruns
                results["cells"][key] = run_cell(task, variant, args)
                write_text_atomic(RESULTS, json.dumps(results, indent=1, sort_keys=True) + "\n")
    cells = {**results["cells"], **glue_cells()}
    lines, rows = render(cells, [a for a in sys.argv[1:] if a != "--table-only"])
    results["results"] = rows
    publish(BEGIN, END, lines, args)
    if not args.no_write:
        write_text_atomic(RESULTS, json.dumps(results, indent=1, sort_keys=True) + "\n")
        plot(cells)


if __name__ == "__main__":
    main()
