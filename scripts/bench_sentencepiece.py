"""Benchmark: a BiLSTM with its own SentencePiece vocabulary against the trimmed-WordPiece BiLSTM on SST-2, at
equal or smaller embedding bytes (issue 15, part 2).

The setup is ``scripts/bench_pipeline.py``'s, run as single recipes by :func:`distilkit.run.distill.run`: the
fine-tuned MiniLM teacher (``bench_common``) labels a Tang et al. transfer set of 3,000 SST-2 train sentences
x 20 augmentations (reused from the benchmark cache when bench_pipeline made it); a BiLSTM (150 hidden per
direction, 128-unit ReLU layer, word vectors PCA-projected from the teacher's) learns the teacher's logits (MSE)
for 8 epochs; its linear, LSTM and embedding weights are then quantized to int8, as in the pipeline. Rows:

* ``wordpiece``: the teacher's WordPiece vocabulary trimmed to the transfer set (``student.vocab.max_tokens:
  6000``; 5,825 tokens kept in bench_pipeline), 64-d vectors -- the pipeline's student;
* ``sentencepiece``: ``student.tokenizer: {train: sentencepiece, vocab_size: 8000, model_type: unigram}``
  trained on the transfer set, at the widest embedding whose table is no larger than the WordPiece row's
  (``floor(kept x 64 / 8000)``: 46-d for 5,825 kept tokens); each piece starts from the mean teacher vector of
  the WordPiece tokens it spells, PCA-projected;
* ``sentencepiece-bpe``: the same with ``model_type: bpe``;
* ``sentencepiece-equal``: a unigram vocabulary of as many pieces as the WordPiece row kept, at 64-d.

Target: the 8,000-piece SentencePiece BiLSTM reaches the trimmed-WordPiece BiLSTM's dev accuracy (int8, as
published by bench_pipeline) with embedding bytes no larger.

Cells resume: each finished cell is written to ``<cache>/sentencepiece/cells/<budget>/<cell>.json`` and skipped
by the next run; run folders are deleted after each cell. Writes docs/results/sentencepiece.json.

    python scripts/bench_sentencepiece.py --data-dir ../shared/glue
    python scripts/bench_sentencepiece.py --data-dir ../shared/glue --quick --no-write
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from bench_common import ROOT, bench_parser, command_line, publish, require_sst2, sst2_minilm_teacher

from distilkit.core.atomic import write_text_atomic
from distilkit.core.measure import MB
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_sentencepiece:begin -->", "<!-- bench_sentencepiece:end -->"
RESULTS = ROOT / "docs" / "results" / "sentencepiece.json"
WORDPIECE_DIM = 64


def base_tree(args, teacher_dir: Path, out: Path) -> dict:
    """bench_pipeline's distillation stage as one recipe (same transfer set, student and budget)."""
    return {
        "task": "sst2",
        "output_dir": str(out),
        "data": {"dir": args.data_dir, "max_train_examples": args.examples, "labels": "none",
                 "augment": {"n_iter": args.n_iter, "seed": 0}},
        "teacher": {"model": str(teacher_dir), "max_length": 64, "batch_size": 128},
        "student": {"kind": "bilstm", "max_length": 64, "hidden_size": args.hidden_size,
                    "mlp_hidden_size": args.mlp_hidden_size, "init_embeddings_from_teacher": "pca"},
        "loss": {"kind": "mse", "alpha": 0.0},
        "train": {"epochs": args.epochs, "batch_size": 50, "lr": 1e-3, "keep_checkpoints": 1},
        "quantize": {"linear": "int8", "embedding": "int8"},
        "cache": {"dir": args.cache_dir},
        "measure": {"latency": False},
    }


