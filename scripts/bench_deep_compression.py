"""Benchmark: Deep Compression on SST-2 (issue 13) -- pruning curves, codebook bits, rounding, both pipelines.

Every cell is one recipe run by :func:`distilkit.run.distill.run` (or a pipeline by ``run_pipeline``), exactly
as ``distilkit run`` runs it, on the fine-tuned SST-2 MiniLM of the other benchmarks (``bench_common``); the
student is a copy of that MiniLM (or, in the second pipeline, of the distilled BiLSTM) that learns the
teacher's logits (KL, T = 2) while it is pruned, shared or quantized. Accuracy is the full SST-2 dev set (872
sentences) of the model as saved and reloaded. Sizes are the files that load the model: the weight files and
config.json (the tokenizer is listed apart).

1. Block pruning (``recipes/sst2-block-prune.yaml``'s ``student.blocks``): accuracy, and the batch-1 / batch-32
   speed-up of the compacted model over the unpruned one in three fresh processes.
2. Magnitude pruning: dev accuracy against sparsity, the three rankings without retraining, one-shot and
   gradual (Zhu & Gupta's cubic schedule) with retraining, and gradual with Han et al. 2015's L1 / L2 penalty.
3. Weight sharing: k-means codebook bits (linear, density and random initialisation), before and after the
   centroids are retrained; and the linear grids (int8/int4/ternary/binary) with nearest and stochastic
   rounding, post-training and quantization-aware.
4. The two shipped pipelines (``recipes/pipelines/sst2-deep-compression*.yaml``), stage by stage.

Cells resume: each finished cell is written to ``<cache>/deep_compression/<cell>.json`` and skipped by the next
run; run folders are deleted after each cell (disk). Writes docs/results/deep_compression.json, the figure
docs/figures/deep_compression_sparsity.png and a docs/benchmarks.md section.

    python scripts/bench_deep_compression.py --data-dir ../shared/glue
    python scripts/bench_deep_compression.py --data-dir ../shared/glue --quick --no-write
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench_common import (
    ROOT,
    bench_parser,
    command_line,
    git_commit,
    publish,
    pyplot,
    require_sst2,
    sst2_minilm_teacher,
)

from distilkit.core.atomic import write_text_atomic
from distilkit.core.measure import MB, size_on_disk
from distilkit.core.yaml_files import read_yaml
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_deep_compression:begin -->", "<!-- bench_deep_compression:end -->"
RESULTS = ROOT / "docs" / "results" / "deep_compression.json"
FIGURE = ROOT / "docs" / "figures" / "deep_compression_sparsity.png"
TARGET_MINILM, TARGET_CHAIN, TARGET_RETAINED, TARGET_SPARSITY = 35, 500, 0.95, 0.70
PRUNE_LR, SHARE_LR = 1e-4, 2e-5


def model_bytes(folder: Path) -> int:
    """Weight files plus config.json: what ``from_pretrained`` reads to build the model."""
    return size_on_disk(folder) + (folder / "config.json").stat().st_size


def base_tree(args, teacher_dir: Path, out: Path) -> dict:
    return {"task": "sst2", "output_dir": str(out),
            "data": {"dir": args.data_dir, "max_train_examples": args.examples},
            "teacher": {"model": str(teacher_dir), "max_length": 64, "batch_size": 128},
            "student": {"kind": "copy", "max_length": 64},
            "loss": {"kind": "kl", "temperature": 2.0, "alpha": 0.0},
            "train": {"epochs": args.epochs, "batch_size": 32, "lr": PRUNE_LR, "warmup_ratio": 0.05,
                      "keep_checkpoints": 1},
            "cache": {"dir": args.cache_dir}, "measure": {"latency": False}}


def merged(tree: dict, update: dict) -> dict:
    out = copy.deepcopy(tree)
    for key, value in update.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) and key not in (
            "deep_compression", "quantize") else value
    return out


def cell(name: str, update: dict, args, teacher_dir: Path, work: Path, cells: Path, keep: bool = False) -> dict:
    """Run one recipe (or reuse its finished result) and return accuracy, sizes and sparsity."""
    path = cells / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    start, commit = time.time(), git_commit()  # before the run: the code the run read
    print(f"--- cell {name}", flush=True)
    metrics = run(validate_recipe(merged(base_tree(args, teacher_dir, out), update), source=f"cell {name}"))
    student = metrics["student"]
    result = {"accuracy": student["metrics"]["accuracy"], "float_accuracy": student.get("float_metrics", {}).get(
        "accuracy"), "teacher_accuracy": metrics["teacher"]["metrics"]["accuracy"],
        "model_bytes": model_bytes(out / "model"), "params": student["params"],
        "sparsity": student.get("deep_compression", {}).get("sparsity"),
        "distinct": student.get("deep_compression", {}).get("max_distinct_values"),
        "seconds": round(time.time() - start, 1), "block_pruning": student.get("block_pruning"),
        "model_dir": str(out / "model") if keep else None, "commit": commit}
    write_text_atomic(path, json.dumps(result, indent=1))
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return result


def pruning_cells(args, run_cell) -> dict[str, dict[float, dict]]:
    """Accuracy per sparsity: the three rankings without retraining, then (per-layer ranking) one-shot and
    gradual pruning with retraining, and gradual with Han et al.'s L1 / L2 penalty."""
    curves: dict[str, dict[float, dict]] = {}
    for s in args.sparsities:
        prune = {"sparsity": s, "scope": "layer"}
        gradual = {**prune, "schedule": "gradual", "end": 0.7, "every": 20}
        plans = {f"one-shot, {scope}, no retraining": (f"oneshot-{scope}-none", {"prune": {**prune, "scope": scope}},
                                                       {"epochs": 0}) for scope in ("global", "std", "layer")}
        plans["one-shot + retraining"] = ("oneshot", {"prune": prune}, {})
        plans["gradual + retraining"] = ("gradual", {"prune": gradual}, {})
        if s in args.regularized:  # weights: the penalty's gradient stays below the distillation loss's
            plans["gradual + L1"] = ("gradual-l1", {"prune": {**gradual, "regularization": "l1",
                                                              "regularization_weight": 1e-6}}, {})
            plans["gradual + L2"] = ("gradual-l2", {"prune": {**gradual, "regularization": "l2",
                                                              "regularization_weight": 1e-5}}, {})
        for label, (key, dc, train) in plans.items():
            curves.setdefault(label, {})[s] = run_cell(f"prune-{key}-{s}", {"deep_compression": dc, "train": train})
    return curves


