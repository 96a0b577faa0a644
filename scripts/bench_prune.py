"""Benchmark: accuracy vs. fraction of attention heads pruned, MiniLM fine-tuned on SST-2 (issue 4).

For each fraction of the teacher's 72 heads (ranked globally by Michel et al. 2019 importance, computed on
``--importance-examples`` train sentences against the teacher's predictions), side by side in one run:

  * one-shot: pruned, no recovery (``train.epochs: 0``),
  * recovered: pruned, then distilled from the unpruned teacher for 1 epoch on ``--recovery-examples``
    train sentences (KL on teacher logits, no gold labels),

on the full SST-2 dev set; plus parameters and CPU latency (batch 1 and 32, interleaved with the unpruned
teacher) of the recovered models. Writes docs/figures/prune_heads_sst2.png and a docs/benchmarks.md section.

    python scripts/bench_prune.py --data-dir ../shared/glue
    python scripts/bench_prune.py --data-dir ../shared/glue --quick
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench_common import (
    ROOT,
    bench_parser,
    command_line,
    interleaved_latency,
    publish,
    pyplot,
    require_sst2,
    sst2_minilm_teacher,
    sst2_splits,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.core.measure import count_parameters
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_prune:begin -->", "<!-- bench_prune:end -->"
MAX_LENGTH = 64
FIGURE = ROOT / "docs" / "figures" / "prune_heads_sst2.png"


def prune_recipe(out: Path, teacher_dir: Path, args, fraction: float, recover: bool) -> dict:
    return {
        "task": "sst2", "output_dir": str(out),
        "data": {"dir": args.data_dir, "max_train_examples": args.recovery_examples},
        "teacher": {"model": str(teacher_dir), "max_length": MAX_LENGTH, "batch_size": 128},
        "student": {"kind": "pruned", "max_length": MAX_LENGTH, "heads": fraction,
                    "importance_examples": args.importance_examples},
        "loss": {"kind": "kl", "temperature": 2.0, "alpha": 0.0},
        "train": {"epochs": 1 if recover else 0, "batch_size": 32, "lr": args.lr, "warmup_ratio": 0.1,
                  "keep_checkpoints": 1},
        "cache": {"dir": args.cache_dir}, "measure": {"latency": False},
    }


def plot(rows: list[dict], teacher_acc: float, path: Path) -> None:
    plt = pyplot()
    x = [100 * r["fraction"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot(x, [100 * r["one_shot"] for r in rows], "o--", label="one-shot (no recovery)")
    ax.plot(x, [100 * r["recovered"] for r in rows], "o-", label="pruned + recovery distillation")
    ax.axhline(100 * teacher_acc, color="grey", lw=0.8, label="unpruned teacher")
    ax.axhline(100 * teacher_acc - 1, color="grey", lw=0.8, ls=":", label="teacher - 1 point")
    ax.set_xlabel("attention heads removed (%)")
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.set_title("MiniLM-L6 fine-tuned on SST-2: structured head pruning")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument("--importance-examples", type=int, default=512)
    parser.add_argument("--recovery-examples", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    args = parser.parse_args()
    if args.quick:
        args.fractions, args.importance_examples, args.recovery_examples, args.rounds = [0.4], 64, 128, 2
    require_sst2(args.data_dir)
    start = time.perf_counter()
    _, dev = sst2_splits(args.data_dir)
    teacher_dir = sst2_minilm_teacher(args.data_dir, args.cache_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-prune-"))
    rows, models = [], {"unpruned": AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()}
    teacher_acc = None
    for fraction in args.fractions:
        name = f"{round(100 * fraction)}%"
        one_shot = run(validate_recipe(prune_recipe(work / f"oneshot-{name}", teacher_dir, args, fraction, False)))
        recovered = run(validate_recipe(prune_recipe(work / f"recovered-{name}", teacher_dir, args, fraction, True)))
        teacher_acc = recovered["teacher"]["metrics"]["accuracy"]
        config = json.loads((work / f"recovered-{name}" / "model" / "config.json").read_text())
        models[name] = AutoModelForSequenceClassification.from_pretrained(work / f"recovered-{name}" / "model").eval()
        rows.append({"fraction": fraction, "name": name, "heads": config["distilkit_pruning"]["heads"],
                     "one_shot": one_shot["student"]["metrics"]["accuracy"],
                     "recovered": recovered["student"]["metrics"]["accuracy"],
                     "params": count_parameters(models[name]),
                     "recovery_s": recovered["train"]["seconds"]})
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    latency = interleaved_latency(models, tokenizer, list(dev["text_a"]), MAX_LENGTH, args.rounds)
    total = time.perf_counter() - start
    base, base_params = latency["unpruned"], count_parameters(models["unpruned"])
    rows = [{"fraction": 0.0, "name": "0%", "heads": [12] * 6, "one_shot": teacher_acc, "recovered": teacher_acc,
             "params": base_params, "recovery_s": 0.0}] + rows
    latency["0%"] = base
    if not args.no_write:
        plot(rows, teacher_acc, FIGURE)

    lines = [
        BEGIN,
        "## Pruning: accuracy vs. attention heads removed, MiniLM on SST-2 (issue 4)",
        "",
        command_line(total),
        "",
        "Teacher: all-MiniLM-L6-v2 fine-tuned on SST-2 (6 layers × 12 heads). Heads ranked globally by Michel et "
        f"al. (2019) gate-gradient importance on {args.importance_examples} train sentences (labels: the "
        "teacher's predictions), removed structurally (q/k/v rows and output columns sliced; no layer emptied). "
        f"Recovery: 1 epoch of KL distillation from the unpruned teacher on {args.recovery_examples:,} train "
        "sentences. Accuracy: full SST-2 dev (872). Latency: max_length "
        f"{MAX_LENGTH}, interleaved with the unpruned model over {args.rounds} rounds. Every pruned model was "
        "saved and reloaded with `AutoModelForSequenceClassification.from_pretrained`.",
        "",
        f"![accuracy vs heads pruned](figures/{FIGURE.name})",
        "",
        "| heads removed | heads per layer | params | params ratio | b1 ms | faster b1 | b32 ms | faster b32 | "
        "one-shot acc | recovered acc | Δ recovered (pts) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lat = latency[r["name"]]
        lines.append(
            f"| {r['name']} | {'/'.join(map(str, r['heads']))} | {r['params']:,} | {base_params / r['params']:.2f}× | "
            f"{lat['b1']:.2f} | {base['b1'] / lat['b1']:.2f}× | {lat['b32']:.1f} | {base['b32'] / lat['b32']:.2f}× | "
            f"{r['one_shot']:.4f} | {r['recovered']:.4f} | {100 * (r['recovered'] - teacher_acc):+.2f} |")
    at40 = next((r for r in rows if abs(r["fraction"] - 0.4) < 1e-9), None)
    if at40 is not None:
        lat = latency[at40["name"]]
        ok = teacher_acc - at40["recovered"] <= 0.01 and base["b1"] / lat["b1"] > 1 and base["b32"] / lat["b32"] > 1
        lines += ["", f"Target (40% of heads removed, within 1 point of the unpruned accuracy after recovery, "
                  f"measured speedup): **{'met' if ok else 'NOT met'}** ({100 * (at40['recovered'] - teacher_acc):+.2f} "
                  f"points, {base['b1'] / lat['b1']:.2f}× at batch 1, {base['b32'] / lat['b32']:.2f}× at batch 32)."]
    lines.append(END)
    publish(BEGIN, END, lines[1:-1], args)


if __name__ == "__main__":
    main()
