"""Shared pieces of the benchmark scripts: the fine-tuned MiniLM SST-2 teacher and the SST-2 data.

Every benchmark in ``scripts/`` that needs "MiniLM fine-tuned on SST-2" calls :func:`sst2_minilm_teacher`
with the same settings, so the teacher is fine-tuned once per cache directory and shared (the cache key
hashes the base weights, the data and the hyper-parameters; see ``distilkit.models.finetune``).

    from bench_common import sst2_minilm_teacher, sst2_splits
    teacher_dir = sst2_minilm_teacher(data_dir, cache_dir)       # a BertForSequenceClassification directory
    train, dev = sst2_splits(data_dir, train_examples=8000)       # normalized id/text_a/text_b/label tables
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from distilkit.core.measure import interleaved_latency_ms, repeated_inputs  # noqa: E402
from distilkit.data.tasks import load_split, load_task  # noqa: E402
from distilkit.models.config import FinetuneConfig, TeacherConfig  # noqa: E402
from distilkit.models.finetune import finetune_teacher  # noqa: E402
from distilkit.models.inference import encoder_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "glue"
DEFAULT_CACHE_DIR = Path(os.environ.get("DISTILKIT_BENCH_CACHE", Path.home() / ".cache" / "distilkit-bench"))
#: Teacher settings shared by every benchmark (and by ``bench_distill.py``'s recipe): 2 epochs on 8,000
#: random SST-2 train sentences, max_length 64 -- about 7 minutes on 2 CPU cores.
TEACHER_EXAMPLES = 8000
TEACHER_MAX_LENGTH = 64
FINETUNE = {"epochs": 2, "batch_size": 32, "lr": 5e-5, "max_length": TEACHER_MAX_LENGTH,
            "max_examples": TEACHER_EXAMPLES}


def sst2_splits(data_dir: str | Path = DEFAULT_DATA_DIR, *, train_examples: int | None = None,
                eval_examples: int | None = None, seed: int = 42):
    """SST-2 train (optionally a seeded random subset) and dev, normalized to id/text_a/text_b/label."""
    task = load_task("sst2")
    train = load_split(task, "train", data_dir=data_dir, max_examples=train_examples, seed=seed)
    dev = load_split(task, "validation", data_dir=data_dir, max_examples=eval_examples, seed=seed)
    return train, dev


def sst2_minilm_teacher(data_dir: str | Path = DEFAULT_DATA_DIR, cache_dir: str | Path = DEFAULT_CACHE_DIR,
                        seed: int = 42, overrides: dict | None = None) -> Path:
    """Directory of all-MiniLM-L6-v2 fine-tuned on SST-2 (fine-tuned on first use, cached afterwards).

    ``seed`` (``finetune.seed``: the train subset, the new head's initialisation and the example order) gives
    another teacher of the same recipe (``bench_ensemble.py``'s ensemble); ``overrides`` replace
    :data:`FINETUNE` keys (``--quick`` budgets). The default, seed 42 without overrides, is the exact settings,
    data and cache key every benchmark has always used."""
    task = load_task("sst2")
    finetune = {**FINETUNE, **(overrides or {})}
    if seed != 42:
        finetune["seed"] = seed
    train, dev = sst2_splits(data_dir, train_examples=finetune["max_examples"], seed=finetune.get("seed", 42))
    cfg = TeacherConfig(model="minilm", max_length=TEACHER_MAX_LENGTH, batch_size=128,
                        finetune=FinetuneConfig(**finetune))
    return finetune_teacher(cfg, task, train, dev, cache_dir=cache_dir)


def git_commit() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes outside docs/), recorded with every cell.

    docs/ is left out: it holds the benchmarks' own output (results JSON, docs/benchmarks.md), which a running
    benchmark rewrites after every cell; only a change to code or recipes makes a cell's numbers differ."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def write_section(begin: str, end: str, section: str) -> None:
    """Replace the text between ``begin`` and ``end`` markers in docs/benchmarks.md (append if absent)."""
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    doc.write_text(text)


def interleaved_latency(models: dict, tokenizer, texts: list[str], max_length: int, rounds: int,
                        batch_sizes=(1, 32)) -> dict[str, dict[str, float]]:
    """Median CPU latency (ms) per model and batch size, every model timed in every round (side by side)."""
    candidates = {name: (model, repeated_inputs(encoder_for(model), tokenizer, texts, None, max_length))
                  for name, model in models.items()}
    return interleaved_latency_ms(candidates, rounds, batch_sizes=batch_sizes, repeats=10)


def require_sst2(data_dir: str | Path) -> None:
    """Exit with a clear message unless ``data_dir`` holds the SST-2 TSVs every benchmark reads."""
    missing = [name for name in ("train.tsv", "dev.tsv") if not (Path(data_dir) / "SST-2" / name).is_file()]
    if missing:
        raise SystemExit(f"SST-2 not found under {data_dir}: missing SST-2/{', SST-2/'.join(missing)} "
                         "(pass --data-dir, the GLUE TSV root)")


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --data-dir, --cache-dir, --quick, --no-write."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="GLUE TSV root (with SST-2/)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="teacher, logit and transfer-set cache")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for checking the script works")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    return parser


def command_line(total_seconds: float, *, argv: list[str] | None = None, details: tuple[str, ...] = (),
                 note: str = "", threads: str | None = None) -> str:
    """The provenance sentence every benchmark section starts with: the exact command, date, CPU threads,
    optional ``details`` (versions) and the total wall time (``note`` goes right after it). ``threads``: what
    the cells ran with, for a table rendered from cells that ran in other processes (default: this process's)."""
    import time

    import torch

    script = Path(sys.argv[0]).name
    command = f"python scripts/{script} " + " ".join(sys.argv[1:] if argv is None else argv)
    extra = "".join(f"{d}, " for d in details)
    return (f"Command: `{command.strip()}` — {time.strftime('%Y-%m-%d')}, {threads or torch.get_num_threads()} CPU threads, "
            f"{extra}total wall time {total_seconds / 60:.1f} min{note}.")


def publish(begin: str, end: str, lines: list[str], args, results: list[dict] | None = None,
            results_path: Path | None = None) -> None:
    """Print the section and, unless --no-write, put it into docs/benchmarks.md between its markers and the
    ``results`` rows (task, model, metric, value, target, met) into ``results_path`` (docs/results/<name>.json)."""
    section = "\n".join([begin, *lines, end])
    print(section)
    if args.no_write:
        return
    write_section(begin, end, section)
    if results_path is not None:
        from distilkit.core.atomic import write_text_atomic

        results_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(results_path, json.dumps(results or [], indent=1) + "\n")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
