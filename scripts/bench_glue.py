"""Benchmark: the GLUE table (issue 11) -- every task with train and dev data, teacher and both students.

For every task whose train and dev files are under ``--data-dir`` (SST-2, CoLA, MRPC, STS-B, RTE, WNLI), the
shipped recipes ``recipes/glue/<task>/bert-large-to-bilstm.yaml`` and ``bert-large-to-small-transformer.yaml``
run exactly as a user runs them (``distilkit run``, one fresh process per recipe), with three overrides: the
offline all-MiniLM-L6-v2 replaces the Hub BERT-large teacher and is fine-tuned on the task's full train split
with the task's own settings (``teacher.model=minilm teacher.finetune={}``: ``teacher_finetune`` in
``tasks/<task>.yaml``), and the data come from the GLUE TSVs (``data.dir``). Output and cache directories live
in the benchmark cache. QNLI has only its dev file here and is listed as "no training data".

Then, per task, a fresh process times the teacher, both students and the BERT-large architecture (random
weights: latency does not depend on the values) interleaved on the task's dev sentences at batch 1 and 32.

A third recipe family, ``baseline`` (issue 24), is the plain model a user tries first: the task's shipped
small-transformer recipe with the teacher truncated to the student's depth and fine-tuned on gold labels
(:func:`baseline_overrides`: ``student.init_from_teacher_layers=bottom loss.alpha=1.0 data.labels=gold``, and
``intermediate=null`` -- likewise ``data.augment``, ``loss.mutual`` -- where the recipe has that section), same
depth, epochs and lr. For STS-B, alpha 1 is the MSE on the gold scores.

Every finished cell (task x {bilstm, small_transformer, baseline, latency}) is written to
``docs/results/glue.json`` at once; a rerun skips finished cells (``--only TASK``, ``--redo TASK``), so the table
resumes across interrupted runs and machines (fine-tuned teachers and transfer sets go to the benchmark cache; a
machine without it recomputes only the missing cells). A finished cell is rerun anyway when it is stale
(:func:`stale_reason`, printed): a recipe cell records the commit it ran on, the sha256 of its shipped recipe
file and its overrides, and is rerun when the file or the overrides changed; a latency cell records the model
cells it timed and is rerun when one of them was rerun after it. The GLUE section of ``docs/benchmarks.md`` is
regenerated from the JSON, with the numbers of ``docs/results/glue_previous.json`` (the table before issue 24's
recipe changes, never written here) beside the new ones.

    python scripts/bench_glue.py --data-dir ../shared/glue
    python scripts/bench_glue.py --data-dir ../shared/glue --only rte mrpc --redo rte
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import ROOT, bench_parser, git_commit, publish
from glue_table import LATENCY_PROCESSES, TASKS, render, verdicts
from recipe_diff import LOCATION_KEYS, differences, runs_the_same

from distilkit.core.yaml_files import read_yaml

RESULTS = ROOT / "docs" / "results" / "glue.json"
PREVIOUS = ROOT / "docs" / "results" / "glue_previous.json"
BEGIN, END = "<!-- bench_glue:begin -->", "<!-- bench_glue:end -->"
#: The shipped recipe each family runs (the baseline runs the small transformer's, with its own overrides).
RECIPES = {"bilstm": "bert-large-to-bilstm.yaml", "small_transformer": "bert-large-to-small-transformer.yaml",
           "baseline": "bert-large-to-small-transformer.yaml"}
#: The model cells a latency cell times (the baseline has the small transformer's architecture: not timed).
TIMED = ("bilstm", "small_transformer")
#: Families whose cells from before the sha rule (no ``recipe_sha256``) are rerun: their recipes changed since.
RERUN_WITHOUT_SHA = ("small_transformer", "baseline")
OLDER = "older than the sha rule"


def load_results() -> dict:
    """The cells finished so far (an empty table on a new checkout)."""
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"cells": {}}


def save_results(results: dict) -> None:
    """Write the table atomically: an interrupted write leaves the previous complete file."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)


