"""Benchmark: quantized MiniLM (fine-tuned on SST-2) and quantized BiLSTM student vs. their fp32 originals.

For each model, side by side in one run: size on disk (weights file), CPU latency at batch 1 and 32 (timed
interleaved, round by round, so every variant sees the same machine load) and full SST-2 dev accuracy of
the *saved and reloaded* model, for

  fp32 | int8 linear (post-training) | int8 linear + int8 embedding | QAT int8 | QAT int4 | QAT ternary

QAT variants are distilled from the fp32 model through fake-quantized weights (MiniLM: a copy of the
teacher, ``--qat-examples`` sentences, 1 epoch; BiLSTM: distilled from the MiniLM teacher from scratch with
fake quantization on, same data and epochs as its fp32 original). QAT rows quantize embeddings to int8.

    python scripts/bench_quantize.py --data-dir ../shared/glue
    python scripts/bench_quantize.py --data-dir ../shared/glue --quick     # smoke run
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench_common import (
    FINETUNE,
    TEACHER_EXAMPLES,
    bench_parser,
    command_line,
    interleaved_latency,
    publish,
    require_sst2,
    sst2_minilm_teacher,
    sst2_splits,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.core.measure import MB, size_on_disk
from distilkit.data.tasks import load_task
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.convert import quantize_directory
from distilkit.models.inference import encoder_for, evaluate_model
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_quantize:begin -->", "<!-- bench_quantize:end -->"
MAX_LENGTH = 64
QAT = {"QAT int8": {"linear": "int8"}, "QAT int4": {"linear": "int4"}, "QAT ternary": {"linear": "ternary"}}


def bilstm_recipe(out: Path, args, quantize: dict | None = None) -> dict:
    tree = {
        "task": "sst2", "output_dir": str(out),
        "data": {"dir": args.data_dir, "max_train_examples": args.bilstm_examples},
        "teacher": {"model": "minilm", "max_length": MAX_LENGTH, "batch_size": 128,
                    "finetune": {**FINETUNE, "max_examples": TEACHER_EXAMPLES}},
        "student": {"kind": "bilstm", "max_length": MAX_LENGTH, "hidden_size": 300, "mlp_hidden_size": 400},
        "loss": {"kind": "mse", "alpha": 0.0},
        "train": {"epochs": args.bilstm_epochs, "batch_size": 50, "lr": 1e-3, "keep_checkpoints": 1},
        "cache": {"dir": args.cache_dir}, "measure": {"latency": False},
    }
    if quantize:
        tree["quantize"] = quantize
    return tree


def minilm_qat_recipe(out: Path, teacher_dir: Path, args, quantize: dict) -> dict:
    return {
        "task": "sst2", "output_dir": str(out),
        "data": {"dir": args.data_dir, "max_train_examples": args.qat_examples},
        "teacher": {"model": str(teacher_dir), "max_length": MAX_LENGTH, "batch_size": 128},
        "student": {"kind": "copy", "max_length": MAX_LENGTH},
        "loss": {"kind": "kl", "temperature": 2.0, "alpha": 0.0},
        "train": {"epochs": 1, "batch_size": 32, "lr": args.qat_lr, "warmup_ratio": 0.1, "keep_checkpoints": 1},
        "cache": {"dir": args.cache_dir}, "measure": {"latency": False}, "quantize": quantize,
    }


def variants(name: str, float_dir: Path, work: Path, args, teacher_dir: Path) -> dict[str, Path]:
    """Directories of every variant of one model (fp32, post-training, QAT)."""
    dirs = {"fp32": float_dir}
    for label, cfg in (("int8 linear", {"linear": "int8"}), ("int8 linear + int8 emb", {"linear": "int8",
                                                                                       "embedding": "int8"})):
        quantize_directory(float_dir, work / f"{name}-{label.replace(' ', '_')}", QuantizeConfig(**cfg))
        dirs[label] = work / f"{name}-{label.replace(' ', '_')}"
    for label, cfg in QAT.items():
        out = work / f"{name}-{label.replace(' ', '_')}"
        quantize = {**cfg, "embedding": "int8", "qat": True}
        tree = (minilm_qat_recipe(out, teacher_dir, args, quantize) if name == "MiniLM"
                else bilstm_recipe(out, args, quantize))
        run(validate_recipe(tree))
        dirs[label] = out / "model"
    return dirs


def measure(dirs: dict[str, Path], dev, task, rounds: int) -> dict[str, dict]:
    models = {k: AutoModelForSequenceClassification.from_pretrained(d).eval() for k, d in dirs.items()}
    tokenizer = AutoTokenizer.from_pretrained(next(iter(dirs.values())))
    latency = interleaved_latency(models, tokenizer, list(dev["text_a"]), MAX_LENGTH, rounds)
    return {label: {"size_mb": size_on_disk(dirs[label]) / MB, **latency[label],
                    "accuracy": evaluate_model(model, encoder_for(model), tokenizer, MAX_LENGTH, dev, task)["accuracy"]}
            for label, model in models.items()}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--qat-examples", type=int, default=3000, help="SST-2 sentences for MiniLM QAT")
    parser.add_argument("--qat-lr", type=float, default=2e-5)
    parser.add_argument("--bilstm-examples", type=int, default=8000)
    parser.add_argument("--bilstm-epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds")
    args = parser.parse_args()
    if args.quick:
        args.qat_examples, args.bilstm_examples, args.bilstm_epochs, args.rounds = 200, 500, 1, 2
    require_sst2(args.data_dir)
    start = time.perf_counter()
    task = load_task("sst2")
    _, dev = sst2_splits(args.data_dir)
    teacher_dir = sst2_minilm_teacher(args.data_dir, args.cache_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-quantize-"))
    bilstm = run(validate_recipe(bilstm_recipe(work / "bilstm", args)))
    assert bilstm["student"]["kind"] == "bilstm"
    tables = {
        "MiniLM (fine-tuned on SST-2)": measure(variants("MiniLM", teacher_dir, work, args, teacher_dir), dev,
                                                task, args.rounds),
        "BiLSTM student": measure(variants("BiLSTM", work / "bilstm" / "model", work, args, teacher_dir), dev,
                                  task, args.rounds),
    }
    total = time.perf_counter() - start

    lines = [
        BEGIN,
        "## Quantization: MiniLM and BiLSTM on SST-2, fp32 vs int8 / int4 / ternary (issue 5)",
        "",
        command_line(total),
        "",
        "Size: bytes of the saved weights file (embeddings included). Latency: median CPU forward time at "
        f"max_length {MAX_LENGTH}, variants timed interleaved over {args.rounds} rounds. Accuracy: full SST-2 dev "
        "(872 sentences) of the model reloaded with `AutoModelForSequenceClassification.from_pretrained`. Linear "
        "kernels: FBGEMM dynamic int8 (default `backend: fbgemm`); 4-bit and ternary weights are stored packed "
        f"and run on the same int8 kernel. MiniLM QAT: {args.qat_examples:,} sentences, 1 epoch, KL from the fp32 "
        f"model; BiLSTM QAT: distilled from the MiniLM teacher with fake quantization on, {args.bilstm_examples:,} "
        f"sentences, {args.bilstm_epochs} epochs (same as its fp32 original).",
    ]
    verdicts = []
    for title, rows in tables.items():
        base = rows["fp32"]
        lines += ["", f"**{title}**", "",
                  "| variant | size MB | smaller | b1 ms | faster b1 | b32 ms | faster b32 | dev acc | Δ acc (pts) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for label, r in rows.items():
            lines.append(f"| {label} | {r['size_mb']:.2f} | {base['size_mb'] / r['size_mb']:.2f}× | {r['b1']:.2f} | "
                         f"{base['b1'] / r['b1']:.2f}× | {r['b32']:.1f} | {base['b32'] / r['b32']:.2f}× | "
                         f"{r['accuracy']:.4f} | {100 * (r['accuracy'] - base['accuracy']):+.2f} |")
        best = rows["int8 linear + int8 emb"]
        ok = (base["size_mb"] / best["size_mb"] >= 3.5 and base["b1"] / best["b1"] >= 1.8
              and base["accuracy"] - best["accuracy"] <= 0.005)
        verdicts.append(f"{title}: **{'met' if ok else 'NOT met'}** ({base['size_mb'] / best['size_mb']:.2f}× "
                        f"smaller, {base['b1'] / best['b1']:.2f}× faster at batch 1, "
                        f"{100 * (best['accuracy'] - base['accuracy']):+.2f} points)")
    lines += ["", "Target for int8 linear + int8 embedding (≥ 3.5× smaller on disk, ≥ 1.8× faster at batch 1, "
              "within 0.5 points of fp32):", ""] + [f"- {v}" for v in verdicts] + [END]
    publish(BEGIN, END, lines[1:-1], args)


if __name__ == "__main__":
    main()
