"""Benchmark: ALBERT cross-layer parameter sharing (issue 14, part 2) -- a 2-layer student running one shared
block against the same 2-layer student with its own two layers, both distilled from the SST-2 MiniLM.

Both students are built by ``distilkit.run.distill.run`` from the same recipe, exactly as ``distilkit run``
builds them: a 2-layer copy of the fine-tuned MiniLM teacher of the other benchmarks (``bench_common``),
initialised from the same teacher layers (``init_from_teacher_layers: uniform``, layers 2 and 5 of 6). The
shared student (``student.share_layers: {group_size: all}``) starts from the element-wise average of those two
layers (``init: average``; ``--inits average first`` adds a student started from layer 2 alone). Same training
budget for all: the small-transformer budget of the GLUE recipes (``scripts/make_glue_recipes.py``: KL at T = 2,
lr 5e-5, warm-up 10%, weight decay 0.01, batch 32, 3 epochs on SST-2, gold labels mixed at alpha 0.5) on
``--transfer-examples`` train sentences (bench_distill's 20,000 by default). Accuracy: full SST-2 dev (872
sentences), best epoch. Weights MB: the saved ``model.safetensors``. Latency: the saved models reloaded and timed
interleaved in this process (``bench_common.interleaved_latency``), the teacher alongside.

Cells resume: each finished student is kept under ``<cache>/parameter_sharing/<budget>/<cell>/`` with its
``<cell>.json`` and is not trained again. Writes docs/results/parameter_sharing.json (no numeric target in the
issue: target and met are null) and a docs/benchmarks.md section.

    python scripts/bench_parameter_sharing.py --data-dir ../shared/glue                    # ~35-60 min, 2 cores
    python scripts/bench_parameter_sharing.py --data-dir ../shared/glue --quick --no-write   # smoke run, ~5 min

The full run is the teacher (~7 min unless cached by another benchmark), labelling 20,000 sentences once, and two
students of 3 x 20,000 examples each. ``distilkit`` must import this checkout (from another git worktree:
``PYTHONPATH=.``), since ``student.share_layers`` is new.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
from bench_common import (  # before transformers: it sets HF_HUB_OFFLINE
    ROOT,
    bench_parser,
    command_line,
    interleaved_latency,
    publish,
    require_sst2,
    sst2_minilm_teacher,
    sst2_splits,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.core.atomic import write_text_atomic
from distilkit.core.measure import MB, count_parameters, size_on_disk
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_parameter_sharing:begin -->", "<!-- bench_parameter_sharing:end -->"
RESULTS = ROOT / "docs" / "results" / "parameter_sharing.json"
MAX_LENGTH = 64


def student_tree(args, teacher_dir: Path, out: Path, share: dict | None) -> dict:
    """The recipe of one student: identical for every cell but ``student.share_layers``."""
    student = {"kind": "transformer", "max_length": MAX_LENGTH, "num_layers": args.layers,
               "init_from_teacher_layers": "uniform"}
    if share is not None:
        student["share_layers"] = share
    return {"task": "sst2", "output_dir": str(out),
            "data": {"dir": args.data_dir, "max_train_examples": args.transfer_examples,
                     **({"max_eval_examples": args.eval_examples} if args.eval_examples else {})},
            "teacher": {"model": str(teacher_dir), "max_length": MAX_LENGTH, "batch_size": 128},
            "student": student,
            "loss": {"kind": "kl", "temperature": 2.0, "alpha": args.alpha},
            "train": {"epochs": args.epochs, "batch_size": 32, "lr": args.lr, "warmup_ratio": 0.1,
                      "weight_decay": 0.01, "seed": 42, "keep_checkpoints": 1},
            "cache": {"dir": args.cache_dir}, "measure": {"latency": False}}


def cell(name: str, share: dict | None, args, teacher_dir: Path, cells: Path) -> dict:
    """Distil one student (or reuse the finished one) and return its accuracy, size and parameter count."""
    path = cells / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = cells / name
    shutil.rmtree(out, ignore_errors=True)
    print(f"--- cell {name}", flush=True)
    start = time.time()
    metrics = run(validate_recipe(student_tree(args, teacher_dir, out, share), source=f"cell {name}"))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # disk: only model/ is read again
    result = {"accuracy": metrics["student"]["metrics"]["accuracy"],
              "teacher_accuracy": metrics["teacher"]["metrics"]["accuracy"],
              "params": metrics["student"]["params"], "teacher_params": metrics["teacher"]["params"],
              "weights_bytes": size_on_disk(out / "model"), "model_dir": str(out / "model"),
              "share_layers": share, "seconds": round(time.time() - start, 1),
              "examples_per_second": metrics["train"].get("examples_per_second")}
    write_text_atomic(path, json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--layers", type=int, default=2, help="student depth (the shared student: one block)")
    parser.add_argument("--transfer-examples", type=int, default=20000, help="SST-2 train sentences distilled on")
    parser.add_argument("--eval-examples", type=int, default=None, help="dev sentences (default: all 872)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the gold-label loss")
    parser.add_argument("--inits", nargs="+", choices=["average", "first"], default=["average"],
                        help="initialisations of the shared block to train")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds")
    parser.add_argument("--finetune-examples", type=int, default=500, help="--quick only: the small teacher")
    args = parser.parse_args()
    if args.quick:
        args.transfer_examples, args.eval_examples, args.epochs, args.rounds = 300, 200, 1, 2
    require_sst2(args.data_dir)
    start = time.time()
    # --quick: MiniLM fine-tuned on a few hundred sentences for one epoch (the real teacher takes ~7 min).
    quick = {"epochs": 1, "max_examples": args.finetune_examples} if args.quick else None
    teacher_dir = sst2_minilm_teacher(args.data_dir, args.cache_dir, overrides=quick)
    budget = "quick" if args.quick else f"l{args.layers}-e{args.transfer_examples}x{args.epochs}-lr{args.lr:g}-a{args.alpha:g}"
    cells = Path(args.cache_dir) / "parameter_sharing" / budget
    cells.mkdir(parents=True, exist_ok=True)

    rows = {"unshared": cell("unshared", None, args, teacher_dir, cells)}
    for init in args.inits:
        rows[f"shared ({init})"] = cell(f"shared-{init}", {"group_size": "all", "init": init}, args, teacher_dir,
                                        cells)

    models = {"teacher": AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()}
    for label, row in rows.items():
        models[label] = AutoModelForSequenceClassification.from_pretrained(row["model_dir"]).eval()
        row["params_reloaded"] = count_parameters(models[label])  # what a user reloading model/ gets
    _, dev = sst2_splits(args.data_dir, eval_examples=64, seed=0)
    latency = interleaved_latency(models, AutoTokenizer.from_pretrained(teacher_dir), list(dev["text_a"]),
                                  MAX_LENGTH, args.rounds)
    total = time.time() - start

    base = rows["unshared"]
    teacher = {"accuracy": base["teacher_accuracy"], "params": base["teacher_params"],
               "weights_bytes": size_on_disk(teacher_dir)}
    lines = ["## Cross-layer parameter sharing (ALBERT) on SST-2 (issue 14)", "",
             command_line(total, details=(f"torch {torch.__version__}",),
                          note=" (finished students are reused from the benchmark cache)"), "",
             f"Students: {args.layers}-layer copies of the fine-tuned MiniLM (teacher layers "
             "`init_from_teacher_layers: uniform`), distilled with the small-transformer budget of the GLUE recipes "
             f"(KL, T = 2, alpha {args.alpha:g}, lr {args.lr:g}, warm-up 10%, batch 32) for {args.epochs} epoch(s) "
             f"on {args.transfer_examples:,} SST-2 train sentences; the shared students run one block "
             f"{args.layers} times (`student.share_layers: {{group_size: all}}`), started from the average of the "
             "two teacher layers or from the first. Parameters and MB count the shared block once (the reloaded "
             "model and its file); the 30,522 x 384 word embedding dominates both. Latency: reloaded models, "
             f"interleaved in one process over {args.rounds} rounds, max_length {MAX_LENGTH}.", "",
             "| model | params | weights MB | SST-2 dev acc | Δ vs unshared (pts) | b1 ms | b32 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| teacher (MiniLM-L6) | {teacher['params']:,} | {teacher['weights_bytes'] / MB:.2f} | "
             f"{teacher['accuracy']:.4f} | — | {latency['teacher']['b1']:.2f} | {latency['teacher']['b32']:.1f} |"]
    results = []
    for label, row in rows.items():
        delta = "—" if label == "unshared" else f"{100 * (row['accuracy'] - base['accuracy']):+.2f}"
        lines.append(f"| {label} | {row['params']:,} | {row['weights_bytes'] / MB:.2f} | {row['accuracy']:.4f} | "
                     f"{delta} | {latency[label]['b1']:.2f} | {latency[label]['b32']:.1f} |")
        for metric, value in (("accuracy", row["accuracy"]), ("params", row["params"]),
                              ("weights_mb", round(row["weights_bytes"] / MB, 3)),
                              ("latency_b1_ms", latency[label]["b1"]), ("latency_b32_ms", latency[label]["b32"])):
            results.append({"task": "sst2", "model": f"{args.layers}-layer MiniLM student, {label}",
                            "metric": metric, "value": value, "target": None, "met": None})
    speeds = ", ".join(f"{label} {row['examples_per_second'] or 0:,.0f}" for label, row in rows.items())
    lines += ["", f"Training throughput (examples/s): {speeds}; wall time per student: "
              + ", ".join(f"{label} {row['seconds'] / 60:.1f} min" for label, row in rows.items()) + "."]
    saved = base["params"] - min(row["params"] for row in rows.values())
    lines += ["", f"Sharing saves {saved:,} parameters ({saved / base['params']:.1%} of the unshared student) and the "
              "same share of weight bytes; it cannot save time, since every layer still runs. No numeric target in "
              "the issue: the results file records the values with target and met null.", ""]
    publish(BEGIN, END, lines, args)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(RESULTS, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