def has_data(data_dir: Path, task: str) -> bool:
    """Whether the task's train and dev TSVs are present."""
    from distilkit.data.tasks import load_task

    spec = load_task(task).tsv
    folder = Path(data_dir) / spec.folder
    return all((folder / spec.files[split].file).is_file() for split in ("train", "validation"))


def recipe_path(task: str, family: str) -> Path:
    """The shipped recipe a family's cell runs, relative to the repository root."""
    return Path("recipes") / "glue" / task / RECIPES[family]


def recipe_sha256(task: str, family: str) -> str:
    """sha256 of the shipped recipe file's bytes (what a cell's numbers depend on besides the code)."""
    return hashlib.sha256((ROOT / recipe_path(task, family)).read_bytes()).hexdigest()


def baseline_overrides(recipe: Path) -> list[str]:
    """What turns a shipped small-transformer recipe into the plain baseline: the teacher truncated to the
    student's depth (``bottom``), trained on gold labels alone (``alpha`` 1; MSE on the gold scores for STS-B).

    Whatever else in the recipe learns from the teacher goes too, when the recipe has it: ``intermediate``
    (layer-to-layer terms), ``data.augment`` (a teacher-labelled transfer set: rows without gold labels, which
    would only add steps) and ``loss.mutual``. Depth, epochs, lr and batch stay the shipped student's.
    """
    tree = read_yaml(ROOT / recipe)
    sets = ["student.init_from_teacher_layers=bottom", "loss.alpha=1.0", "data.labels=gold"]
    for section, key in (("", "intermediate"), ("data", "augment"), ("loss", "mutual")):
        holder = tree.get(section) if section else tree
        if isinstance(holder, dict) and holder.get(key) is not None:
            sets.append(f"{section + '.' if section else ''}{key}=null")  # --set KEY=null drops the section
    return sets


def output_dir(task: str, family: str, args) -> Path:
    """Where a cell's run writes (``<cache>/glue/<task>-<family>``; other scripts' cells name their own family)."""
    return Path(args.cache_dir) / "glue" / f"{task}-{family}"


def overrides(task: str, family: str, args) -> list[str]:
    """The only changes to the shipped recipe: teacher, its fine-tuning, the data; where outputs go; for the
    baseline, :func:`baseline_overrides`."""
    extra = baseline_overrides(recipe_path(task, family)) if family == "baseline" else []
    return ["teacher.model=minilm", "teacher.finetune={}", *extra, f"data.dir={Path(args.data_dir).resolve()}",
            f"output_dir={output_dir(task, family, args)}", f"cache.dir={args.cache_dir}"]


def _run_overrides(sets: list[str]) -> list[str]:
    """The overrides that change what runs (not where): the part of a cell's overrides the stale rule compares."""
    return [s for s in sets if s.split("=", 1)[0] not in LOCATION_KEYS]


