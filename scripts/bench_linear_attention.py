"""Benchmark: linear-attention variants vs softmax attention (issue 6; sinkhorn: issue 14; star: issue 26).

1. The attention operation alone (MiniLM's shape: 12 heads x 32 dims, batch 1, a padding mask), at sequence
   lengths 128 ... 4096: CPU latency (median, each variant interleaved with softmax in the same session) and
   peak memory (resident-set growth of a fresh process running one forward pass). MiniLM's position table
   stops at 512 tokens, so long inputs are measured on the operation every layer runs, not on the encoder.
2. SST-2 dev accuracy of the MiniLM teacher with each variant swapped in, before recovery and after 1 epoch
   of distillation from the softmax model on ``--recovery-examples`` train sentences: logits (KL, T = 2) plus
   per-layer attention transfer (``--attention-weight``), new feature maps at ``--feature-lr``.

Targets at the longest length: ≥ 4× faster than softmax (star, Guo et al.'s Star-Transformer, a window of
``--star-window`` neighbours and one relay: faster than softmax, ≥ 1×), and within 2 points of the teacher
after recovery.

Cells resume: every finished measurement (a method's latencies with the softmax timed beside it, one memory
reading, one variant's accuracies) is written to ``<cache>/linear_attention/<settings>/`` and reused by the
next run. ``--variants`` measures only those variants; the table rows of the others come from their cached
cells, else from the previous docs/results/linear_attention.json, else from the published docs/benchmarks.md
section, so a sinkhorn-only run keeps the other rows. Writes docs/figures/linear_attention_latency.png,
docs/results/linear_attention.json and a docs/benchmarks.md section. ``--quick`` (lengths 128 and 1024, 2
rounds, 96 train and 64 dev sentences, the base MiniLM fine-tuned on those 96 sentences as teacher) checks
that the script runs end to end; its accuracies mean nothing and it never writes docs/results.

    python scripts/bench_linear_attention.py --data-dir ../shared/glue
    python scripts/bench_linear_attention.py --data-dir ../shared/glue --variants sinkhorn
    python scripts/bench_linear_attention.py --data-dir ../shared/glue --variants star
    python scripts/bench_linear_attention.py --data-dir ../shared/glue --quick --no-write
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from bench_common import ROOT, bench_parser, command_line, publish, pyplot, require_sst2, sst2_minilm_teacher

from distilkit.core.atomic import write_text_atomic
from distilkit.methods.linear_attention.linear import VARIANTS, linear_attention, self_attentions
from distilkit.methods.linear_attention.swap import swap_attention
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_linear_attention:begin -->", "<!-- bench_linear_attention:end -->"
FIGURE = ROOT / "docs" / "figures" / "linear_attention_latency.png"
RESULTS = ROOT / "docs" / "results" / "linear_attention.json"
HEADS, HEAD_DIM, FEATURES = 12, 32, 64
METHODS = ("softmax", *VARIANTS)
#: Speed-up over softmax at the longest length each variant must reach (issue 26: star only has to be faster).
SPEED_TARGETS = {"star": 1.0}
DEFAULT_SPEED_TARGET = 4.0


def speed_target(method: str) -> float:
    return SPEED_TARGETS.get(method, DEFAULT_SPEED_TARGET)


def attention_fn(method: str, n: int, block_size: int = 32, star_window: int = 1):
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
    model = swap_attention(BertForSequenceClassification(config), method, features=FEATURES, max_length=n,
                           block_size=block_size, star_window=star_window)
    module = self_attentions(model)[0]
    return lambda: linear_attention(module, q, k, v, mask)


def peak_memory_mb(method: str, n: int, block_size: int, star_window: int = 1) -> float:
    """Peak resident-set growth over one forward, in a fresh process (Linux: VmHWM reset via clear_refs)."""
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch\n"
            "from bench_linear_attention import attention_fn\n"
            f"fn = attention_fn({method!r}, {n}, {block_size}, {star_window})\n"
            "def status(key):\n"
            "    line = next(x for x in open('/proc/self/status') if x.startswith(key))\n"
            "    return int(line.split()[1])\n"
            "open('/proc/self/clear_refs', 'w').write('5')  # reset the peak (VmHWM) to the current RSS\n"
            "before = status('VmRSS')\n"
            "with torch.inference_mode(): fn()\n"
            "print(status('VmHWM') - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # kB -> MB


def memory_cell(method: str, n: int, block_size: int, star_window: int = 1) -> dict:
    return {"mb": peak_memory_mb(method, n, block_size, star_window)}


def latency_cell(method: str, lengths: list[int], rounds: int, block_size: int, star_window: int = 1) -> dict:
    """``method``'s median latency (ms) per length, interleaved with softmax timed in the same session (its
    speed-up is always against that softmax, so cells measured on different days stay comparable)."""
    fns = {(m, n): attention_fn(m, n, block_size, star_window) for m in ("softmax", method) for n in lengths}
    samples = {key: [] for key in fns}
    with torch.inference_mode():
        for fn in fns.values():  # warm-up: first calls allocate and pick kernels
            fn()
        for _ in range(rounds):
            for key, fn in fns.items():  # interleaved: both methods timed in every round
                fn()
                begin = time.perf_counter()
                for _ in range(3):
                    fn()
                samples[key].append((time.perf_counter() - begin) / 3 * 1000)
    return {"ms": {str(n): statistics.median(samples[(method, n)]) for n in lengths},
            "softmax_ms": {str(n): statistics.median(samples[("softmax", n)]) for n in lengths}}


def recovery_tree(args, teacher: str, variant: str, epochs: int, out: Path) -> dict:
    student = {"kind": "linear_attention", "variant": variant, "max_length": 64,
               # only the keys this variant uses: the recipe refuses meaningless ones
               **({"features": FEATURES} if variant in ("performer", "linformer") else {}),
               **({"feature_lr": args.feature_lr} if variant in ("hedgehog", "linformer", "sinkhorn") else {}),
               **({"block_size": args.block_size} if variant == "sinkhorn" else {}),
               **({"star_window": args.star_window} if variant == "star" else {})}
    return {"task": "sst2", "output_dir": str(out),
            "data": {"dir": args.data_dir, "max_train_examples": args.recovery_examples,
                     **({"max_eval_examples": 64} if args.quick else {})},  # quick: 64 dev sentences
            "teacher": {"model": teacher, "max_length": 64, "batch_size": 128,
                        # quick: the base MiniLM has no classifier head; a 96-sentence fine-tune gives it one
                        **({"finetune": {"epochs": 1, "max_length": 64}} if args.quick else {})},
            "student": student,
            "loss": {"kind": "kl", "temperature": 2.0, "alpha": 0.0, "attention_weight": args.attention_weight},
            "train": {"epochs": epochs, "batch_size": 32, "lr": args.lr, "warmup_ratio": 0.1, "keep_checkpoints": 1},
            "cache": {"dir": args.cache_dir}, "measure": {"latency": False}}


#: The recovery budget (epochs, train sentences) of rows published before cells recorded theirs: every run of
#: this script until then used the defaults (its command lines in the history of docs/benchmarks.md).
LEGACY_BUDGET = (1, 4000)


def accuracy_cell(args, teacher: str, variant: str) -> dict:
    """SST-2 dev accuracy of the teacher, the swapped model, and the swapped model after recovery (its budget:
    ``epochs`` x ``examples`` train sentences)."""
    work, results = Path(tempfile.mkdtemp(prefix="bench-linear-")), {}
    for epochs in (0, args.recovery_epochs):
        metrics = run(validate_recipe(recovery_tree(args, teacher, variant, epochs, work / f"{variant}-{epochs}")))
        results[epochs] = metrics["student"]["metrics"]["accuracy"]
    return {"teacher": metrics["teacher"]["metrics"]["accuracy"], "swapped": results[0],
            "recovered": results[args.recovery_epochs], "epochs": args.recovery_epochs,
            "examples": args.recovery_examples}


def budget(cell: dict) -> tuple[int, int]:
    """A cell's recovery budget (epochs, train sentences); :data:`LEGACY_BUDGET` for cells that predate it."""
    return int(cell.get("epochs", LEGACY_BUDGET[0])), int(cell.get("examples", LEGACY_BUDGET[1]))


