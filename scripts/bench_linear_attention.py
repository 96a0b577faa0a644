"""Benchmark: linear-attention variants vs softmax attention (issue 6).

1. The attention operation alone (MiniLM's shape: 12 heads x 32 dims, batch 1, a padding mask), at sequence
   lengths 128 ... 4096: CPU latency (median, variants interleaved) and peak memory (resident-set growth of a
   fresh process running one forward pass). MiniLM's position table stops at 512 tokens, so long inputs are
   measured on the operation every layer runs, not on the whole encoder.
2. SST-2 dev accuracy of the MiniLM teacher with each variant swapped in, before recovery and after 1 epoch
   of distillation from the softmax model on ``--recovery-examples`` train sentences: logits (KL, T = 2) plus
   per-layer attention transfer (``--attention-weight``), new feature maps at ``--feature-lr``.

Writes docs/figures/linear_attention_latency.png and a docs/benchmarks.md section.

    python scripts/bench_linear_attention.py --data-dir ../shared/glue
    python scripts/bench_linear_attention.py --data-dir ../shared/glue --quick
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_common import ROOT, bench_parser, command_line, publish, pyplot, require_sst2, sst2_minilm_teacher

from distilkit.methods.linear_attention.linear import VARIANTS, linear_attention, self_attentions
from distilkit.methods.linear_attention.swap import swap_attention
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_linear_attention:begin -->", "<!-- bench_linear_attention:end -->"
FIGURE = ROOT / "docs" / "figures" / "linear_attention_latency.png"
HEADS, HEAD_DIM, FEATURES = 12, 32, 64
METHODS = ("softmax", *VARIANTS)


def attention_fn(method: str, n: int):
    """A closure running one attention forward of ``method`` on random q, k, v of length ``n``."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM) for _ in range(3))
    mask = torch.ones(1, 1, n, n, dtype=torch.bool)
    mask[..., n - n // 8:] = False  # some padding, as real batches have
    if method == "softmax":
        return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    config = BertConfig(hidden_size=HEADS * HEAD_DIM, num_attention_heads=HEADS, num_hidden_layers=1,
                        intermediate_size=32, vocab_size=8, max_position_embeddings=8)
    model = swap_attention(BertForSequenceClassification(config), method, features=FEATURES, max_length=n)
    module = self_attentions(model)[0]
    return lambda: linear_attention(module, q, k, v, mask)


def peak_memory_mb(method: str, n: int) -> float:
    """Peak resident-set growth over one forward, in a fresh process (Linux: VmHWM reset via clear_refs)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch\n"
            "from bench_linear_attention import attention_fn\n"
            f"fn = attention_fn({method!r}, {n})\n"
            "def status(key):\n"
            "    line = next(x for x in open('/proc/self/status') if x.startswith(key))\n"
            "    return int(line.split()[1])\n"
            "open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current RSS\n"
            "before = status('VmRSS')\n"
            "with torch.inference_mode(): fn()\n"
            "print(status('VmHWM') - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # kB -> MB


def latency_table(lengths: list[int], rounds: int) -> dict:
    fns = {(m, n): attention_fn(m, n) for m in METHODS for n in lengths}
    samples = {key: [] for key in fns}
    with torch.inference_mode():
        for fn in fns.values():  # warm-up: first calls allocate and pick kernels
            fn()
        for _ in range(rounds):
            for key, fn in fns.items():  # interleaved: every method timed in every round
                fn()
                start = time.perf_counter()
                for _ in range(3):
                    fn()
                samples[key].append((time.perf_counter() - start) / 3 * 1000)
    return {key: statistics.median(v) for key, v in samples.items()}


def accuracy_rows(args, teacher_dir: Path) -> list[dict]:
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-linear-"))
    for variant in VARIANTS:
        results = {}
        for epochs in (0, 1):
            tree = {
                "task": "sst2", "output_dir": str(work / f"{variant}-{epochs}"),
                "data": {"dir": args.data_dir, "max_train_examples": args.recovery_examples},
                "teacher": {"model": str(teacher_dir), "max_length": 64, "batch_size": 128},
                "student": {"kind": "linear_attention", "variant": variant, "max_length": 64,
                            # only the keys this variant uses: the recipe refuses meaningless ones
                            **({"features": FEATURES} if variant in ("performer", "linformer") else {}),
                            **({"feature_lr": args.feature_lr} if variant in ("hedgehog", "linformer") else {})},
                "loss": {"kind": "kl", "temperature": 2.0, "alpha": 0.0, "attention_weight": args.attention_weight},
                "train": {"epochs": epochs, "batch_size": 32, "lr": args.lr, "warmup_ratio": 0.1,
                          "keep_checkpoints": 1},
                "cache": {"dir": args.cache_dir}, "measure": {"latency": False},
            }
            metrics = run(validate_recipe(tree))
            results[epochs] = metrics["student"]["metrics"]["accuracy"]
        rows.append({"variant": variant, "teacher": metrics["teacher"]["metrics"]["accuracy"],
                     "swapped": results[0], "recovered": results[1]})
    return rows


def plot(lengths, latency, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method in METHODS:
        ax.plot(lengths, [latency[(method, n)] for n in lengths], "o-", label=method)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("attention forward, ms (CPU, 12 heads x 32)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--recovery-examples", type=int, default=4000)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--feature-lr", type=float, default=1e-2, help="lr of hedgehog W / linformer E, F")
    parser.add_argument("--attention-weight", type=float, default=1.0, help="weight of attention transfer")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.recovery_examples, args.rounds = [128, 1024], 96, 2
    require_sst2(args.data_dir)
    start = time.perf_counter()
    latency = latency_table(args.lengths, args.rounds)
    memory = {(m, n): peak_memory_mb(m, n) for m in METHODS for n in args.lengths}
    rows = accuracy_rows(args, sst2_minilm_teacher(args.data_dir, args.cache_dir))
    total = time.perf_counter() - start
    if not args.no_write:
        plot(args.lengths, latency, FIGURE)

    head = " | ".join(f"{n}" for n in args.lengths)
    lines = [BEGIN, "## Linear attention vs softmax (issue 6)", "",
             command_line(total), "",
             f"Attention operation alone (batch 1, {HEADS} heads × {HEAD_DIM}, 1/8 of the tokens padded; "
             f"performer/linformer with {FEATURES} features): median latency over {args.rounds} interleaved rounds, "
             "and the speedup over softmax (PyTorch's `scaled_dot_product_attention`).", "",
             f"![latency vs length](figures/{FIGURE.name})", "",
             f"| method | {head} (ms) |", "| --- |" + " ---: |" * len(args.lengths)]
    for m in METHODS:
        cells = [f"{latency[(m, n)]:.2f}" + ("" if m == "softmax" else f" ({latency[('softmax', n)] / latency[(m, n)]:.1f}×)")
                 for n in args.lengths]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Peak memory of one forward (resident-set growth of a fresh process, MB; ratio to softmax):", "",
              f"| method | {head} |", "| --- |" + " ---: |" * len(args.lengths)]
    for m in METHODS:
        cells = [f"{memory[(m, n)]:.1f}" + ("" if m == "softmax" else
                                            f" ({memory[('softmax', n)] / max(memory[(m, n)], 0.1):.1f}×)")
                 for n in args.lengths]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    teacher = rows[0]["teacher"]
    lines += ["", f"SST-2 dev accuracy of the MiniLM teacher (softmax: {teacher:.4f}) with each variant swapped in "
              f"(max_length 64), before and after 1 epoch of recovery on {args.recovery_examples:,} train "
              f"sentences: KL (T = 2) to the softmax model's logits plus {args.attention_weight:g} × per-layer "
              "attention transfer (kernel variants: cross-entropy of their attention weights to softmax's, "
              "Hedgehog's attention-weight distillation; linformer: MSE of its attention output), lr "
              f"{args.lr:g} for the pretrained weights and {args.feature_lr:g} for the new feature maps:", "",
              "| variant | swapped, no recovery | recovered | Δ vs softmax (pts) |", "| --- | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['swapped']:.4f} | {r['recovered']:.4f} | "
                     f"{100 * (r['recovered'] - teacher):+.2f} |")
    longest = max(args.lengths)
    fast = [m for m in VARIANTS if latency[("softmax", longest)] / latency[(m, longest)] >= 4]
    close = [r["variant"] for r in rows if teacher - r["recovered"] <= 0.02]
    both = [m for m in fast if m in close]
    lines += ["", f"Target (≥ 4× faster than softmax at {longest} tokens and within 2 points after recovery): "
              f"**{'met by ' + ', '.join(both) if both else 'NOT met'}** (≥ 4× at {longest}: {', '.join(fast) or 'none'}; "
              f"within 2 points: {', '.join(close) or 'none'}).", END]
    print(json.dumps({"latency": {f"{m}@{n}": v for (m, n), v in latency.items()}}))
    publish(BEGIN, END, lines[1:-1], args)


if __name__ == "__main__":
    main()
