"""Benchmark: LoRA recovery vs full recovery of compressed MiniLM students on SST-2 (issue 15).

Two compressed students of the fine-tuned SST-2 MiniLM of the other benchmarks (``bench_common``):

* **int4**: a copy of the MiniLM trained through int4 fake-quantized weights (QAT, as in
  ``bench_quantize.py`` and ``bench_deep_compression.py``'s int4 cells) and converted to int4 after training;
* **pruned**: the MiniLM with 50% of its attention heads and 50% of its FFN neurons removed structurally
  (Michel et al. importance, as in ``bench_prune.py``).

Each is recovered by KL distillation (T = 2) from the fp32 teacher in three ways, each one recipe run by
:func:`distilkit.run.distill.run` exactly as ``distilkit run`` runs it: **none** (``train.epochs: 0``, the
compressed model as built), **full** (every weight trains; ``--full-lr``) and **lora** (``train.lora``: the
compressed weights frozen, rank-``--rank`` adapters on every query/key/value/dense linear plus the
classification head train; ``--lora-lr``). Full and LoRA cells see the same sentences, epochs and batch size.

Reported per cell: dev accuracy (all 872 SST-2 dev sentences, the model as saved and reloaded, the LoRA int4
student with its ``model/adapter`` attached), trainable parameters, peak memory and wall time. **Peak memory is
the peak resident set size (``ru_maxrss``) of a fresh Python process that runs only that cell** (so it
includes the interpreter, torch and the teacher, which every cell loads the same way; differences between
cells are the student's weights, gradients and AdamW state). Wall time is the whole cell; ``train s`` is the
training loop alone.

Target (LoftQ, Li et al. 2023, and LoRA, Hu et al. 2021): LoRA recovery within 0.5 points of full recovery
with at most 10% of its trainable parameters, per student.

Cells resume: each finished cell is written to ``<cache>/lora_recovery/<budget>/<cell>.json`` and skipped by
the next run. Writes docs/results/lora_recovery.json and a docs/benchmarks.md section.

    python scripts/bench_lora_recovery.py --data-dir ../shared/glue
    python scripts/bench_lora_recovery.py --data-dir ../shared/glue --quick --no-write
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_common import ROOT, bench_parser, command_line, publish, require_sst2, sst2_minilm_teacher

from distilkit.core.atomic import write_text_atomic
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_lora_recovery:begin -->", "<!-- bench_lora_recovery:end -->"
RESULTS = ROOT / "docs" / "results" / "lora_recovery.json"
MAX_LENGTH = 64
TARGET_POINTS, TARGET_FRACTION = 0.5, 0.10
STUDENTS = {
    "int4": {"student": {"kind": "copy", "max_length": MAX_LENGTH}, "quantize": {"linear": "int4", "qat": True}},
    "pruned": {"student": {"kind": "pruned", "max_length": MAX_LENGTH, "heads": 0.5, "ffn": 0.5,
                           "importance_examples": 512}},
}
LABELS = {"int4": "MiniLM int4 (QAT)", "pruned": "MiniLM 50% heads + 50% FFN pruned"}
MODES = ("none", "full", "lora")


def cell_tree(args, teacher_dir: Path, student: str, mode: str, out: Path) -> dict:
    """The recipe of one cell: the same data, epochs and batches for full and LoRA; only lr differs."""
    tree = {"task": "sst2", "output_dir": str(out),
            "data": {"dir": args.data_dir, "max_train_examples": args.examples,
                     "max_eval_examples": args.eval_examples},
            "teacher": {"model": str(teacher_dir), "max_length": MAX_LENGTH, "batch_size": 128},
            "loss": {"kind": "kl", "temperature": 2.0, "alpha": 0.0},
            "train": {"epochs": 0 if mode == "none" else args.epochs, "batch_size": 32,
                      "lr": args.lora_lr if mode == "lora" else args.full_lr, "warmup_ratio": 0.05,
                      "keep_checkpoints": 1},
            "cache": {"dir": args.cache_dir}, "measure": {"latency": False}, **STUDENTS[student]}
    if mode == "none" and "quantize" in tree:  # nothing trains: post-training int4 of the copy
        tree["quantize"] = {"linear": "int4"}
    if args.quick and student == "pruned":
        tree["student"] = {**tree["student"], "importance_examples": 64}
    if mode == "lora":
        tree["train"]["lora"] = {"r": args.rank, "alpha": 2.0 * args.rank, "dropout": 0.0}
    return tree


def run_cell(args, name: str, out_json: Path) -> None:
    """Child process: run one cell and write its result (with this process's own peak RSS)."""
    student, mode = name.split("-")
    # --quick: a MiniLM fine-tuned on 160 sentences (the shared teacher takes ~7 min to fine-tune).
    quick = {"epochs": 1, "batch_size": 16, "max_examples": 160} if args.quick else None
    teacher_dir = sst2_minilm_teacher(args.data_dir, args.cache_dir, overrides=quick)
    out = Path(args.cache_dir) / "lora_recovery" / "runs" / name
    shutil.rmtree(out, ignore_errors=True)
    start = time.time()
    metrics = run(validate_recipe(cell_tree(args, teacher_dir, student, mode, out), source=f"cell {name}"))
    seconds = time.time() - start
    lora_report = out / "model" / "lora.json"
    if lora_report.is_file():
        trainable = json.loads(lora_report.read_text())["trainable_parameters"]
    elif mode == "full":  # every weight of the float student trains
        from distilkit.models.inference import load_saved

        float_dir = out / "model-float" if (out / "model-float").is_dir() else out / "model"
        model, _ = load_saved(float_dir, tokenizer=False)
        trainable = sum(p.numel() for p in model.parameters())
    else:
        trainable = 0
    result = {"student": student, "mode": mode, "accuracy": metrics["student"]["metrics"]["accuracy"],
              "teacher_accuracy": metrics["teacher"]["metrics"]["accuracy"],
              "params": metrics["student"]["params"], "trainable_parameters": trainable,
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "seconds": round(seconds, 1), "train_seconds": metrics["train"]["seconds"],
              "examples": args.examples, "epochs": 0 if mode == "none" else args.epochs,
              "lr": None if mode == "none" else (args.lora_lr if mode == "lora" else args.full_lr)}
    write_text_atomic(out_json, json.dumps(result, indent=1))
    shutil.rmtree(out, ignore_errors=True)


def cell(args, name: str, cells: Path) -> dict:
    """A finished cell's result, or run it in a fresh process (so its peak RSS is its own)."""
    path = cells / f"{name}.json"
    if not path.is_file():
        print(f"--- cell {name}", flush=True)
        # The child runs this cell's rank alone (a later --rank replaces the list given before it).
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--rank", str(args.rank), "--cell", name,
                        "--cell-out", str(path)],
                       check=True)
    return json.loads(path.read_text())


