"""Benchmark: what each part of the GLUE student recipes buys (issue 24).

The shipped ``recipes/glue/<task>/bert-large-to-small-transformer.yaml`` trains a student with half the
teacher's layers, started from the teacher's bottom layers, on the teacher's logits and the gold labels
(``loss.alpha: 0.5``). It was chosen from this sweep. Each cell is that recipe with one part changed, run as a
user runs it (a fresh ``distilkit run`` process) with bench_glue.py's overrides (the offline all-MiniLM-L6-v2
fine-tuned on the task's train split replaces the Hub BERT-large teacher; GLUE TSVs; the benchmark cache), so
the teacher and its cached logits are the ones bench_glue.py's cells use. The recipe as shipped and the plain
baseline are bench_glue.py's ``small_transformer`` and ``baseline`` cells (``docs/results/glue.json``), shown
beside these, not run twice:

* ``intermediate``  -- evenly spaced layers plus the teacher's inside (``intermediate:``: hidden states of
  uniformly mapped layers, TinyBERT, Jiao et al. 2020 eq. 8; the last layers' attention distributions and value
  relations, MiniLM, Wang et al. 2020 eq. 6-9): the recipe shipped before this sweep;
* ``logits``        -- evenly spaced layers, logits only;
* ``quarter-depth`` -- the recipe before that: a quarter of the teacher's depth, evenly spaced, logits only;
* ``two-stage``     -- ``intermediate`` on TinyBERT's schedule: the first half of the steps on the inside alone;
* ``hidden-only``   -- evenly spaced layers, the hidden-state term without MiniLM's two;
* ``logits-gold``   -- evenly spaced layers, logits and gold labels half and half (``loss.alpha: 0.5``);
* ``bottom``        -- the teacher's bottom layers (the baseline's start), logits only;
* ``bottom-gold``   -- bottom layers, logits and gold labels: the shipped recipe (run here on tasks before
  bench_glue.py ran it);
* ``augmented``     -- the shipped recipe on Tang et al.'s augmented transfer set (``data.augment``, 4
  teacher-labelled samples per example; TinyBERT's students train on such a set too);
* ``augmented-1ep`` -- the same transfer set for 1 epoch instead of 5: as many optimizer steps as the shipped
  recipe (the originals plus 4 samples each is 5x the rows), so it costs about what the shipped cell costs.

The BiLSTM recipe (``bert-large-to-bilstm.yaml``, bench_glue.py's ``bilstm`` cell as ``bilstm-shipped``) gets the
same treatment in a table of its own, judged against issue 24's retention targets (90% on RTE, MRPC, STS-B):

* ``bilstm-last``    -- each direction's last state (Tang et al. 2019; every recipe but STS-B's);
* ``bilstm-max``     -- max pooling over the tokens' outputs (BiLSTM-max, Conneau et al. 2017; STS-B's recipe,
  chosen from this sweep);
* ``bilstm-max-300`` -- that with 300 units per direction (Tang et al.'s larger setting).

The table says what each cell ran from its own resolved recipe (layers it started from, the gold-label weight
alpha, the inside terms, the transfer set), so a cell run before the shipped recipe changed reads right. Every
finished cell is written at once to ``docs/results/intermediate.json`` (with the git commit it ran on and the
resolved recipe), and a rerun skips it while its variant still resolves to the same recipe, so the sweep resumes
across sessions and machines. The docs section and the ``results`` rows (task, model, metric, value, target,
met) are regenerated from the JSON.

    python scripts/bench_intermediate.py --data-dir ../shared/glue --tasks stsb mrpc --variants logits augmented
    python scripts/bench_intermediate.py --table-only
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bench_glue as glue
import yaml
from bench_common import ROOT, bench_parser, publish
from glue_table import score
from recipe_diff import runs_the_same

from distilkit.core.atomic import write_text_atomic

RESULTS = ROOT / "docs" / "results" / "intermediate.json"
BEGIN, END = "<!-- bench_intermediate:begin -->", "<!-- bench_intermediate:end -->"
#: The teacher's inside, as the recipe before this sweep shipped it (``distilkit.methods.intermediate``).
INSIDE = ("{hidden: {weight: 1.0, layer_map: uniform, loss: mse}, attention: {weight: 1.0, layer_map: last}, "
          "value_relation: {weight: 1.0}, projection: drop")
UNIFORM = "student.init_from_teacher_layers=uniform"
#: Each variant: what it changes in the shipped recipe (``--set`` overrides) and what the table calls it.
VARIANTS = {
    "shipped": (None, "as shipped (bench_glue.py)"),
    "baseline": (None, "baseline: teacher truncated to half depth, gold labels only (bench_glue.py)"),
    "intermediate": ([UNIFORM, f"intermediate={INSIDE}}}"], "+ the teacher's inside (the previous recipe)"),
    "logits": ([UNIFORM, "loss.alpha=0.0"], "evenly spaced layers"),
    "quarter-depth": ([UNIFORM, "loss.alpha=0.0", "student.num_layers=0.25"], "quarter depth (the recipe before)"),
    "two-stage": ([UNIFORM, f"intermediate={INSIDE}, stages: {{intermediate_fraction: 0.5}}}}"],
                  "+ the inside, TinyBERT's two stages (first half of the steps: inside only)"),
    "hidden-only": ([UNIFORM, "intermediate={hidden: {weight: 1.0, layer_map: uniform, loss: mse}, projection: drop}"],
                    "+ hidden states only"),
    "logits-gold": ([UNIFORM], "evenly spaced layers, logits + gold"),
    "bottom": (["loss.alpha=0.0"], "bottom layers, logits only"),
    "bottom-gold": ([], "bottom layers, logits + gold (the shipped recipe)"),
    "augmented": (["data.augment={n_iter: 4}"], "the shipped recipe on Tang et al.'s transfer set"),
    "augmented-1ep": (["data.augment={n_iter: 4}", "train.epochs=1"],
                      "the transfer set (5x the rows) for 1 epoch: the shipped recipe's number of steps"),
    "bilstm-shipped": (None, "the BiLSTM as shipped (bench_glue.py)"),
    "bilstm-last": (["student.pooling=last"], "the BiLSTM reading each direction's last state (Tang et al.; "
                    "every recipe but STS-B's)"),
    "bilstm-max": (["student.pooling=max"], "the BiLSTM with max pooling over tokens (BiLSTM-max; STS-B's "
                   "recipe, chosen here)"),
    "bilstm-max-300": (["student.pooling=max", "student.hidden_size=300"],
                       "BiLSTM-max with 300 units per direction (Tang et al.'s larger setting)"),
}


#: Issue 24's BiLSTM retention targets (SST-2: stays where it was).
BILSTM_TARGETS = {"rte": 0.90, "mrpc": 0.90, "stsb": 0.90, "sst2": 0.96}


def family(variant: str) -> str:
    """The bench_glue.py recipe family a variant changes."""
    return "bilstm" if variant.startswith("bilstm") else "small_transformer"


#: bench_glue.py's families shown here, and the variant name each takes in this table.
GLUE_FAMILIES = {"small_transformer": "shipped", "baseline": "baseline", "bilstm": "bilstm-shipped"}
PLOT = ROOT / "docs" / "results" / "intermediate.png"


def load() -> dict:
    """The finished cells (none on a new checkout)."""
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"cells": {}}


def glue_cells(args) -> dict:
    """bench_glue.py's ``small_transformer`` (the recipe as shipped) and ``baseline`` cells, in this table's
    columns; cells of other recipes than the current ones (stale by bench_glue.py's rule) are left out."""
    cells, done = {}, glue.load_results()["cells"]
    stale = glue.stale_reasons(done, args)
    for key, cell in done.items():
        task, family = key.split("/")
        if family not in GLUE_FAMILIES or key in stale:
            continue
        metrics = cell["metrics"]
        variant = GLUE_FAMILIES[family]
        cells[f"{task}/{variant}"] = {
            "task": task, "variant": variant, "wall_seconds": cell["wall_seconds"], "date": cell["date"],
            "student": score(metrics["student"]["metrics"], task), "teacher": score(metrics["teacher"]["metrics"], task),
            "params": metrics["student"]["params"], "commit": cell.get("commit", "?"),
            "resolved_recipe": cell["resolved_recipe"]}
    return cells


def variant_sets(task: str, variant: str, args) -> list[str]:
    """bench_glue.py's overrides (teacher, data, locations) and the variant's change to the shipped recipe."""
    return glue.overrides(task, f"intermediate-{variant}", args) + VARIANTS[variant][0]


def what_ran(resolved_recipe: str) -> dict[str, str]:
    """The table's description of a cell, read from its resolved recipe (not from the variant's name: the
    shipped recipe a variant changes has changed since some cells ran)."""
    tree = yaml.safe_load(resolved_recipe)
    augment = (tree["data"].get("augment") or {}).get("n_iter")
    if tree["student"]["kind"] == "bilstm":
        return {"pooling": tree["student"].get("pooling", "last"), "hidden": str(tree["student"]["hidden_size"]),
                "transfer": f"Tang ×{augment}" if augment else "—"}
    inside = tree.get("intermediate") or {}
    terms = [t for t in ("hidden", "attention", "value_relation", "embedding", "cls") if inside.get(t)]
    if inside.get("stages"):
        terms.append("two stages")
    return {"depth": str(tree["student"]["num_layers"]), "layers": tree["student"]["init_from_teacher_layers"],
            "alpha": f"{tree['loss']['alpha']:g}" if tree["data"]["labels"] == "gold" else "— (no gold)",
            "inside": ", ".join(terms) or "—", "transfer": f"Tang ×{augment}" if augment else "—",
            "epochs": f"{tree['train']['epochs']:g}"}


def run_cell(task: str, variant: str, args) -> dict:
    """One recipe run in a fresh process; returns what the table needs (score, time, provenance)."""
    sets = variant_sets(task, variant, args)
    out = glue.output_dir(task, f"intermediate-{variant}", args)
    ran = glue.run_recipe(glue.recipe_path(task, family(variant)), sets, out, f"{task} {variant}")
    metrics = ran["metrics"]
    return {"task": task, "variant": variant, "overrides": sets, "variant_overrides": VARIANTS[variant][0], **ran,
            "student": score(metrics["student"]["metrics"], task), "teacher": score(metrics["teacher"]["metrics"], task),
            "best_epoch": metrics["student"].get("best_epoch"), "params": metrics["student"]["params"],
            "date": time.strftime("%Y-%m-%d")}


def render(cells: dict, argv: list[str]) -> tuple[list[str], list[dict]]:
    """The docs section and the results rows, one per cell (this script's and :func:`glue_cells`; Δ against
    ``logits`` of the same task)."""
    commits = sorted({c["commit"] for c in cells.values()})
    lines = ["## GLUE student recipes: what each part buys (issue 24)", "",
             f"Command: `python scripts/bench_intermediate.py {' '.join(argv)}` (cells resume; each ran in its own "
             f"process on commit {', '.join(commits) or '—'}; dates and seconds per cell below). Teacher: "
             "all-MiniLM-L6-v2 fine-tuned on the task (bench_glue.py's teacher, the same weights in every row of a "
             "task); dev GLUE score (the task's metric, or the mean of its two: MRPC F1/accuracy, STS-B "
             "Pearson/Spearman); retention = student / teacher. A task's first cell also fine-tunes the teacher "
             "(its seconds include that).", "",
             "What each cell ran is read from its resolved recipe: depth (fraction of the teacher's layers), the "
             "layers the student started from, alpha (the gold labels' weight; 0 = teacher logits only), the "
             "teacher's inside terms, the transfer set, epochs.", "",
             "| task | variant | depth | layers | alpha | inside | transfer set | epochs | student | teacher | "
             "retention | Δ vs logits (points) | params | cell s | date |",
             "| --- | --- | ---: | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    rows = []
    order = sorted(cells, key=lambda k: (cells[k]["task"], list(VARIANTS).index(cells[k]["variant"])))
    for key in (k for k in order if family(cells[k]["variant"]) == "small_transformer"):
        c = cells[key]
        base = cells.get(f"{c['task']}/logits")
        delta = f"{100 * (c['student'] - base['student']):+.2f}" if base and c["variant"] != "logits" else "—"
        ran = what_ran(c["resolved_recipe"])
        lines.append(f"| {c['task']} | {c['variant']} | {ran['depth']} | {ran['layers']} | {ran['alpha']} | "
                     f"{ran['inside']} | {ran['transfer']} | {ran['epochs']} | {c['student']:.4f} | {c['teacher']:.4f} | "
                     f"{c['student'] / c['teacher']:.3f} | {delta} | {c['params']:,} | {c['wall_seconds']:.0f} | "
                     f"{c['date']} |")
        rows.append({"task": c["task"], "model": f"small_transformer ({c['variant']})", "metric": "dev score",
                     "value": round(c["student"], 4), "target": None, "met": None, "commit": c["commit"]})
    bilstm = [k for k in order if family(cells[k]["variant"]) == "bilstm"]
    if bilstm:
        lines += ["", "The BiLSTM recipe (`bert-large-to-bilstm.yaml`), one part changed at a time: pooling (the "
                  "sentence vector), units per direction, the transfer set.", "",
                  "| task | variant | pooling | hidden | transfer set | student | teacher | retention | "
                  "Δ vs shipped (points) | params | cell s | date |",
                  "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for key in bilstm:
        c = cells[key]
        base = cells.get(f"{c['task']}/bilstm-shipped")
        delta = f"{100 * (c['student'] - base['student']):+.2f}" if base and c is not base else "—"
        ran = what_ran(c["resolved_recipe"])
        lines.append(f"| {c['task']} | {c['variant']} | {ran['pooling']} | {ran['hidden']} | {ran['transfer']} | "
                     f"{c['student']:.4f} | {c['teacher']:.4f} | {c['student'] / c['teacher']:.3f} | {delta} | "
                     f"{c['params']:,} | {c['wall_seconds']:.0f} | {c['date']} |")
        rows.append({"task": c["task"], "model": f"bilstm ({c['variant']})", "metric": "dev score",
                     "value": round(c["student"], 4), "target": None, "met": None, "commit": c["commit"]})
    shown = [v for v in VARIANTS if any(c["variant"] == v for c in cells.values())]
    lines += ["", *(f"- `{v}`: {VARIANTS[v][1]}" for v in shown), "", *best_lines(cells), "",
              f"![recipe variants](results/{PLOT.name})"]
    return lines, rows


def best_lines(cells: dict) -> list[str]:
    """Per task: the best distilled small transformer and whether it is ahead of the plain gold-label baseline;
    the best BiLSTM and whether it keeps 90% of the teacher (issue 24's BiLSTM target)."""
    out = []
    for task in sorted({c["task"] for c in cells.values()}):
        mine = {c["variant"]: c["student"] for c in cells.values() if c["task"] == task}
        lstm = {v: c["student"] / c["teacher"] for c in cells.values() if c["task"] == task
                and family(v := c["variant"]) == "bilstm"}
        if lstm and task in BILSTM_TARGETS:
            best, target = max(lstm, key=lstm.get), BILSTM_TARGETS[task]
            out.append(f"- {task}: best BiLSTM variant `{best}`, retention {lstm[best]:.3f} (target >= {target}: "
                       + ("met" if lstm[best] >= target else "**missed**") + ").")
        distilled = {v: x for v, x in mine.items() if v != "baseline" and family(v) == "small_transformer"}
        if not distilled:
            continue
        best = max(distilled, key=distilled.get)
        line = f"- {task}: best distilled variant `{best}` ({distilled[best]:.4f})"
        if "baseline" in mine:
            lead = 100 * (distilled[best] - mine["baseline"])
            line += f", {lead:+.2f} points against the baseline ({mine['baseline']:.4f}): " + (
                "ahead" if lead > 0 else "**level, not ahead**" if lead == 0 else "**behind**")
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
                now = glue.resolve(task, family(variant), variant_sets(task, variant, args))
                if done and runs_the_same(done["resolved_recipe"], now):
                    continue  # finished with what the variant runs now; one whose change was edited reruns
                results["cells"][key] = run_cell(task, variant, args)
                write_text_atomic(RESULTS, json.dumps(results, indent=1, sort_keys=True) + "\n")
    cells = {**results["cells"], **glue_cells(args)}
    lines, rows = render(cells, [a for a in sys.argv[1:] if a != "--table-only"])
    results["results"] = rows
    publish(BEGIN, END, lines, args)
    if not args.no_write:
        write_text_atomic(RESULTS, json.dumps(results, indent=1, sort_keys=True) + "\n")
        plot(cells)


if __name__ == "__main__":
    main()