def sharing_cells(args, run_cell) -> tuple[dict, dict]:
    bits_rows: dict[tuple[str, int], dict[str, dict]] = {}
    for bits in args.bits:
        inits = ("linear", "density", "random") if bits in args.init_bits else ("linear",)
        for init in inits:
            share = {"share": {"bits": bits, "init": init}, "huffman": True}
            row = {"none": run_cell(f"share-{init}-{bits}-none", {"deep_compression": share, "train": {"epochs": 0}})}
            if init == "linear":  # (initialisations compared before retraining: a shared retrain step costs 4x)
                row["retrain"] = run_cell(f"share-{init}-{bits}-retrain",
                                          {"deep_compression": share, "train": {"lr": SHARE_LR}})
            bits_rows[(init, bits)] = row
    rounding_rows: dict[tuple[str, str, str], dict] = {}
    for scheme in args.grids:
        for rounding in ("nearest", "stochastic"):
            quantize = {"linear": scheme, "rounding": rounding}
            rounding_rows[(scheme, "PTQ", rounding)] = run_cell(
                f"grid-{scheme}-ptq-{rounding}", {"quantize": quantize, "train": {"epochs": 0}})
            if scheme in args.qat_grids:
                rounding_rows[(scheme, "QAT", rounding)] = run_cell(
                    f"grid-{scheme}-qat-{rounding}", {"quantize": {**quantize, "qat": True}, "train": {"lr": SHARE_LR}})
    return bits_rows, rounding_rows


