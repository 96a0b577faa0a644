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

Every finished cell (task x {bilstm, small_transformer, latency}) is written to ``docs/results/glue.json`` at
once; a rerun skips finished cells (``--only TASK``, ``--redo TASK``), so the table resumes across interrupted
runs and machines (fine-tuned teachers and transfer sets go to the benchmark cache; a machine without it
recomputes only the missing cells). The GLUE section of ``docs/benchmarks.md`` is regenerated from the JSON.

    python scripts/bench_glue.py --data-dir ../shared/glue
    python scripts/bench_glue.py --data-dir ../shared/glue --only rte mrpc --redo rte
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_common import ROOT, bench_parser, publish
from glue_table import TASKS, render, verdicts

RESULTS = ROOT / "docs" / "results" / "glue.json"
BEGIN, END = "<!-- bench_glue:begin -->", "<!-- bench_glue:end -->"
RECIPES = {"bilstm": "bert-large-to-bilstm.yaml", "small_transformer": "bert-large-to-small-transformer.yaml"}


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


def overrides(task: str, family: str, args) -> list[str]:
    """The only changes to the shipped recipe: teacher, its fine-tuning, the data; where outputs go."""
    return ["teacher.model=minilm", "teacher.finetune={}", f"data.dir={Path(args.data_dir).resolve()}",
            f"output_dir={Path(args.cache_dir) / 'glue' / f'{task}-{family}'}", f"cache.dir={args.cache_dir}"]


def run_recipe_cell(task: str, family: str, args) -> dict:
    """Run one shipped recipe in a fresh ``distilkit run`` process and collect what the table needs."""
    recipe = Path("recipes") / "glue" / task / RECIPES[family]
    sets = overrides(task, family, args)
    command = [sys.executable, "-m", "distilkit", "run", str(recipe), "--set", *sets]
    print(f"[{task} {family}] {' '.join(command[1:])}", flush=True)
    start = time.time()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.time() - start
    out = Path(args.cache_dir) / "glue" / f"{task}-{family}"
    metrics = json.loads((out / "metrics.json").read_text())
    resolved = (out / "recipe.yaml").read_text()
    teacher_dir = Path(metrics["teacher"]["name"])
    finetune = json.loads((teacher_dir / "finetune.json").read_text()) if (teacher_dir / "finetune.json").is_file() else {}
    return {"recipe": str(recipe), "overrides": sets, "wall_seconds": round(wall, 1), "metrics": metrics,
            "teacher_finetune": finetune, "resolved_recipe": resolved, "model_dir": str(out / "model"),
            "date": time.strftime("%Y-%m-%d")}


def latency_cell(task: str, args, results: dict) -> dict:
    """Time teacher, both students and BERT-large in a fresh process (see :func:`measure_latency`)."""
    dirs = {family: results["cells"][f"{task}/{family}"]["model_dir"] for family in RECIPES}
    teacher = results["cells"][f"{task}/bilstm"]["metrics"]["teacher"]["name"]
    command = [sys.executable, str(Path(__file__).with_name("glue_latency.py")), "--task", task,
               "--data-dir", str(args.data_dir), "--teacher", teacher, "--bilstm", dirs["bilstm"],
               "--small-transformer", dirs["small_transformer"], "--rounds", str(args.rounds)]
    print(f"[{task} latency] {' '.join(command[1:])}", flush=True)
    start = time.time()
    done = subprocess.run(command, check=True, cwd=ROOT, capture_output=True, text=True)
    cell = json.loads(done.stdout.strip().splitlines()[-1])
    cell["wall_seconds"] = round(time.time() - start, 1)
    return cell


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--only", nargs="+", default=None, metavar="TASK", help="run only these tasks")
    parser.add_argument("--redo", nargs="+", default=[], metavar="TASK", help="rerun these tasks' cells")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds")
    parser.add_argument("--table-only", action="store_true", help="regenerate the section from the JSON")
    args = parser.parse_args()
    args.cache_dir = str(Path(args.cache_dir).expanduser().resolve())
    results = load_results()
    unknown = sorted(set(args.only or []) - set(TASKS))
    if unknown:
        parser.error(f"--only: unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    tasks = args.only or TASKS  # in the order given, so small tasks can go first
    for task in tasks:  # cheap: which tasks can be run at all (QNLI has only its dev file here)
        if has_data(Path(args.data_dir), task):
            results["cells"].pop(f"{task}/data", None)
        else:
            results["cells"][f"{task}/data"] = {"status": "no training data"}
    save_results(results)
    if not args.table_only:
        for task in (t for t in tasks if f"{t}/data" not in results["cells"]):
            for family in (*RECIPES, "latency"):
                key = f"{task}/{family}"
                if key in results["cells"] and task not in args.redo:
                    continue
                cell = (latency_cell(task, args, results) if family == "latency"
                        else run_recipe_cell(task, family, args))
                results["cells"][key] = cell
                save_results(results)  # each finished cell is kept, whatever happens next
    results["results"] = verdicts(results["cells"])
    save_results(results)
    argv = [a for a in sys.argv[1:] if a != "--table-only"]  # the command that makes the cells
    publish(BEGIN, END, render(results, argv=argv), args)


if __name__ == "__main__":
    main()