def cell(name: str, student: dict, args, teacher_dir: Path, cells: Path) -> dict:
    """Run one student (or read its finished result) and return its row."""
    path = cells / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    print(f"--- cell {name}", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"bench-sentencepiece-{name}-"))
    tree = base_tree(args, teacher_dir, work / "run")
    tree["student"].update(student)
    start = time.time()
    try:
        metrics = run(validate_recipe(tree, source=f"cell {name}"))
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(work / "run" / "model-float")
        info = metrics["student"]
        result = {
            "cell": name, "student": student, "vocab": info.get("vocab", {}),
            "vocab_size": config.vocab_size, "embedding_dim": config.embedding_dim,
            "embedding_params": config.vocab_size * config.embedding_dim,
            "params": info["params"],
            "float_mb": info["float_size_on_disk_bytes"] / MB, "int8_mb": info["size_on_disk_bytes"] / MB,
            "float_accuracy": info["float_metrics"]["accuracy"], "int8_accuracy": info["metrics"]["accuracy"],
            "teacher_accuracy": metrics["teacher"]["metrics"]["accuracy"], "examples": metrics["train"]["examples"],
            "seconds": round(time.time() - start, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_text_atomic(path, json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--examples", type=int, default=3000, help="SST-2 train sentences augmented")
    parser.add_argument("--n-iter", type=int, default=20, help="augmented variants per sentence")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--hidden-size", type=int, default=150)
    parser.add_argument("--mlp-hidden-size", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=6000, help="trimmed WordPiece vocabulary (bench_pipeline)")
    parser.add_argument("--pieces", type=int, default=8000, help="SentencePiece vocab_size")
    parser.add_argument("--rows", nargs="+", default=["sentencepiece", "sentencepiece-bpe", "sentencepiece-equal"],
                        choices=["sentencepiece", "sentencepiece-bpe", "sentencepiece-equal"],
                        help="SentencePiece rows besides WordPiece (the target is judged on 'sentencepiece')")
    args = parser.parse_args()
    if args.quick:
        args.examples, args.n_iter, args.epochs, args.pieces = 200, 2, 1, 1000
    require_sst2(args.data_dir)
    start = time.time()
    teacher_dir = sst2_minilm_teacher(args.data_dir, args.cache_dir)
    budget = "quick" if args.quick else f"e{args.examples}x{args.n_iter}x{args.epochs}-h{args.hidden_size}"
    cells = Path(args.cache_dir) / "sentencepiece" / "cells" / budget
    cells.mkdir(parents=True, exist_ok=True)

    wordpiece = cell("wordpiece", {"embedding_dim": WORDPIECE_DIM, "vocab": {"max_tokens": args.max_tokens}},
                     args, teacher_dir, cells)
    kept = wordpiece["vocab_size"]
    # Equal embedding bytes: the widest table of args.pieces rows no larger than the WordPiece one.
    dim = wordpiece["embedding_params"] // args.pieces
    rows = {"wordpiece": wordpiece}
    for name, tokenizer, width in (
            ("sentencepiece", {"vocab_size": args.pieces, "model_type": "unigram"}, dim),
            ("sentencepiece-bpe", {"vocab_size": args.pieces, "model_type": "bpe"}, dim),
            ("sentencepiece-equal", {"vocab_size": kept, "model_type": "unigram"}, WORDPIECE_DIM)):
        if name not in args.rows and name != "sentencepiece":
            continue
        student = {"embedding_dim": width, "tokenizer": {"train": "sentencepiece", **tokenizer}}
        rows[name] = cell(f"{name}-v{tokenizer['vocab_size']}-d{width}", student, args, teacher_dir, cells)

    labels = {"wordpiece": f"trimmed WordPiece (max_tokens {args.max_tokens})",
              "sentencepiece": f"SentencePiece unigram, vocab_size {args.pieces:,}",
              "sentencepiece-bpe": f"SentencePiece BPE, vocab_size {args.pieces:,}",
              "sentencepiece-equal": f"SentencePiece unigram, vocab_size {kept:,} (= WordPiece kept)"}
    teacher_acc = wordpiece["teacher_accuracy"]
    lines = [
        "| student vocabulary | vocab | emb dim | emb params | emb bytes fp32 | emb bytes int8 | total weights MB "
        "fp32 | int8 | dev acc fp32 | dev acc int8 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in rows.items():
        lines.append(f"| {labels[name]} | {row['vocab_size']:,} | {row['embedding_dim']} | "
                     f"{row['embedding_params']:,} | {4 * row['embedding_params']:,} | {row['embedding_params']:,} | "
                     f"{row['float_mb']:.3f} | {row['int8_mb']:.3f} | {row['float_accuracy']:.4f} | "
                     f"{row['int8_accuracy']:.4f} |")
    ours = rows["sentencepiece"]
    smaller = ours["embedding_params"] <= wordpiece["embedding_params"]
    met = smaller and ours["int8_accuracy"] >= wordpiece["int8_accuracy"]
    results = [{"task": "sst2", "model": "BiLSTM, SentencePiece unigram vocabulary", "metric": "dev accuracy (int8)",
                "value": ours["int8_accuracy"], "target": wordpiece["int8_accuracy"], "met": met,
                "vocab_size": ours["vocab_size"], "embedding_dim": ours["embedding_dim"],
                "embedding_params": ours["embedding_params"],
                "wordpiece_embedding_params": wordpiece["embedding_params"]},
               *({"task": "sst2", "model": f"BiLSTM, {labels[name]}", "metric": "dev accuracy (int8)",
                  "value": row["int8_accuracy"], "target": wordpiece["int8_accuracy"],
                  "met": row["int8_accuracy"] >= wordpiece["int8_accuracy"]
                  and row["embedding_params"] <= wordpiece["embedding_params"]}
                 for name, row in rows.items() if name not in ("wordpiece", "sentencepiece"))]
    total = time.time() - start
    header = [
        "## Student vocabulary: SentencePiece vs trimmed WordPiece BiLSTM on SST-2 (issue 15)", "",
        command_line(total, note=" (finished cells, teacher labels and the transfer set are reused from the "
                     "benchmark cache)"), "",
        f"bench_pipeline's distillation stage, one recipe per row: the fine-tuned MiniLM teacher (dev accuracy "
        f"{teacher_acc:.4f}) labels a Tang et al. transfer set of {args.examples:,} SST-2 train sentences × "
        f"{args.n_iter} augmentations ({wordpiece['examples']:,} rows); a BiLSTM ({args.hidden_size} hidden per "
        f"direction, {args.mlp_hidden_size}-unit ReLU layer) learns the teacher's logits (MSE) for {args.epochs} "
        "epochs with word vectors PCA-projected from the teacher's, then is quantized to int8 (linear, LSTM, "
        "embedding). The WordPiece row trims the teacher's vocabulary to the transfer set's tokens; the "
        "SentencePiece rows train a vocabulary on the transfer set's texts (`student.tokenizer: {train: "
        "sentencepiece}`), each piece starting from the mean teacher vector of the WordPiece tokens it spells. "
        f"Equal embedding bytes: {args.pieces:,} pieces at ⌊{wordpiece['embedding_params']:,} / {args.pieces:,}⌋ "
        f"= {dim} dimensions, no more than the WordPiece table ({kept:,} × {WORDPIECE_DIM})"
        + (f"; the last row instead keeps {WORDPIECE_DIM} dimensions with as many pieces as WordPiece kept"
           if "sentencepiece-equal" in rows else "") + ". Same training budget for every "
        "row; accuracy on the full SST-2 dev set.", "", *lines, "",
        f"Target (the {args.pieces:,}-piece SentencePiece BiLSTM reaches the trimmed-WordPiece BiLSTM's int8 dev "
        f"accuracy with embedding bytes no larger): **{'met' if met else 'missed'}** "
        f"({ours['int8_accuracy']:.4f} vs {wordpiece['int8_accuracy']:.4f}; embedding "
        f"{ours['embedding_params']:,} vs {wordpiece['embedding_params']:,} parameters).",
    ]
    publish(BEGIN, END, header, args)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(RESULTS, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