def pipeline_cell(name: str, recipe: Path, args, teacher_dir: Path, work: Path, cells: Path) -> dict:
    """Run a shipped pipeline recipe on the benchmark's teacher and data; keep its summary."""
    from distilkit.run.pipeline import run_pipeline
    from distilkit.run.pipeline_config import validate_pipeline

    path = cells / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    tree = read_yaml(recipe)
    out = work / name
    tree.update(output_dir=str(out), data={**tree.get("data", {}), "dir": args.data_dir,
                                           "max_train_examples": args.pipeline_examples},
                teacher={"model": str(teacher_dir), "max_length": 64, "batch_size": 128},
                cache={"dir": args.cache_dir}, measure={"batch_sizes": [1, 32], "repeats": 12})
    start = time.time()
    summary = run_pipeline(validate_pipeline(tree, source=str(recipe)))
    for row in summary["stages"]:
        row["model_bytes"] = model_bytes(Path(row["model_dir"]))
        row["tokenizer_bytes"] = sum(p.stat().st_size for p in Path(row["model_dir"]).glob("*tok*") if p.is_file()) + \
            sum(p.stat().st_size for p in Path(row["model_dir"]).glob("vocab*") if p.is_file())
    summary["teacher"]["model_bytes"] = model_bytes(teacher_dir)
    summary["seconds"] = round(time.time() - start, 1)
    summary["pipeline_md"] = (out / "pipeline.md").read_text() if (out / "pipeline.md").is_file() else ""
    write_text_atomic(path, json.dumps(summary, indent=1, default=str))
    return summary