def cached(path: Path, compute, *args) -> dict:
    """The finished cell at ``path``, or ``compute(*args)`` written there atomically (a crash leaves no half
    cell)."""
    if path.is_file():
        return json.loads(path.read_text())
    value = compute(*args)
    write_text_atomic(path, json.dumps(value, indent=1) + "\n")
    return value


def previous_results() -> dict:
    """Rows of the last published run, as cells: ``latency[m]``, ``memory[(m, n)]``, ``accuracy[v]``.

    From docs/results/linear_attention.json, or (before that file existed) the docs/benchmarks.md tables."""
    latency, memory, accuracy = {}, {}, {}
    if RESULTS.is_file():
        for row in json.loads(RESULTS.read_text()):
            m, metric, value = row["model"], row["metric"], row["value"]
            if key := re.fullmatch(r"(latency_ms|softmax_ms)@(\d+)", metric):
                latency.setdefault(m, {"ms": {}, "softmax_ms": {}})[key[1].replace("latency_", "")][key[2]] = value
            elif key := re.fullmatch(r"memory_mb@(\d+)", metric):
                memory[(m, int(key[1]))] = value
            elif key := re.fullmatch(r"softmax_mb@(\d+)", metric):
                memory[(m, int(key[1]), "base")] = value
            elif key := re.fullmatch(r"accuracy_(teacher|swapped|recovered)", metric):
                accuracy.setdefault(m, {})[key[1]] = value
            elif key := re.fullmatch(r"recovery_(epochs|examples)", metric):
                accuracy.setdefault(m, {})[key[1]] = value
        return {"latency": latency, "memory": with_bases(memory), "accuracy": with_budgets(accuracy)}
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    section = text[text.find(BEGIN):text.find(END)] if BEGIN in text else ""
    tables = [t for t in re.split(r"\n\n", section) if t.startswith("| ")]
    teacher = re.search(r"\(softmax: ([0-9.]+)\)", section)
    for i, table in enumerate(tables):
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
        if i < 2:  # latency (ms, speed-up in brackets), then memory (MB)
            lengths = [int(re.match(r"\d+", c)[0]) for c in rows[0][1:]]
            softmax = dict(zip(lengths, (float(c.split()[0]) for c in rows[2][1:])))
            for cells in rows[3:]:
                values = dict(zip(lengths, (float(c.split()[0]) for c in cells[1:])))
                if i == 0:
                    latency[cells[0]] = {"ms": {str(n): v for n, v in values.items()},
                                         "softmax_ms": {str(n): softmax[n] for n in values}}
                else:
                    memory.update({(cells[0], n): v for n, v in values.items()})
            if i == 1:
                memory.update({("softmax", n): v for n, v in softmax.items()})
        elif teacher:
            for cells in rows[2:]:
                accuracy[cells[0]] = {"teacher": float(teacher[1]), "swapped": float(cells[1]),
                                      "recovered": float(cells[2])}
    return {"latency": latency, "memory": with_bases(memory), "accuracy": with_budgets(accuracy)}


