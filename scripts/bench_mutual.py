"""Benchmark: a BiLSTM distilled from MiniLM alone vs with deep mutual learning (issue 24, ``loss.mutual``).

The teacher is all-MiniLM-L6-v2 fine-tuned on SST-2 with the benchmarks' shared settings
(``bench_common.sst2_minilm_teacher``, seed 42: every benchmark's cached teacher). The same Tang et al. BiLSTM as
bench_ensemble.py (64-d word vectors PCA-projected from the teacher's, 150 hidden per direction, 128-unit ReLU
layer, vocabulary trimmed to 6,000 tokens) is distilled with the same budget (transfer set, epochs, batch,
learning rate, seed, loss T^2 KL at T = 2)

* alone (the plain recipe), and
* with ``loss.mutual`` (Zhang et al. 2018): ``K - 1`` peer BiLSTMs (their LSTM and MLP drawn from seeds
  ``seed + k``) trained beside it, each student also distilling from the others' predictions; the main student
  is scored as always, and the peers' own scores come from the run's ``mutual.json``.

Every cell is one recipe run by :func:`distilkit.run.distill.run`, all sharing the teacher's cached logits.
Target: the mutually trained main student scores above the one trained alone (one student seed per row: a few
tenths of a point are within seed noise). Cells resume: each finished cell is written to
``<cache>/mutual/<budget>/<cell>.json`` and skipped by the next run. Writes docs/results/mutual.json and a
docs/benchmarks.md section.

    python scripts/bench_mutual.py --data-dir ../shared/glue
    python scripts/bench_mutual.py --data-dir ../shared/glue --quick --no-write
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

# The checkout's distilkit (loss.mutual is new), not whichever copy is installed: the script is run from any
# worktree as ``python scripts/bench_mutual.py``, which puts only scripts/ on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import (  # noqa: E402
    ROOT,
    bench_parser,
    command_line,
    git_commit,
    publish,
    require_sst2,
    sst2_minilm_teacher,
)

from distilkit.core.atomic import write_text_atomic  # noqa: E402
from distilkit.run.distill import run  # noqa: E402
from distilkit.run.recipe_io import validate_recipe  # noqa: E402

BEGIN, END = "<!-- bench_mutual:begin -->", "<!-- bench_mutual:end -->"
RESULTS = ROOT / "docs" / "results" / "mutual.json"
TARGET_GAIN = 0.0
#: ``--quick``: a tiny teacher (fine-tuned on 200 sentences for one epoch), only to check the script end to end.
QUICK_FINETUNE = {"max_examples": 200, "epochs": 1}


def recipe_tree(args, teacher: Path, out: Path, students: int | None) -> dict:
    """The recipe of one cell: the same student and budget, with or without peers."""
    tree = {"task": "sst2", "output_dir": str(out),
            "data": {"dir": args.data_dir, "max_train_examples": args.examples},
            "teacher": {"model": str(teacher), "max_length": 64, "batch_size": 128},
            "student": {"kind": "bilstm", "max_length": 64, "embedding_dim": args.embedding_dim,
                        "hidden_size": args.hidden_size, "mlp_hidden_size": args.mlp_hidden_size,
                        "init_embeddings_from_teacher": "pca", "vocab": {"max_tokens": args.max_tokens}},
            "loss": {"kind": "kl", "temperature": args.temperature, "alpha": 0.0},
            "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "keep_checkpoints": 1,
                      "seed": args.seed},
            "cache": {"dir": args.cache_dir}, "measure": {"latency": False}}
    if students is not None:
        tree["loss"]["mutual"] = {"students": students, "weight": args.weight, "temperature": args.mutual_temperature}
    return tree


def cell(name: str, tree: dict, cells: Path, commit: str) -> dict:
    """Run one recipe (or reuse its finished result) and keep what the table needs."""
    path = cells / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    print(f"--- cell {name}", flush=True)
    start = time.time()
    metrics = run(validate_recipe(tree, source=f"cell {name}"))
    out = Path(tree["output_dir"])
    mutual = json.loads((out / "mutual.json").read_text()) if (out / "mutual.json").is_file() else None
    result = {"accuracy": metrics["student"]["metrics"]["accuracy"],
              "teacher_accuracy": metrics["teacher"]["metrics"]["accuracy"],
              "peers": [p["metrics"]["accuracy"] for p in mutual["peers"]] if mutual else [],
              "best_epoch": metrics["student"].get("best_epoch"), "params": metrics["student"]["params"],
              "examples": metrics["train"]["examples"], "seconds": round(time.time() - start, 1),
              "commit": commit}
    write_text_atomic(path, json.dumps(result, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    return result


def report(args, alone: dict, cohorts: dict[int, dict], total: float) -> tuple[list[str], list[dict]]:
    """The docs section (lines) and docs/results/mutual.json rows from the cells' results."""
    commits = sorted({alone["commit"], *(c["commit"] for c in cohorts.values())})
    lines = ["## Mutual learning: a BiLSTM from MiniLM alone vs in a cohort of students on SST-2 (issue 24)", "",
             command_line(total, details=(f"commit {', '.join(commits)}",),
                          note=" (the teacher and finished cells are reused from the benchmark cache)"), "",
             f"Budget of every student (same in each row): {args.examples:,} SST-2 train sentences (the teacher's "
             f"logits, no gold labels), {args.epochs} epochs, batch 50, lr 1e-3, seed {args.seed}; BiLSTM with "
             f"{args.embedding_dim}-d word vectors PCA-projected from the teacher's, {args.hidden_size} hidden per "
             f"direction, {args.mlp_hidden_size}-unit ReLU layer, vocabulary trimmed to {args.max_tokens:,} tokens; "
             f"loss T² · KL to the teacher at T = {args.temperature:g}. Mutual learning (Zhang et al. 2018, "
             f"`loss.mutual`): each student adds {args.weight:g} × the mean T² · KL (T = "
             f"{args.mutual_temperature:g}) from the other students' predictions to its own; peer k starts from "
             f"seed {args.seed} + k (LSTM and MLP; the same teacher word vectors). Teacher: all-MiniLM-L6-v2 "
             "fine-tuned on SST-2 with `bench_common.sst2_minilm_teacher` ("
             + ("--quick: 1 epoch on 200 train sentences" if args.quick else "2 epochs on 8,000 train sentences")
             + f", max_length 64), dev accuracy {alone['teacher_accuracy']:.4f}. Accuracies on the full SST-2 dev set "
             "(872 sentences); the main student is its best epoch, peers as trained at the end.", "",
             "| student | dev acc | Δ vs alone (points) | peers' dev acc | student params | cell s |",
             "| --- | ---: | ---: | --- | ---: | ---: |",
             f"| BiLSTM alone | {alone['accuracy']:.4f} | 0.00 | — | {alone['params']:,} | {alone['seconds']:.0f} |"]
    results = [{"task": "sst2", "model": "MiniLM (teacher)", "metric": "dev accuracy",
                "value": alone["teacher_accuracy"], "target": None, "met": None},
               {"task": "sst2", "model": "BiLSTM alone", "metric": "dev accuracy", "value": alone["accuracy"],
                "target": None, "met": None}]
    verdicts = []
    for students, result in cohorts.items():
        gain = result["accuracy"] - alone["accuracy"]
        lines.append(f"| BiLSTM, mutual learning with {students} students | {result['accuracy']:.4f} | "
                     f"{100 * gain:+.2f} | " + ", ".join(f"{a:.4f}" for a in result["peers"])
                     + f" | {result['params']:,} | {result['seconds']:.0f} |")
        met = gain > TARGET_GAIN
        results.append({"task": "sst2", "model": f"BiLSTM, mutual learning ({students} students)",
                        "metric": "dev accuracy", "value": result["accuracy"], "target": None, "met": None})
        results.append({"task": "sst2", "model": f"BiLSTM, mutual learning ({students} students)",
                        "metric": "dev accuracy gain over the BiLSTM trained alone (points)",
                        "value": round(100 * gain, 2), "target": 100 * TARGET_GAIN, "met": met})
        for k, accuracy in enumerate(result["peers"], start=1):
            results.append({"task": "sst2", "model": f"BiLSTM peer {k} of the {students}-student cohort",
                            "metric": "dev accuracy", "value": accuracy, "target": None, "met": None})
        verdicts.append(f"**{'met' if met else 'missed'}** with {students} students: {result['accuracy']:.4f} "
                        f"against {alone['accuracy']:.4f} alone ({100 * gain:+.2f} points)")
    lines += ["", "Target (the mutually trained main BiLSTM above the one trained alone): " + "; ".join(verdicts)
              + ". One student seed per row: differences of a few tenths of a point are within seed noise."]
    return lines, results


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--students", type=int, nargs="+", default=[2], help="cohort sizes K (each >= 2), one row each")
    parser.add_argument("--examples", type=int, default=20000, help="SST-2 train sentences in the transfer set")
    parser.add_argument("--epochs", type=int, default=3, help="student epochs (every cell)")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--hidden-size", type=int, default=150)
    parser.add_argument("--mlp-hidden-size", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--temperature", type=float, default=2.0, help="KL temperature to the teacher")
    parser.add_argument("--weight", type=float, default=1.0, help="loss.mutual.weight")
    parser.add_argument("--mutual-temperature", type=float, default=1.0, help="loss.mutual.temperature")
    parser.add_argument("--seed", type=int, default=42, help="student seed (same in every cell)")
    args = parser.parse_args()
    overrides = None
    if args.quick:
        args.examples, args.epochs, args.max_tokens, overrides = 300, 1, 2000, QUICK_FINETUNE
    require_sst2(args.data_dir)
    start, commit = time.time(), git_commit()
    budget = "quick" if args.quick else f"e{args.examples}x{args.epochs}-h{args.hidden_size}-s{args.seed}"
    mutual = f"w{args.weight:g}-t{args.mutual_temperature:g}"
    cells = Path(args.cache_dir) / "mutual" / budget
    work = Path(args.cache_dir) / "mutual" / "runs"
    cells.mkdir(parents=True, exist_ok=True)

    teacher = sst2_minilm_teacher(args.data_dir, args.cache_dir, overrides=overrides)
    alone = cell("alone", recipe_tree(args, teacher, work / "alone", None), cells, commit)
    cohorts = {k: cell(f"mutual-k{k}-{mutual}", recipe_tree(args, teacher, work / f"mutual-k{k}", k), cells, commit)
               for k in args.students}
    total = time.time() - start

    lines, results = report(args, alone, cohorts, total)
    publish(BEGIN, END, lines, args, results, RESULTS)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
