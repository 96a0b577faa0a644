"""Benchmark: does Tang et al.'s augmented transfer set help a BiLSTM student? (issue 3)

Three BiLSTM students, same architecture and optimiser, on the same random SST-2 train sentences, scored on
the full SST-2 dev set, side by side in one run:

  (a) gold labels only (cross-entropy, ``loss.alpha: 1``),
  (b) the MiniLM teacher's logits on those sentences (MSE, no gold labels),
  (c) the teacher's logits on the augmented transfer set built from them (masking, POS-guided replacement,
      n-gram sampling; ``data.augment``), no gold labels.

    python scripts/bench_augment.py --data-dir ../shared/glue
    python scripts/bench_augment.py --data-dir ../shared/glue --quick     # smoke run
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench_common import FINETUNE, TEACHER_EXAMPLES, bench_parser, command_line, publish, require_sst2

from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_augment:begin -->", "<!-- bench_augment:end -->"


def recipe(out: Path, args, **sections) -> dict:
    tree = {
        "task": "sst2",
        "output_dir": str(out),
        "data": {"dir": args.data_dir, "max_train_examples": args.examples},
        "teacher": {"model": "minilm", "max_length": 64, "batch_size": 128,
                    "finetune": {**FINETUNE, "max_examples": TEACHER_EXAMPLES}},
        "student": {"kind": "bilstm", "max_length": 64, "hidden_size": 300, "mlp_hidden_size": 400},
        "loss": {"kind": "mse", "alpha": 0.0},
        "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "keep_checkpoints": 1},
        "cache": {"dir": args.cache_dir},
        "measure": {"latency": False},
    }
    for key, value in sections.items():
        tree[key] = {**tree[key], **value}
    return tree


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--examples", type=int, default=2000, help="original SST-2 train sentences")
    parser.add_argument("--n-iter", type=int, default=20, help="augmented samples per sentence (Tang: 20)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of (a) and (b) over the originals")
    parser.add_argument("--augmented-epochs", type=int, default=2, help="epochs of (c) over the transfer set")
    args = parser.parse_args()
    if args.quick:
        args.examples, args.n_iter, args.epochs, args.augmented_epochs = 300, 4, 2, 1
    require_sst2(args.data_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-augment-"))
    start = time.perf_counter()

    gold = run(validate_recipe(recipe(work / "gold", args, loss={"alpha": 1.0})))
    logits = run(validate_recipe(recipe(work / "logits", args, data={"labels": "none"})))
    augmented = run(validate_recipe(recipe(
        work / "augmented", args, train={"epochs": args.augmented_epochs},
        data={"labels": "none", "augment": {"n_iter": args.n_iter, "seed": 0}})))
    total = time.perf_counter() - start

    teacher_acc = gold["teacher"]["metrics"]["accuracy"]
    rows = [("(a) gold labels", gold, args.epochs), ("(b) teacher logits", logits, args.epochs),
            ("(c) teacher logits, augmented", augmented, args.augmented_epochs)]
    counts = augmented["train"]["augment"]
    build_s = counts["seconds"] if not counts["hit"] else float("nan")
    lines = [
        BEGIN,
        "## Augmentation: Tang et al. transfer set for a BiLSTM student on SST-2 (issue 3)",
        "",
        command_line(total),
        "",
        f"Teacher: MiniLM fine-tuned on SST-2 (see the distillation section), dev accuracy {teacher_acc:.4f}. "
        f"Students: the same BiLSTM, trained on {args.examples:,} random SST-2 train sentences; evaluated on the "
        "full SST-2 dev set (872 sentences), best epoch. The transfer set uses Tang et al.'s rules with "
        f"p_mask = p_pos = 0.1, p_ng = 0.25, n_iter = {args.n_iter}; POS tags from `{counts['tagger']}`.",
        "",
        "| student trained on | rows | epochs | examples seen | dev accuracy | retained of teacher |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m, epochs in rows:
        acc = m["student"]["metrics"]["accuracy"]
        lines.append(f"| {name} | {m['train']['examples']:,} | {epochs} | {m['train']['examples_seen']:,} | "
                     f"{acc:.4f} | {acc / teacher_acc:.3f} |")
    acc_a, acc_b, acc_c = (m["student"]["metrics"]["accuracy"] for _, m, _ in rows)
    verdict = ("met" if acc_c > max(acc_a, acc_b) and acc_c / teacher_acc >= 0.95 else "NOT met")
    lines += [
        "",
        f"Transfer set: {counts['original']:,} originals + {counts['kept']:,} new sentences kept of "
        f"{counts['generated']:,} generated (duplicates dropped) = {counts['total']:,} rows; built (POS tagging "
        f"included) in {build_s:.1f} s, labelled by the teacher in "
        f"{augmented['train']['teacher_labelling_seconds']:.0f} s.",
        "",
        f"Target ((c) beats (a) and (b) and retains ≥ 95% of the teacher): **{verdict}** "
        f"((c) − (b) = {acc_c - acc_b:+.4f}, (c) − (a) = {acc_c - acc_a:+.4f}, retained {acc_c / teacher_acc:.3f}).",
        END,
    ]
    publish(BEGIN, END, lines[1:-1], args)


if __name__ == "__main__":
    main()