def stale_reason(key: str, cells: dict, current: dict[str, tuple[str, list[str], str]]) -> str | None:
    """Why a finished cell must be rerun, or ``None`` to keep it.

    Args:
        key: ``"<task>/<family>"``.
        cells: Every cell so far (a latency cell is judged against its task's model cells).
        current: Per recipe family of the task, ``(sha256 of the shipped recipe, overrides, the resolved
            recipe.yaml they give)`` as they are now (:func:`current_recipes`).

    A recipe cell is stale when its shipped recipe file's sha256 or its overrides (locations aside) differ from
    the recorded ones, unless its recorded resolved recipe equals the one they give now (:func:`runs_the_same`:
    the change did not touch what runs); with the same file and overrides, it is stale when they resolve to
    another recipe than the recorded one (a task file's ``teacher_finetune`` changed). A cell from before the
    sha rule has no sha recorded: its resolved recipe decides when it is on record; without it a
    small-transformer or baseline cell is stale (those recipes changed since) and a BiLSTM cell is kept
    (:func:`mark_older`). A latency cell is stale when one of the model cells it timed was rerun after it: their recorded ``commit``/``finished`` differ
    from the cells' now (a latency cell without that record predates every model cell that has one), or when it
    was timed in fewer than :data:`LATENCY_PROCESSES` fresh processes (the speed rule).
    """
    task, family = key.split("/")
    cell = cells[key]
    if family == "latency":
        timed = cell.get("model_cells")
        for name in TIMED:
            model = cells.get(f"{task}/{name}") or {}
            stamp = {k: model.get(k) for k in ("commit", "finished")}
            if timed is None and model.get("commit") is not None:
                return f"{task}/{name} was rerun ({model['commit']}, {model.get('finished')}) after this latency cell"
            if timed is not None and timed.get(name) != stamp:
                return (f"{task}/{name} was rerun ({stamp['commit']}, {stamp['finished']}) after this latency "
                        f"cell timed it ({(timed.get(name) or {}).get('commit')}, "
                        f"{(timed.get(name) or {}).get('finished')})")
        timed_in = len(cell.get("processes") or [None])
        if timed_in < LATENCY_PROCESSES:
            return f"timed in {timed_in} fresh process(es); a speed verdict needs {LATENCY_PROCESSES}"
        return None
    sha, sets, resolved = current[family]
    if "recipe_sha256" not in cell:
        if "resolved_recipe" in cell:  # what it ran is on record: that decides
            changed = differences(cell["resolved_recipe"], resolved)
            return f"a cell from before the sha rule that ran another recipe ({'; '.join(changed)})" if changed else None
        if family in RERUN_WITHOUT_SHA:
            return (f"no recipe sha256 recorded: a cell from before the sha rule, and the {family} recipes have "
                    "changed since")
        return None
    if cell["recipe_sha256"] != sha:
        reason = (f"{recipe_path(task, family)} changed: sha256 {cell['recipe_sha256'][:12]} recorded, "
                  f"{sha[:12]} now")
    elif _run_overrides(cell.get("overrides", [])) != _run_overrides(sets):
        reason = f"overrides changed: {_run_overrides(cell.get('overrides', []))} recorded, {_run_overrides(sets)} now"
    else:
        # Same file, same overrides, yet they may resolve to another run: a task file's teacher_finetune is
        # merged into the recipe (tasks/<task>.yaml changed), or a default moved.
        changed = differences(cell["resolved_recipe"], resolved) if "resolved_recipe" in cell else []
        return f"the resolved recipe changed ({'; '.join(changed)})" if changed else None
    # A changed file or override list may still run the same thing (the baseline's overrides set what the new
    # recipe already says): the resolved recipes decide then, locations and wording aside.
    if "resolved_recipe" in cell and runs_the_same(cell["resolved_recipe"], resolved):
        return None
    return reason


def resolve(task: str, family: str, sets: list[str]) -> str:
    """The ``recipe.yaml`` a cell's ``distilkit run`` would write now (the shipped recipe with ``sets``)."""
    from distilkit.run.recipe_io import dump_recipe, load_recipe

    return dump_recipe(load_recipe(ROOT / recipe_path(task, family), sets))


def stale_reasons(cells: dict, args) -> dict[str, str]:
    """``{key: why}`` for every recipe or latency cell that is stale now (each task's recipes resolved once)."""
    current, reasons = {}, {}
    for key in cells:
        task, family = key.split("/")
        if family not in (*RECIPES, "latency"):
            continue
        if task not in current:
            current[task] = current_recipes(task, args)
        reason = stale_reason(key, cells, current[task])
        if reason is not None:
            reasons[key] = reason
    return reasons


def mark_stale(cells: dict, args) -> None:
    """Record on each cell why it is stale (``stale``; the table shows it), or clear that: a table that mixes
    cells of the current recipes with cells of older ones says which are which."""
    reasons = stale_reasons(cells, args)
    for key, cell in cells.items():
        if key in reasons:
            cell["stale"] = reasons[key]
        else:
            cell.pop("stale", None)


def mark_older(cell: dict) -> None:
    """A kept cell from before the sha rule says so (the table's code column shows it)."""
    if "recipe_sha256" not in cell and "commit" not in cell:
        cell["code"] = OLDER