def with_bases(memory: dict) -> dict:
    """Memory cells with, under ``(method, n, "base")``, the softmax MB of the run that measured them (rows that
    predate the record: that file's softmax row, which ran with them). A resident-set growth depends on the
    machine and library versions, so a carried-over row is compared with its own run's softmax, never a newer one."""
    out = dict(memory)
    for (m, n, *rest) in memory:
        if not rest and m != "softmax" and ("softmax", n) in memory:
            out.setdefault((m, n, "base"), memory[("softmax", n)])  # a recorded base stays
    return out


def with_budgets(accuracy: dict) -> dict:
    """Accuracy cells with their recovery budget filled in (:func:`budget`), as a fresh cell records it."""
    return {m: {**cell, **dict(zip(("epochs", "examples"), budget(cell)))} for m, cell in accuracy.items()}


def plot(lengths, latency, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for method, cell in latency.items():
        shown = [n for n in lengths if str(n) in cell["ms"]]
        ax.plot(shown, [cell["ms"][str(n)] for n in shown], "o-", label=method)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("attention forward, ms (CPU, 12 heads x 32)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def measure(args) -> tuple[dict, dict, dict]:
    """Latency, memory and accuracy cells: ``--variants`` measured (or resumed), the others carried over."""
    op = Path(args.cache_dir) / "linear_attention" / (
        "quick" if args.quick else f"op-r{args.rounds}-n{'-'.join(map(str, args.lengths))}")
    acc = Path(args.cache_dir) / "linear_attention" / ("quick" if args.quick else (
        f"acc-e{args.recovery_examples}-lr{args.lr:g}-flr{args.feature_lr:g}-aw{args.attention_weight:g}"
        # (one epoch, the first budget, keeps its folder name: cells cached before the flag stay valid)
        + (f"-ep{args.recovery_epochs}" if args.recovery_epochs != 1 else "")))

    def tag(method: str, block_size: int) -> str:  # sinkhorn cells also depend on the block size, star's on
        if method == "star":  # its window
            return f"star-w{args.star_window}"
        return f"{method}-b{block_size}" if method == "sinkhorn" else method

    old = {"latency": {}, "memory": {}, "accuracy": {}} if args.quick else previous_results()
    latency, memory, accuracy = {}, {}, {}
    teacher = "minilm" if args.quick else None  # --quick checks the plumbing: no 7-minute teacher fine-tune
    for method in METHODS:
        chosen = method == "softmax" or method in args.variants
        lat_path = op / f"lat-{tag(method, args.op_block_size)}.json"
        if method != "softmax" and (chosen or lat_path.is_file()):
            latency[method] = cached(lat_path, latency_cell, method, args.lengths, args.rounds, args.op_block_size,
                                     args.star_window)
        elif method in old["latency"]:
            latency[method] = old["latency"][method]
        for n in args.lengths:
            mem_path = op / f"mem-{tag(method, args.op_block_size)}-{n}.json"
            if chosen or mem_path.is_file():
                memory[(method, n)] = cached(mem_path, memory_cell, method, n, args.op_block_size,
                                             args.star_window)["mb"]
            elif (method, n) in old["memory"]:
                memory[(method, n)] = old["memory"][(method, n)]
                if (method, n, "base") in old["memory"]:
                    memory[(method, n, "base")] = old["memory"][(method, n, "base")]
        acc_path = acc / f"acc-{tag(method, args.block_size)}.json"
        if method != "softmax" and (chosen or acc_path.is_file()):
            if teacher is None and not acc_path.is_file():
                teacher = str(sst2_minilm_teacher(args.data_dir, args.cache_dir))
            accuracy[method] = cached(acc_path, accuracy_cell, args, teacher, method)
        elif method in old["accuracy"]:
            accuracy[method] = old["accuracy"][method]
    # The softmax row: timed in this run, beside the first variant measured (else beside the first one shown).
    first = next((m for m in args.variants if m in latency), None) or next(m for m in METHODS[1:] if m in latency)
    latency = {"softmax": {"ms": latency[first]["softmax_ms"], "softmax_ms": latency[first]["softmax_ms"]},
               **latency}
    # Rows measured now are compared with the softmax measured now (carried rows kept their own run's).
    return latency, with_bases(memory), accuracy


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="variants to measure; the other rows come from cached cells or the last results")
    parser.add_argument("--recovery-examples", type=int, default=4000)
    parser.add_argument("--recovery-epochs", type=int, default=1,
                        help="recovery epochs of the variants measured (each row shows its own budget)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--feature-lr", type=float, default=1e-2, help="lr of hedgehog W / linformer E, F / SortNet")
    parser.add_argument("--attention-weight", type=float, default=1.0, help="weight of attention transfer")
    parser.add_argument("--block-size", type=int, default=8, help="sinkhorn block size in the SST-2 runs (64 tokens)")
    parser.add_argument("--op-block-size", type=int, default=32, help="sinkhorn block size of the operation tables")
    parser.add_argument("--star-window", type=int, default=1,
                        help="star: neighbours on each side of a token (Guo et al.: 1), in both tables")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.recovery_examples, args.rounds = [128, 1024], 96, 2
    require_sst2(args.data_dir)
    start = time.perf_counter()
    latency, memory, accuracy = measure(args)
    total = time.perf_counter() - start
    if not args.no_write:
        plot(args.lengths, latency, FIGURE)

    def ms(m, n):
        return latency.get(m, {}).get("ms", {}).get(str(n))

    def speedup(m, n):  # against the softmax timed in the same session as m
        return latency[m]["softmax_ms"][str(n)] / latency[m]["ms"][str(n)] if ms(m, n) else None

    shown = [m for m in METHODS if m in latency or m in accuracy]
    carried = [m for m in shown if m != "softmax" and m not in args.variants]
    head = " | ".join(f"{n}" for n in args.lengths)
    lines = ["## Linear attention vs softmax (issue 6; sinkhorn: issue 14; star: issue 26)", "",
             command_line(total, details=(f"torch {torch.__version__}", f"transformers {transformers.__version__}"),
                          note=" (finished cells are reused from the benchmark cache)"), "",
             f"Measured in this run (or resumed from its cells): {', '.join(args.variants)}"
             + (f"; rows carried over from the previous results: {', '.join(carried)}." if carried else "."), "",
             f"Attention operation alone (batch 1, {HEADS} heads × {HEAD_DIM}, 1/8 of the tokens padded; "
             f"performer/linformer with {FEATURES} features, sinkhorn with blocks of {args.op_block_size}, star "
             f"with a window of ±{args.star_window} and one relay): median "
             f"latency over {args.rounds} interleaved rounds, and the speed-up over softmax (PyTorch's "
             "`scaled_dot_product_attention`) timed beside each variant in the same session.", "",
             f"![latency vs length](figures/{FIGURE.name})", "",
             f"| method | {head} (ms) |", "| --- |" + " ---: |" * len(args.lengths)]
    for m in (m for m in METHODS if m in latency):
        cells = [("—" if ms(m, n) is None else f"{ms(m, n):.2f}"
                  + ("" if m == "softmax" else f" ({speedup(m, n):.1f}×)")) for n in args.lengths]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Peak memory of one forward (resident-set growth of a fresh process, MB; ratio to the softmax "
              "measured in the same run as the row, shown in its own row when the row ran now):", "",
              f"| method | {head} |", "| --- |" + " ---: |" * len(args.lengths)]
    for m in (m for m in METHODS if any((m, n) in memory for n in args.lengths)):
        cells = ["—" if (m, n) not in memory else f"{memory[(m, n)]:.1f}" + (
            "" if m == "softmax" or (m, n, "base") not in memory
            else f" ({memory[(m, n, 'base')] / max(memory[(m, n)], 0.1):.1f}×)") for n in args.lengths]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    # Each row's Δ is against the teacher accuracy of its own run (the same cached teacher, unless it changed).
    now = [accuracy[m] for m in args.variants if m in accuracy] or list(accuracy.values())
    teacher = now[0]["teacher"] if now else float("nan")
    lines += ["", f"SST-2 dev accuracy of the MiniLM teacher (softmax: {teacher:.4f}) with each variant swapped in "
              f"(max_length 64; sinkhorn with blocks of {args.block_size}, star with a window of ±{args.star_window}), "
              "before and after recovery (each row's budget: epochs × train sentences): KL (T = 2) to the "
              "softmax model's logits plus "
              f"{args.attention_weight:g} × per-layer attention transfer (kernel variants: cross-entropy of their "
              "attention weights to softmax's, Hedgehog's attention-weight distillation; linformer, sinkhorn, star: "
              f"MSE of the attention output), lr {args.lr:g} for the pretrained weights and {args.feature_lr:g} for "
              "the new feature maps and SortNets:", "",
              "| variant | swapped, no recovery | recovered | Δ vs softmax (pts) | recovery |",
              "| --- | ---: | ---: | ---: | --- |"]
    for m, r in accuracy.items():
        epochs, examples = budget(r)
        lines.append(f"| {m} | {r['swapped']:.4f} | {r['recovered']:.4f} | "
                     f"{100 * (r['recovered'] - r['teacher']):+.2f} | {epochs} ep × {examples:,} |")
    longest = max(args.lengths)
    fast = [m for m in VARIANTS if ms(m, longest) and speedup(m, longest) >= speed_target(m)]
    close = [m for m, r in accuracy.items() if r["teacher"] - r["recovered"] <= 0.02]
    both = [m for m in fast if m in close]
    lowered = ", ".join(f"{m}: ≥ {t:g}×" for m, t in SPEED_TARGETS.items() if m in shown)
    lines += ["", f"Target (≥ {DEFAULT_SPEED_TARGET:g}× faster than softmax at {longest} tokens"
              + (f" ({lowered}, i.e. faster than softmax)" if lowered else "") + " and within 2 points after "
              f"recovery): **{'met by ' + ', '.join(both) if both else 'NOT met'}** (fast enough at {longest}: "
              f"{', '.join(fast) or 'none'}; within 2 points: {', '.join(close) or 'none'})."]
    publish(BEGIN, END, lines, args)
    if not args.no_write and not args.quick:  # quick numbers never replace the published ones
        write_text_atomic(RESULTS, json.dumps(result_rows(args, latency, memory, accuracy, both), indent=1) + "\n")


def result_rows(args, latency: dict, memory: dict, accuracy: dict, both: list[str]) -> list[dict]:
    """docs/results/linear_attention.json: one plain row per number (read back by :func:`previous_results`)."""
    op = f"attention op ({HEADS}x{HEAD_DIM}, batch 1)"
    rows = []
    for m, cell in latency.items():
        if m == "softmax":
            continue
        for kind in ("ms", "softmax_ms"):
            rows += [{"task": op, "model": m, "metric": f"{'latency_ms' if kind == 'ms' else kind}@{n}", "value": v,
                      "target": None, "met": None} for n, v in cell[kind].items()]
        longest = str(max(args.lengths))
        if longest in cell["ms"]:
            fold = cell["softmax_ms"][longest] / cell["ms"][longest]
            rows.append({"task": op, "model": m, "metric": f"speedup@{longest}", "value": round(fold, 2),
                         "target": speed_target(m), "met": fold >= speed_target(m)})
    rows += [{"task": op, "model": key[0], "metric": f"{'softmax' if len(key) == 3 else 'memory'}_mb@{key[1]}",
              "value": v, "target": None, "met": None} for key, v in memory.items()]
    for m, r in accuracy.items():
        rows += [{"task": "sst2", "model": m, "metric": f"accuracy_{key}", "value": r[key],
                  "target": round(r["teacher"] - 0.02, 4) if key == "recovered" else None,
                  "met": r["recovered"] >= r["teacher"] - 0.02 if key == "recovered" else None}
                 for key in ("teacher", "swapped", "recovered")]
        rows += [{"task": "sst2", "model": m, "metric": f"recovery_{key}", "value": value, "target": None,
                  "met": None} for key, value in zip(("epochs", "examples"), budget(r))]
        rows.append({"task": "sst2", "model": m, "metric": "fast and accurate", "value": m in both,
                     "target": True, "met": m in both})
    return rows


if __name__ == "__main__":
    main()
