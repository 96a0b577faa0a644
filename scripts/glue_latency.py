"""Fresh-process CPU latency for one GLUE task, called by ``bench_glue.py``: prints one JSON line.

The teacher, the two distilled students and the BERT-large architecture are timed interleaved, round by
round, on the task's dev sentences at batch 1 and 32 (a process that has just trained times small models up
to 1.6x slower, so this runs alone). BERT-large has random weights (24 layers, H=1024, 16 heads, FFN 4096, the
teacher's vocabulary): latency does not depend on the values. It is timed with fewer repeats at batch 32,
where one forward takes many seconds on two cores.

Both students are also served from ONNX Runtime (issue 26), exported with ``distilkit export`` into
``--onnx-dir`` (default: ``onnx/`` beside each student's folder; reused when already there): fp32 (transformer:
ORT's transformer optimizer, fused attention) and dynamic int8 with ``--fp32-fallback auto``, each checked on
every dev sentence (their dev metrics go into the JSON). ``--export-only`` makes the exports and stops:
``bench_glue.py`` runs it in a process of its own first, so that no timing process has just exported and
checked four models (its heap and caches would be another process's than the others'). ORT sessions get as
many intra-op threads as torch has (``--ort-threads`` to choose: small models at batch 1 are often fastest on
one), and are timed in the same rounds on the same encoded batches as the PyTorch models.

    python scripts/glue_latency.py --task sst2 --data-dir ../shared/glue --teacher T --bilstm B \
        --small-transformer S [--onnx-dir DIR] [--no-onnx]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from bench_common import DEFAULT_DATA_DIR
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)

from distilkit.core.measure import MB, count_parameters, cpu_latency_ms, repeated_inputs, size_on_disk
from distilkit.data.tasks import load_split, load_task
from distilkit.models.inference import encoder_for

#: ONNX Runtime variants of each student: name suffix -> export_onnx keywords.
ORT_VARIANTS = {"ort_fp32": {}, "ort_int8": {"int8": "dynamic", "fp32_fallback": "auto"}}


def onnx_exports(args, task) -> dict[str, Path]:
    """The ORT folders of both students, exported once (a folder without the optimizer's record is redone)."""
    from distilkit.deploy.onnx_export import export_onnx

    folders = {}
    for student, source in (("bilstm", args.bilstm), ("small_transformer", args.small_transformer)):
        root = Path(args.onnx_dir) / task.name / student if args.onnx_dir else Path(source).parent / "onnx"
        for variant, options in ORT_VARIANTS.items():
            out = root / variant
            report = out / "export.json"
            if not report.is_file() or "optimizer" not in json.loads(report.read_text()):
                export_onnx(source, out, task=task.name, data_dir=args.data_dir, max_examples=None,
                            max_length=args.max_length, **options)
            folders[f"{student}_{variant}"] = out
    return folders


def ort_timing(classifier, texts, pairs, batch_size: int, repeats: int, warmup: int) -> float:
    """Median ms of one ORT forward on the batch :func:`repeated_inputs` builds for PyTorch (same sentences)."""
    reps = -(-batch_size // len(texts))
    run = classifier.runner((texts * reps)[:batch_size], None if pairs is None else (pairs * reps)[:batch_size])
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)

BERT_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--bilstm", required=True)
    parser.add_argument("--small-transformer", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128, help="the recipes' teacher and student max_length")
    parser.add_argument("--onnx-dir", default=None, help="where the ORT exports go (default: beside each student)")
    parser.add_argument("--no-onnx", action="store_true", help="time the PyTorch models only")
    parser.add_argument("--export-only", action="store_true", help="make the ORT exports, time nothing")
    parser.add_argument("--ort-threads", type=int, default=None,
                        help="ORT sessions' intra-op threads (default: as many as torch has)")
    args = parser.parse_args()

    task = load_task(args.task)
    if args.export_only:
        print(json.dumps({name: str(folder) for name, folder in onnx_exports(args, task).items()}))
        return
    dev = load_split(task, task.eval_splits[0], data_dir=args.data_dir, max_examples=64, seed=0)
    texts, pairs = list(dev["text_a"]), (list(dev["text_b"]) if task.is_pair else None)
    models, sizes = {}, {}
    for name, path in (("teacher", args.teacher), ("bilstm", args.bilstm),
                       ("small_transformer", args.small_transformer)):
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        models[name] = (model, AutoTokenizer.from_pretrained(path))
        sizes[name] = round(size_on_disk(path) / MB, 3)
    teacher_model, teacher_tokenizer = models["teacher"]
    config = BertConfig(vocab_size=teacher_model.config.vocab_size, num_labels=task.num_labels,
                        max_position_embeddings=512, **BERT_LARGE)
    models["bert_large"] = (BertForSequenceClassification(config).eval(), teacher_tokenizer)
    params = {name: count_parameters(model) for name, (model, _) in models.items()}
    sizes["bert_large"] = round(params["bert_large"] * 4 / MB, 3)  # fp32 weights, as a checkpoint holds them
    served, ort_reports = {}, {}
    if not args.no_onnx:
        from distilkit.deploy.ort_runner import OnnxClassifier

        for name, folder in onnx_exports(args, task).items():
            served[name] = OnnxClassifier(folder, threads=args.ort_threads or torch.get_num_threads(),
                                          max_length=args.max_length)
            report = json.loads((folder / "export.json").read_text())
            params[name] = params[name.rsplit("_ort_", 1)[0]]
            sizes[name] = round((folder / "model.onnx").stat().st_size / MB, 3)
            ort_reports[name] = {k: report.get(k) for k in ("precision", "dev_metrics_onnx", "dev_metrics_pytorch",
                                                              "checked_rows", "max_abs_logit_diff")}
            ort_reports[name]["fused"] = report["optimizer"].get("fused")
            ort_reports[name]["fp32_nodes"] = (report.get("int8") or {}).get("fp32_nodes")

    samples: dict[str, dict[str, list[float]]] = {name: {} for name in (*models, *served)}
    for _ in range(args.rounds):
        for name, classifier in served.items():
            for batch_size in (1, 32):
                samples[name].setdefault(f"b{batch_size}", []).append(
                    ort_timing(classifier, texts, pairs, batch_size, repeats=10, warmup=2))
        for name, (model, tokenizer) in models.items():
            make = repeated_inputs(encoder_for(model), tokenizer, texts, pairs, args.max_length)
            for batch_size in (1, 32):
                slow = name == "bert_large" and batch_size == 32
                timed = cpu_latency_ms(model, make, batch_sizes=(batch_size,), repeats=1 if slow else 10,
                                       warmup=1 if slow else 2)
                samples[name].setdefault(f"b{batch_size}", []).extend(timed.values())
    latency = {name: {k: round(statistics.median(v), 3) for k, v in s.items()} for name, s in samples.items()}
    print(json.dumps({"latency_ms": latency, "params": params, "size_mb": sizes, "rounds": args.rounds,
                      "threads": torch.get_num_threads(), "bert_large_config": BERT_LARGE,
                      "dev_sentences": len(texts), "ort": ort_reports,
                      "ort_threads": args.ort_threads or torch.get_num_threads()}))


if __name__ == "__main__":
    main()