def run_threads() -> int:
    """The CPU threads a ``distilkit run`` child uses: OMP_NUM_THREADS when set, else every core (torch's default)."""
    return int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def run_recipe(recipe: Path, sets: list[str], out: Path, label: str) -> dict:
    """Run ``recipe`` with ``sets`` in a fresh ``distilkit run`` process (writing to ``out``, the folder its
    ``output_dir`` override names); return the commit it started on, its wall time, its ``metrics.json`` and
    its resolved recipe."""
    commit = git_commit()  # before the run: the code the run read
    command = [sys.executable, "-m", "distilkit", "run", str(recipe), "--set", *sets]
    print(f"[{label}] {' '.join(command[1:])}", flush=True)
    start = time.time()
    subprocess.run(command, check=True, cwd=ROOT)
    return {"commit": commit, "wall_seconds": round(time.time() - start, 1),
            "metrics": json.loads((out / "metrics.json").read_text()),
            "resolved_recipe": (out / "recipe.yaml").read_text()}


def run_recipe_cell(task: str, family: str, args) -> dict:
    """Run one shipped recipe in a fresh ``distilkit run`` process and collect what the table needs."""
    recipe = recipe_path(task, family)
    sha = recipe_sha256(task, family)  # before the run: the file the run read
    sets = overrides(task, family, args)
    out = output_dir(task, family, args)
    ran = run_recipe(recipe, sets, out, f"{task} {family}")
    teacher_dir = Path(ran["metrics"]["teacher"]["name"])
    finetune = json.loads((teacher_dir / "finetune.json").read_text()) if (teacher_dir / "finetune.json").is_file() else {}
    return {"recipe": str(recipe), "recipe_sha256": sha, "overrides": sets, **ran, "teacher_finetune": finetune,
            "model_dir": str(out / "model"), "date": time.strftime("%Y-%m-%d"),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "threads": run_threads()}


