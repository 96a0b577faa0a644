"""Benchmark: deployment (issue 16) -- distilkit students in PyTorch and ONNX Runtime against ORT int8 MiniLM.

Models (all from the SST-2 MiniLM teacher every benchmark shares, ``bench_common.sst2_minilm_teacher``):

* the teacher in PyTorch fp32, exported to ORT fp32 (``distilkit export``: ORT's transformer optimizer, fused
  attention) and to ORT dynamic int8 (the same export with ``--int8``: ONNX Runtime's ``quantize_dynamic``,
  per-channel weights -- what a user would pick), and to ORT int8 with ``--fp32-fallback auto`` (dynamic and
  static, calibrated on 512 train sentences; issue 26);
* distilkit's int8 MiniLM (``distilkit quantize --embedding int8``) in PyTorch, and exported to ORT;
* the teacher with 40% of its heads pruned, recovered for one epoch and int8-quantized, exported to ORT; and
  with 40% (and 50%) of its heads and of its FFN neurons pruned, recovered for two epochs (at batch 1 on
  SST-2's short sentences the FFN holds two thirds of each layer's weights, so heads alone remove little);
* the Tang BiLSTM distilled from the teacher (the quickstart recipe on full SST-2 sentences), int8, in PyTorch
  and in ORT.

Each model is built once into ``--cache-dir`` (so a rerun only times). Timing runs in three fresh processes
(``--timing-only``), each timing every model interleaved, round by round, at 1 and 2 threads and batch 1 and
32 on SST-2 dev sentences (tokenization excluded: the same pre-encoded batch each time). Accuracy is on all
872 dev sentences. A speed verdict is met only if it holds in all three processes.

    python scripts/bench_deploy.py --data-dir ../shared/glue
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import (
    ROOT,
    bench_parser,
    command_line,
    git_commit,
    publish,
    sst2_minilm_teacher,
    sst2_splits,
)

from distilkit.core.atomic import write_text_atomic
from distilkit.core.measure import MB, size_on_disk
from distilkit.data.metrics import compute_metrics
from distilkit.data.tasks import load_task
from distilkit.deploy.onnx_export import export_onnx
from distilkit.deploy.ort_runner import OnnxClassifier, TorchClassifier
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.convert import quantize_directory
from distilkit.run.distill import run
from distilkit.run.recipe_io import load_recipe, validate_recipe

BEGIN, END = "<!-- bench_deploy:begin -->", "<!-- bench_deploy:end -->"
RESULTS = ROOT / "docs" / "results" / "deploy.json"
#: The pruned rows: name -> (the pruned student's targets, recovery epochs). Each is int8 and served in ORT.
PRUNED = {"pruned40-int8-ort": ({"heads": 0.4}, 1), "pruned40-ffn40-int8-ort": ({"heads": 0.4, "ffn": 0.4}, 2),
          "pruned50-ffn50-int8-ort": ({"heads": 0.5, "ffn": 0.5}, 2)}
MAX_LENGTH = 64


def pruned_dir(cache: Path, name: str) -> Path:
    """The run folder of a :data:`PRUNED` row (``pruned40-int8-ort`` -> ``minilm-pruned40-int8``)."""
    return cache / name.removesuffix("-ort").replace("pruned", "minilm-pruned")


def build(args) -> dict[str, tuple[str, Path]]:
    """Every model of the table: name -> (runtime, folder). Built once into the cache."""
    cache = Path(args.cache_dir) / "deploy"
    teacher = Path(sst2_minilm_teacher(args.data_dir, args.cache_dir))
    int8 = cache / "minilm-int8"
    if not (int8 / "config.json").is_file():
        quantize_directory(teacher, int8, QuantizeConfig(linear="int8", embedding="int8"))
    for name, (targets, epochs) in PRUNED.items():
        pruned = pruned_dir(cache, name)
        if not (pruned / "model" / "metrics.json").is_file():
            run(validate_recipe({
                "task": "sst2", "output_dir": str(pruned),
                "data": {"dir": args.data_dir, "max_train_examples": 8000},
                "teacher": {"model": str(teacher), "max_length": MAX_LENGTH, "batch_size": 128},
                "student": {"kind": "pruned", **targets, "importance_examples": 256, "max_length": MAX_LENGTH},
                "loss": {"kind": "kl", "temperature": 2.0}, "cache": {"dir": str(args.cache_dir)},
                "train": {"epochs": epochs, "batch_size": 32, "lr": 2e-5, "warmup_ratio": 0.1, "keep_checkpoints": 1},
                "quantize": {"linear": "int8", "embedding": "int8"}, "measure": {"latency": False}}))
    bilstm = cache / "bilstm-int8"
    if not (bilstm / "model" / "metrics.json").is_file():
        recipe = load_recipe(ROOT / "recipes" / "quickstart" / "sst2-minilm-to-bilstm.yaml", [
            f"teacher.model={teacher}", "teacher.finetune=null", f"data.dir={args.data_dir}",
            "data.max_train_examples=20000", "train.epochs=3", f"output_dir={bilstm}",
            f"cache.dir={args.cache_dir}", "measure.latency=false", "quantize={linear: int8, embedding: int8}"])
        run(recipe)
    onnx = {}
    for name, source, options in (
            ("ort-fp32", teacher, {}), ("ort-int8", teacher, {"int8": "dynamic"}),
            ("ort-int8-fallback", teacher, {"int8": "dynamic", "fp32_fallback": "auto"}),
            ("ort-int8-static", teacher, {"int8": "static", "fp32_fallback": "auto"}),
            ("distilkit-int8-ort", int8, {}),
            *((name, pruned_dir(cache, name) / "model", {}) for name in PRUNED),
            ("bilstm-int8-ort", bilstm / "model", {})):
        out = cache / "onnx" / name
        report = out / "export.json"
        if not report.is_file() or "optimizer" not in json.loads(report.read_text()):  # exports before issue 26
            export_onnx(source, out, task="sst2", data_dir=args.data_dir, max_examples=872, max_length=MAX_LENGTH,
                        **options)
        onnx[name] = ("onnx", out)
    return {"minilm-fp32": ("torch", teacher), "minilm-ort-fp32": onnx["ort-fp32"],
            "minilm-ort-int8": onnx["ort-int8"], "minilm-ort-int8-fallback": onnx["ort-int8-fallback"],
            "minilm-ort-int8-static": onnx["ort-int8-static"], "distilkit-int8": ("torch", int8),
            "distilkit-int8-ort": onnx["distilkit-int8-ort"], **{name: onnx[name] for name in PRUNED},
            "bilstm-int8": ("torch", bilstm / "model"), "bilstm-int8-ort": onnx["bilstm-int8-ort"]}


def load(kind: str, folder: Path, threads: int):
    """ORT gets ``threads`` as its session's intra-op threads; PyTorch runs on torch's (set by the caller)."""
    return (OnnxClassifier(folder, threads=threads, max_length=MAX_LENGTH) if kind == "onnx"
            else TorchClassifier(folder, max_length=MAX_LENGTH))


def timed(classifier, batch: dict, repeats: int) -> float:
    """Median ms of one forward on a pre-encoded batch (ONNX Runtime session or PyTorch model)."""
    if isinstance(classifier, OnnxClassifier):
        feeds = {k: v.numpy().astype(np.int64) for k, v in batch.items() if k in classifier.inputs}
        call = lambda: classifier.session.run(["logits"], feeds)  # noqa: E731
    else:
        def call():
            with torch.inference_mode():
                classifier.model(**batch)
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def timing(models: dict, texts: list[str], rounds: int) -> dict:
    """One process: every model, interleaved round by round, at 1 and 2 threads, batch 1 and 32."""
    out: dict[str, dict[str, list[float]]] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)  # a benchmark script: it owns the process
        loaded = {name: load(kind, Path(folder), threads) for name, (kind, folder) in models.items()}
        batches = {name: {b: c.encode(c.tokenizer, texts[:b] if b > 1 else texts[7:8], None, MAX_LENGTH)
                          for b in (1, 32)} for name, c in loaded.items()}
        for _ in range(rounds):
            for name, c in loaded.items():
                for b in (1, 32):
                    ms = timed(c, batches[name][b], repeats=20 if b == 1 else 5)
                    out.setdefault(name, {}).setdefault(f"t{threads}_b{b}", []).append(ms)
    return {name: {k: round(statistics.median(v), 3) for k, v in cells.items()} for name, cells in out.items()}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--timing-only", metavar="OUT_JSON", default=None,
                        help="internal: time the built models in this process, write the medians to OUT_JSON")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    models = build(args)
    _, dev = sst2_splits(args.data_dir)
    texts = list(dev["text_a"])
    if args.timing_only:
        Path(args.timing_only).write_text(json.dumps(timing(models, texts, args.rounds)))
        return
    task, labels = load_task("sst2"), np.asarray(dev["label"])
    quality = {}
    for name, (kind, folder) in models.items():
        logits = load(kind, Path(folder), 2).logits(texts, None, batch_size=64)
        size = size_on_disk(folder) if kind == "torch" else (Path(folder) / "model.onnx").stat().st_size
        quality[name] = {"accuracy": round(compute_metrics(task, logits, labels)["accuracy"], 4),
                         "size_mb": round(size / MB, 2)}
    repeats = []
    for i in range(args.processes):  # fresh processes: a verdict must hold in every one
        out = Path(args.cache_dir) / "deploy" / f"timing-{i}.json"
        subprocess.run([sys.executable, __file__, "--data-dir", args.data_dir, "--cache-dir", args.cache_dir,
                        "--rounds", str(args.rounds), "--timing-only", str(out)], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        repeats.append(json.loads(out.read_text()))
    exports = {name: json.loads((Path(folder) / "export.json").read_text())
               for name, (kind, folder) in models.items() if kind == "onnx"}
    results = verdicts(quality, repeats, exports)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    commit = git_commit()
    write_text_atomic(RESULTS, json.dumps({"commit": commit, "quality": quality, "timing": repeats,
                                           "exports": exports, "results": results}, indent=1) + "\n")
    publish(BEGIN, END, render(quality, repeats, exports, results, time.perf_counter() - started, commit), args)


def _speedup(repeats, slow, fast, key):
    return [round(r[slow][key] / r[fast][key], 2) for r in repeats]


def verdicts(quality: dict, repeats: list[dict], exports: dict) -> list[dict]:
    rows = []

    def row(model, metric, values, target, met):
        rows.append({"task": "sst2", "model": model, "metric": metric, "value": values, "target": target,
                     "met": met})

    teacher_acc = quality["minilm-fp32"]["accuracy"]
    s = _speedup(repeats, "minilm-ort-int8", "bilstm-int8-ort", "t2_b1")
    gap = round(teacher_acc - quality["bilstm-int8-ort"]["accuracy"], 4)
    row("bilstm-int8-ort", "b1_speedup_vs_ort_int8_minilm_2_threads", s, 10.0, min(s) >= 10.0 and gap <= 0.04)
    row("bilstm-int8-ort", "accuracy_gap_to_teacher", gap, 0.04, gap <= 0.04)
    for key in ("t2_b1", "t2_b32"):
        s = _speedup(repeats, "minilm-ort-int8", "distilkit-int8-ort", key)
        better = quality["distilkit-int8-ort"]["accuracy"] >= quality["minilm-ort-int8"]["accuracy"]
        row("distilkit-int8-ort", f"{key}_speed_vs_ort_int8_same_model", s, 1.0, min(s) >= 1.0 and better)
    for name in PRUNED:
        gap = round(teacher_acc - quality[name]["accuracy"], 4)
        row(name, "accuracy_gap_to_teacher", gap, 0.01, gap <= 0.01)
        for key in ("t1_b1", "t2_b1", "t2_b32"):
            s = _speedup(repeats, "minilm-ort-int8", name, key)
            row(name, f"{key}_speedup_vs_ort_int8_teacher", s, 1.3, min(s) >= 1.3 and gap <= 0.01)
    s = _speedup(repeats, "minilm-fp32", "bilstm-int8-ort", "t1_b1")
    row("bilstm-int8-ort", "t1_b1_speedup_vs_pytorch_teacher", s, 15.0, min(s) >= 15.0)
    for name, report in exports.items():
        if report["precision"] == "fp32":
            row(name, "max_abs_logit_diff_vs_pytorch", report["max_abs_logit_diff"], 1e-4,
                report["max_abs_logit_diff"] <= 1e-4)
        else:
            delta = abs(report["dev_metrics_onnx"]["accuracy"] - report["dev_metrics_pytorch"]["accuracy"])
            row(name, "dev_accuracy_change_vs_pytorch", round(delta, 4), 0.003, delta <= 0.003)
    return rows


def render(quality, repeats, exports, results, seconds, commit: str) -> list[str]:
    base = "minilm-fp32"
    lines = ["## Deployment: PyTorch and ONNX Runtime side by side (issue 16)", "",
             command_line(seconds, details=(f"commit {commit}",)), "",
             "Latency in ms, the median of three fresh processes (each the median of interleaved rounds); "
             "speed-up against MiniLM fp32 in PyTorch at the same threads and batch. Tokenization excluded.", "",
             "| model | 1 thread b1 | 1 thread b32 | 2 threads b1 | 2 threads b32 | size MB | SST-2 dev |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in quality:
        cells = []
        for key in ("t1_b1", "t1_b32", "t2_b1", "t2_b32"):
            ms = statistics.median(r[name][key] for r in repeats)
            ref = statistics.median(r[base][key] for r in repeats)
            cells.append(f"{ms:.2f} ({ref / ms:.2f}×)")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {quality[name]['size_mb']:.1f} | "
                     f"{quality[name]['accuracy']:.4f} |")
    lines += ["", "| verdict | value (per process) | target | met |", "| --- | --- | ---: | --- |"]
    for r in results:
        lines.append(f"| {r['model']}: {r['metric']} | {r['value']} | {r['target']} | {r['met']} |")
    lines += ["", "Numbers: `docs/results/deploy.json`."]
    return lines


if __name__ == "__main__":
    main()