def report(args, table: dict, total: float) -> tuple[list[str], list[dict]]:
    """The docs/benchmarks.md section (one table, then one verdict per student) and the results rows."""
    import peft
    import torch
    import transformers

    teacher = ("a quick MiniLM fine-tuned on 160 sentences (--quick)" if args.quick
               else "all-MiniLM-L6-v2 fine-tuned on SST-2 (`bench_common`)")
    lines = [
        "## LoRA recovery vs full recovery of compressed MiniLM students, SST-2 (issue 15)", "",
        command_line(total, details=(f"torch {torch.__version__}", f"transformers {transformers.__version__}",
                                     f"peft {peft.__version__}"),
                     note=" (finished cells are reused from the benchmark cache; each cell's own time is in its row)"),
        "",
        f"Teacher: {teacher}. Recovery: {args.epochs} epoch(s) of KL "
        f"distillation (T = 2) from the fp32 teacher on {args.examples:,} SST-2 train sentences, batch 32, for "
        f"full (lr {args.full_lr:g}, every weight) and LoRA (lr {args.lora_lr:g}; `train.lora` rank {args.rank}, "
        f"alpha {2 * args.rank}, on every query/key/value/dense linear; the adapters and the classification head "
        "train, the compressed weights are frozen). int4: QAT copy converted to int4 after training (LoRA's "
        "adapters kept beside the integers in `model/adapter/`); pruned: 50% of heads and 50% of FFN neurons "
        "removed structurally (LoRA merged into the weights). none: the compressed model as built. Accuracy: "
        f"{'all 872' if args.eval_examples is None else args.eval_examples} SST-2 dev sentences, model reloaded "
        "from disk. Peak memory: peak RSS (`ru_maxrss`) of a fresh process running only that cell (interpreter, "
        "torch and the teacher included).", "",
        "| student | recovery | dev acc | Δ vs full (pts) | trainable params | % of full | peak RSS MB | wall s | "
        "train s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    verdicts, results = [""], []
    for s in args.students:
        full = table[(s, "full")]
        for m in MODES:
            r = table[(s, m)]
            delta = 100 * (r["accuracy"] - full["accuracy"])
            share = 100 * r["trainable_parameters"] / max(full["trainable_parameters"], 1)
            lines.append(f"| {LABELS[s]} | {m} | {r['accuracy']:.4f} | {delta:+.2f} | {r['trainable_parameters']:,} | "
                         f"{share:.1f}% | {r['peak_rss_mb']:,.0f} | {r['seconds']:.0f} | {r['train_seconds']:.0f} |")
        lora = table[(s, "lora")]
        gap = round(100 * (full["accuracy"] - lora["accuracy"]), 2)
        fraction = lora["trainable_parameters"] / max(full["trainable_parameters"], 1)
        met = gap <= TARGET_POINTS and fraction <= TARGET_FRACTION
        model = f"{LABELS[s]}, LoRA rank {args.rank} recovery"
        results += [
            {"task": "sst2", "model": model, "metric": "accuracy points below full recovery",
             "value": gap, "target": TARGET_POINTS, "met": gap <= TARGET_POINTS},
            {"task": "sst2", "model": model, "metric": "trainable parameters / full",
             "value": round(fraction, 4), "target": TARGET_FRACTION, "met": fraction <= TARGET_FRACTION},
            {"task": "sst2", "model": model, "metric": "dev accuracy",
             "value": lora["accuracy"], "target": round(full["accuracy"] - TARGET_POINTS / 100, 4), "met": met}]
        verdicts.append(f"- {LABELS[s]}: LoRA {lora['accuracy']:.4f} vs full {full['accuracy']:.4f} ({-gap:+.2f} "
                        f"pts) with {fraction:.1%} of the trainable parameters; target within {TARGET_POINTS} pts "
                        f"with ≤ {TARGET_FRACTION:.0%}: **{'met' if met else 'missed'}**.")
    return [*lines, *verdicts, ""], results


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--examples", type=int, default=4000, help="SST-2 train sentences per recovery cell")
    parser.add_argument("--epochs", type=int, default=1, help="recovery epochs (full and LoRA alike)")
    parser.add_argument("--eval-examples", type=int, default=None, help="dev sentences (default: all 872)")
    parser.add_argument("--full-lr", type=float, default=1e-4, help="learning rate of full recovery")
    parser.add_argument("--lora-lr", type=float, default=1e-3, help="learning rate of LoRA recovery")
    parser.add_argument("--rank", type=int, nargs="+", default=[16, 32],
                        help="LoRA ranks r (alpha = 2r): one table each (the full and none cells are shared)")
    parser.add_argument("--students", nargs="+", choices=list(STUDENTS), default=list(STUDENTS))
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    parser.add_argument("--cell-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.examples, args.eval_examples = 160, 64
    if args.cell:
        args.rank = args.rank[-1]
        run_cell(args, args.cell, Path(args.cell_out))
        return
    require_sst2(args.data_dir)
    start = time.perf_counter()
    if not args.quick:
        sst2_minilm_teacher(args.data_dir, args.cache_dir)  # fine-tuned once, before the cells share it
    ranks, sections, results = list(args.rank), [], []
    for rank in ranks:  # one table per rank; each rank's cells live in their own folder and resume
        args.rank = rank
        budget = f"quick-r{rank}" if args.quick else f"e{args.examples}x{args.epochs}-r{rank}-lr{args.full_lr}-{args.lora_lr}"
        cells = Path(args.cache_dir) / "lora_recovery" / budget
        cells.mkdir(parents=True, exist_ok=True)
        table = {(s, m): cell(args, f"{s}-{m}", cells) for s in args.students for m in MODES}
        lines, rows = report(args, table, time.perf_counter() - start)
        sections.append((lines[:4], [f"### LoRA rank {rank}", "", *lines[4:]]))
        results += rows
    # The header (title, command and total time) once, from the last report; then each rank's table.
    publish(BEGIN, END, [*sections[-1][0], *(line for _, body in sections for line in body)], args, results,
            RESULTS)
    print(f"--- wrote {'nothing (--no-write)' if args.no_write else RESULTS}")


if __name__ == "__main__":
    main()