def time_pair(teacher_dir: str, model_dir: str, data_dir: str) -> dict:
    """In this (fresh) process: b1 and b32 latency of the teacher and the block-pruned model, interleaved."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distilkit.core.measure import interleaved_latency_ms, repeated_inputs
    from distilkit.data.tasks import load_split, load_task
    from distilkit.models.inference import encoder_for

    texts = list(load_split(load_task("sst2"), "validation", data_dir=data_dir, max_examples=64, seed=0)["text_a"])
    candidates = {}
    for key, folder in (("teacher", teacher_dir), ("pruned", model_dir)):
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        candidates[key] = (model, repeated_inputs(encoder_for(model), AutoTokenizer.from_pretrained(folder), texts,
                                                  None, 64))
    return interleaved_latency_ms(candidates, 5, batch_sizes=(1, 32), repeats=20)


def block_cells(args, run_cell, teacher_dir: Path, cells: Path) -> tuple[dict, dict, list[dict]]:
    """The shipped block-pruning recipe's student on the benchmark's data, then its speed-up over the unpruned
    model in three fresh processes (a speed verdict must hold in all three)."""
    blocks = read_yaml(ROOT / "recipes" / "sst2-block-prune.yaml")["student"]["blocks"]
    result = run_cell("block-rows-movement", {"student": {"kind": "pruned", "max_length": 64, "blocks": blocks},
                                              "train": {"epochs": 2}})
    timing_path = cells / "block-timing.json"
    timings = json.loads(timing_path.read_text()) if timing_path.is_file() else []
    while len(timings) < 3:
        done = subprocess.run([sys.executable, __file__, "--time-pair", str(teacher_dir), result["model_dir"],
                               "--data-dir", args.data_dir], check=True, capture_output=True, text=True)
        timings.append(json.loads(done.stdout.strip().splitlines()[-1]))
        write_text_atomic(timing_path, json.dumps(timings))
    return blocks, result, timings


def plot(curves: dict, fp32: float) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, points in curves.items():
        xs = sorted(points)
        ax.plot([100 * x for x in xs], [100 * points[x]["accuracy"] for x in xs], marker="o", label=label)
    ax.axhline(100 * fp32, color="grey", linestyle="--", label="fp32 MiniLM")
    ax.axhline(100 * fp32 - 1, color="grey", linestyle=":", label="fp32 − 1 point")
    ax.set_xlabel("weights pruned (%)")
    ax.set_ylabel("SST-2 dev accuracy (%)")
    ax.set_title("Magnitude pruning of MiniLM (linear + embedding weights)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=120)


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def delta(x: float | None, ref: float) -> str:
    return "—" if x is None else f"{100 * (x - ref):+.2f}"


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--examples", type=int, default=8000, help="SST-2 train sentences per cell")
    parser.add_argument("--epochs", type=int, default=1, help="retraining epochs per cell")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7, 0.8, 0.9])
    parser.add_argument("--regularized", type=float, nargs="+", default=[0.8])
    parser.add_argument("--bits", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--init-bits", type=int, nargs="+", default=[2])
    parser.add_argument("--grids", nargs="+", default=["int4", "ternary", "binary"])
    parser.add_argument("--qat-grids", nargs="+", default=["int4"])
    parser.add_argument("--pipeline-examples", type=int, default=20000)
    parser.add_argument("--only", nargs="+", choices=["prune", "blocks", "share", "pipelines"],
                        default=["prune", "blocks", "share", "pipelines"])
    parser.add_argument("--time-pair", nargs=2, default=None, help=argparse.SUPPRESS)  # the fresh timing process
    args = parser.parse_args()
    if args.time_pair:
        print(json.dumps(time_pair(*args.time_pair, args.data_dir)))
        return
    if args.quick:
        args.examples, args.epochs, args.sparsities, args.regularized = 160, 1, [0.5, 0.9], [0.9]
        args.bits, args.init_bits, args.grids, args.qat_grids, args.pipeline_examples = [2, 4], [2], ["int4"], ["int4"], 160
    require_sst2(args.data_dir)
    start = time.time()
    teacher_dir = sst2_minilm_teacher(args.data_dir, args.cache_dir)
    cells = Path(args.cache_dir) / "deep_compression" / ("quick" if args.quick else f"e{args.examples}x{args.epochs}")
    work = Path(args.cache_dir) / "deep_compression" / "runs"
    cells.mkdir(parents=True, exist_ok=True)

    def run_cell(name: str, update: dict) -> dict:
        return cell(name, update, args, teacher_dir, work, cells, keep=name.startswith("block"))

    fp32_bytes = model_bytes(teacher_dir)
    lines: list[str] = []
    results: list[dict] = []
    fp32 = None
    if "blocks" in args.only:
        blocks, result, timings = block_cells(args, run_cell, teacher_dir, cells)
        fp32 = fp32 or result["teacher_accuracy"]
        record = result.get("block_pruning") or {}
        speed = {b: [round(t["teacher"][b] / t["pruned"][b], 2) for t in timings] for b in ("b1", "b32")}
        met = min(speed["b1"]) > 1.0
        results.append({"task": "sst2", "model": "MiniLM block-pruned (rows, movement)", "metric": "b1 speed-up",
                        "value": speed["b1"], "target": 1.0, "met": met})
        lines += ["### 1. Block pruning: rows by movement, emptied heads and FFN neurons removed", "",
                  f"`recipes/sst2-block-prune.yaml`'s `student.blocks` ({json.dumps(blocks)}) on {args.examples:,} "
                  "train sentences, 2 epochs of distillation from the fp32 model. Latency: the unpruned and the "
                  "compacted model reloaded with `AutoModelForSequenceClassification`, interleaved over 5 rounds in "
                  "each of three fresh processes (max_length 64, SST-2 dev sentences).", "",
                  "| model | params | MB | b1 ms (3 processes) | b32 ms (3 processes) | dev acc | Δ (pts) |",
                  "| --- | ---: | ---: | --- | --- | ---: | ---: |",
                  f"| fp32 MiniLM | 22,713,986 | {fp32_bytes / MB:.2f} | "
                  + ", ".join(f"{t['teacher']['b1']:.2f}" for t in timings) + " | "
                  + ", ".join(f"{t['teacher']['b32']:.1f}" for t in timings) + f" | {fp32:.4f} | — |",
                  f"| block-pruned | {result['params']:,} | {result['model_bytes'] / MB:.2f} | "
                  + ", ".join(f"{t['pruned']['b1']:.2f}" for t in timings) + " | "
                  + ", ".join(f"{t['pruned']['b32']:.1f}" for t in timings)
                  + f" | {result['accuracy']:.4f} | {delta(result['accuracy'], fp32)} |", "",
                  f"Removed: {json.dumps({k: v for k, v in record.items() if k != 'per_layer'})}. Speed-up at batch 1: "
                  f"{', '.join(f'{x:.2f}×' for x in speed['b1'])}; at batch 32: "
                  f"{', '.join(f'{x:.2f}×' for x in speed['b32'])} (three processes). Target (a measured speed-up at "
                  f"batch 1): **{'met' if met else 'missed'}**.", ""]
    if "prune" in args.only:
        curves = pruning_cells(args, run_cell)
        fp32 = next(iter(next(iter(curves.values())).values()))["teacher_accuracy"]
        if not args.no_write:
            plot(curves, fp32)
        labels = list(curves)
        lines += ["### 2. Magnitude pruning: SST-2 dev accuracy against sparsity", "",
                  f"![accuracy vs sparsity](figures/{FIGURE.name})", "",
                  f"fp32 MiniLM: {fp32:.4f}. Every linear and embedding weight but the classifier's is ranked by "
                  "magnitude: `global` ranks |w| over all tensors, `std` ranks |w| / std(W) (Han et al. 2015's "
                  "threshold), `layer` prunes each tensor by the same fraction (used for the retrained rows); "
                  f"retraining: {args.epochs} epoch(s) of KL distillation from the fp32 model on "
                  f"{args.examples:,} train sentences (gradual: cubic schedule to 70% of the steps, masks every 20 "
                  "steps). Δ: points against fp32. Size: weights stored sparse (bitmask or Huffman-coded gaps), "
                  "no sharing, full 30,522-token vocabulary.", "",
                  "| sparsity | " + " | ".join(labels) + " | Δ best retrained | MB (gradual) | smaller |",
                  "| ---: |" + " ---: |" * (len(labels) + 3)]
        best_sparsity = 0.0
        for s in args.sparsities:
            accs = [curves[label].get(s, {}).get("accuracy") for label in labels]
            retrained = [a for label, a in zip(labels, accs) if a is not None and "no retraining" not in label]
            best = max(retrained) if retrained else None
            if best is not None and best >= fp32 - 0.01:
                best_sparsity = max(best_sparsity, s)
            size = curves["gradual + retraining"][s]["model_bytes"]
            lines.append(f"| {s:.0%} | " + " | ".join(pct(a) for a in accs) +
                         f" | {delta(best, fp32)} | {size / MB:.2f} | {fp32_bytes / size:.1f}× |")
        met = best_sparsity >= TARGET_SPARSITY
        results.append({"task": "sst2", "model": "MiniLM magnitude-pruned", "metric": "sparsity within 1 point",
                        "value": best_sparsity, "target": TARGET_SPARSITY, "met": met})
        lines += ["", f"Target (≥ {TARGET_SPARSITY:.0%} sparsity within 1 point after recovery): "
                  f"**{'met' if met else 'missed'}** (highest sparsity within 1 point: {best_sparsity:.0%}).", ""]
    if "share" in args.only:
        bits_rows, rounding_rows = sharing_cells(args, run_cell)
        fp32 = fp32 or next(iter(bits_rows.values()))["none"]["teacher_accuracy"]
        lines += ["### 3. Weight sharing: codebook bits, initialisation, and rounding on the linear grids", "",
                  "Every linear and embedding weight tensor but the classifier gets its own k-means codebook of "
                  "2^bits values (Han et al. 2016); the model is saved as Huffman-coded indices plus codebooks. "
                  f"Retrained: {args.epochs} epoch(s) of distillation in which each cluster's weights share one "
                  "update (tied gradients).", "",
                  "| init | bits | acc, shared | acc, retrained | Δ (retrained, else shared) | MB | smaller |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for (init, bits), row in sorted(bits_rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            after = row.get("retrain", {}).get("accuracy")
            size = row["none"]["model_bytes"]
            lines.append(f"| {init} | {bits} | {pct(row['none']['accuracy'])} | {pct(after)} | "
                         f"{delta(after if after is not None else row['none']['accuracy'], fp32)} | {size / MB:.2f} | "
                         f"{fp32_bytes / size:.1f}× |")
        lines += ["", "Linear grids (`quantize:`), round-to-nearest against stochastic rounding (Gupta et al. 2015), "
                  "post-training (PTQ) and quantization-aware (QAT, stochastic rounding in the fake-quantized "
                  "forward while training):", "",
                  "| grid | mode | nearest | stochastic | stochastic − nearest (pts) |", "| --- | --- | ---: | ---: | ---: |"]
        for (scheme, mode, rounding), row in rounding_rows.items():
            if rounding == "stochastic":
                continue
            other = rounding_rows.get((scheme, mode, "stochastic"), {})
            lines.append(f"| {scheme} | {mode} | {pct(row['accuracy'])} | {pct(other.get('accuracy'))} | "
                         f"{delta(other.get('accuracy'), row['accuracy'])} |")
        lines.append("")
    if "pipelines" in args.only:
        for name, recipe, target in (("minilm", "sst2-deep-compression.yaml", TARGET_MINILM),
                                     ("bilstm", "sst2-deep-compression-bilstm.yaml", TARGET_CHAIN)):
            summary = pipeline_cell(f"pipeline-{name}", ROOT / "recipes" / "pipelines" / recipe, args,
                                    teacher_dir, work, cells)
            teacher = summary["teacher"]
            lines += [f"### 4{'a' if name == 'minilm' else 'b'}. Pipeline `recipes/pipelines/{recipe}`", "",
                      f"Run on {args.pipeline_examples:,} SST-2 train sentences with the recipe's own epochs "
                      f"({summary['seconds'] / 60:.1f} min). Each row is the stage's model reloaded from disk; "
                      "latency timed interleaved with the teacher in one process (max_length 64). \"smaller\": "
                      "the fp32 MiniLM's weights + config against the row's.", "",
                      "| stage | params | MB (weights + config) | smaller | tokenizer MB | b1 ms | b32 ms | dev acc | "
                      "retained |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                      f"| fp32 MiniLM (teacher) | {teacher['params']:,} | {teacher['model_bytes'] / MB:.3f} | 1× | — | "
                      f"{teacher['latency_ms'].get('b1', 0):.2f} | {teacher['latency_ms'].get('b32', 0):.1f} | "
                      f"{teacher['metric']:.4f} | 1.000 |"]
            for row in summary["stages"]:
                lines.append(f"| {row['name']} | {row['params']:,} | {row['model_bytes'] / MB:.3f} | "
                             f"{teacher['model_bytes'] / row['model_bytes']:.1f}× | {row['tokenizer_bytes'] / MB:.2f} | "
                             f"{row['latency_ms'].get('b1', 0):.2f} | {row['latency_ms'].get('b32', 0):.1f} | "
                             f"{row['metric']:.4f} | {row['retained']:.3f} |")
            final = summary["stages"][-1]
            ratio = teacher["model_bytes"] / final["model_bytes"]
            if name == "minilm":
                met = ratio >= target and final["metric"] >= teacher["metric"] - 0.01
                verdict = (f"≥ {target}× smaller within 1 point of fp32: **{'met' if met else 'missed'}** "
                           f"({ratio:.1f}×, {100 * (final['metric'] - teacher['metric']):+.2f} points)")
            else:
                met = ratio >= target and final["retained"] >= TARGET_RETAINED
                verdict = (f"≥ {target}× smaller than the fp32 MiniLM with ≥ {TARGET_RETAINED:.0%} of its accuracy: "
                           f"**{'met' if met else 'missed'}** ({ratio:.0f}×, {final['retained']:.1%})")
            floor = teacher["metric"] - 0.01 if name == "minilm" else TARGET_RETAINED * teacher["metric"]
            results += [{"task": "sst2", "model": f"deep-compression pipeline ({name})", "metric": "times smaller",
                         "value": round(ratio, 2), "target": target, "met": ratio >= target},
                        {"task": "sst2", "model": f"deep-compression pipeline ({name})", "metric": "accuracy",
                         "value": final["metric"], "target": round(floor, 4), "met": final["metric"] >= floor},
                        {"task": "sst2", "model": f"deep-compression pipeline ({name})",
                         "metric": "size and accuracy together", "value": met, "target": True, "met": met}]
            lines += ["", f"Target: {verdict}.", ""]
    total = time.time() - start
    header = ["## Deep Compression on SST-2: pruning, weight sharing, Huffman coding (issue 13)", "",
              command_line(total, note=" (finished cells are reused from the benchmark cache)"), ""]
    publish(BEGIN, END, header + lines, args, results, RESULTS)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