def latency_cell(task: str, args, results: dict) -> dict:
    """Time teacher, both students and BERT-large in :data:`LATENCY_PROCESSES` fresh processes, one after
    another, after one that makes the ORT exports (see ``glue_latency.py``); the cell holds each process's
    ``latency_ms`` (``processes``: the speed verdicts must hold in every one) and, for the tables, their median
    per model and batch size."""
    dirs = {family: results["cells"][f"{task}/{family}"]["model_dir"] for family in TIMED}
    teacher = results["cells"][f"{task}/bilstm"]["metrics"]["teacher"]["name"]
    missing = [f"{name}: {folder}" for name, folder in (*dirs.items(), ("teacher", teacher))
               if not Path(folder).is_dir()]
    if missing:  # recorded cells whose models are not on this machine (a new machine, a cleared cache)
        raise SystemExit(f"[{task} latency] the models to time are not here ({'; '.join(missing)}); retrain them "
                         f"with --redo {task} (or point --cache-dir at the cache they were trained into)")
    command = [sys.executable, str(Path(__file__).with_name("glue_latency.py")), "--task", task,
               "--data-dir", str(args.data_dir), "--teacher", teacher, "--bilstm", dirs["bilstm"],
               "--small-transformer", dirs["small_transformer"], "--rounds", str(args.rounds)]

    def child(label: str, extra: list[str]) -> dict:
        print(f"[{task} latency, {label}] {' '.join(command[1:] + extra)}", flush=True)
        done = subprocess.run(command + extra, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:  # the child's own error, not only its exit status
            sys.stderr.write(done.stderr[-4000:])
            raise SystemExit(f"[{task} latency] glue_latency.py failed (exit {done.returncode}); its stderr is above")
        return json.loads(done.stdout.strip().splitlines()[-1])

    start = time.time()
    child("exports", ["--export-only"])  # in a process of its own: every timing process only loads them
    runs = [child(f"process {i + 1}/{LATENCY_PROCESSES}", []) for i in range(LATENCY_PROCESSES)]
    cell = combine_latency_runs(runs)
    cell["wall_seconds"] = round(time.time() - start, 1)
    cell["commit"] = git_commit()
    # The model cells timed: a later rerun of one makes this cell stale (stale_reason).
    cell["model_cells"] = {family: {k: results["cells"][f"{task}/{family}"].get(k) for k in ("commit", "finished")}
                           for family in TIMED}
    return cell


def combine_latency_runs(runs: list[dict]) -> dict:
    """One latency cell from fresh-process runs of ``glue_latency.py``: the first run's sizes and ORT reports
    (exports are reused, so they are the same files), ``processes`` = each run's ``latency_ms``, and
    ``latency_ms`` = their median per model and batch size."""
    cell = copy.deepcopy(runs[0])
    cell["processes"] = [run["latency_ms"] for run in runs]
    cell["latency_ms"] = {name: {b: round(statistics.median(run["latency_ms"][name][b] for run in runs), 3)
                                 for b in batches} for name, batches in runs[0]["latency_ms"].items()}
    return cell


def current_recipes(task: str, args) -> dict[str, tuple[str, list[str], str]]:
    """Per recipe family of ``task``: the shipped recipe's sha256, the cell's overrides and the resolved recipe
    they give now (what :func:`stale_reason` compares a finished cell against)."""
    current = {}
    for family in RECIPES:
        sets = overrides(task, family, args)
        current[family] = (recipe_sha256(task, family), sets, resolve(task, family, sets))
    return current


def due(task: str, family: str, results: dict, args) -> bool:
    """Whether a cell runs now: missing, asked for (``--redo``) or stale (the reason is printed)."""
    key = f"{task}/{family}"
    cells = results["cells"]
    if key not in cells or task in args.redo:
        return True
    reason = stale_reason(key, cells, current_recipes(task, args))
    if reason is None:
        if family != "latency":
            mark_older(cells[key])
        return False
    print(f"[{key}] stale, rerunning: {reason}", flush=True)
    return True


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--only", nargs="+", default=None, metavar="TASK", help="run only these tasks")
    parser.add_argument("--redo", nargs="+", default=[], metavar="TASK", help="rerun these tasks' cells")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds")
    parser.add_argument("--families", nargs="+", default=[*RECIPES, "latency"], choices=[*RECIPES, "latency"],
                        help="run only these cells of each task (e.g. leave latency for an idle machine)")
    parser.add_argument("--table-only", action="store_true", help="regenerate the section from the JSON")
    args = parser.parse_args()
    args.cache_dir = str(Path(args.cache_dir).expanduser().resolve())
    results = load_results()
    unknown = sorted(set(args.only or []) - set(TASKS))
    if unknown:
        parser.error(f"--only: unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    tasks = args.only or TASKS  # in the order given, so small tasks can go first
    if not args.table_only:  # a table-only call reads the data status recorded by the runs, never --data-dir's
        for task in tasks:  # cheap: which tasks can be run at all (QNLI has only its dev file here)
            if has_data(Path(args.data_dir), task):
                results["cells"].pop(f"{task}/data", None)
            else:
                results["cells"][f"{task}/data"] = {"status": "no training data"}
        save_results(results)
        for task in (t for t in tasks if f"{t}/data" not in results["cells"]):
            for family in (*RECIPES, "latency"):  # latency last: it is judged against the cells just run
                if family not in args.families or not due(task, family, results, args):
                    continue
                cell = (latency_cell(task, args, results) if family == "latency"
                        else run_recipe_cell(task, family, args))
                results["cells"][f"{task}/{family}"] = cell
                save_results(results)  # each finished cell is kept, whatever happens next
    mark_stale(results["cells"], args)
    results["results"] = verdicts(results["cells"])
    if not (args.table_only and args.no_write):  # cells that ran are kept even under --no-write (resume)
        save_results(results)
    argv = [a for a in sys.argv[1:] if a != "--table-only"]  # the command that makes the cells
    previous = json.loads(PREVIOUS.read_text()) if PREVIOUS.is_file() else None
    publish(BEGIN, END, render(results, argv=argv, previous=previous), args)


if __name__ == "__main__":
    main()
