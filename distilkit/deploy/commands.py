"""The ``export`` and ``predict`` commands (parsed in :mod:`distilkit.cli`)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from distilkit.core.errors import DataError, ExportError
from distilkit.deploy.onnx_export import export_onnx
from distilkit.deploy.ort_runner import OnnxClassifier, load_classifier, predict
from distilkit.deploy.serving_latency import time_classifiers, timing_table


def export_command(args) -> None:
    """``distilkit export MODEL_DIR --onnx OUT_DIR [--int8 [dynamic|static]] [--optimize LEVEL] ...``."""
    report = export_onnx(args.model_dir, args.onnx, int8=args.int8 or False, task=args.task, data_dir=args.data_dir,
                         max_examples=args.max_examples, max_length=args.max_length, optimize=args.optimize,
                         calibrate=args.calibrate, calibration_data=args.calibration_data,
                         fp32_fallback=args.fp32_fallback, fallback_tolerance=args.fallback_tolerance)
    metric = next(iter(report["dev_metrics_onnx"]), None)
    print(f"{args.model_dir} -> {Path(args.onnx) / 'model.onnx'} ({report['precision']}): max |logit difference| "
          f"{report['max_abs_logit_diff']:.2e} on {report['checked_rows']} {report['task']} dev rows; {metric} "
          f"{report['dev_metrics_pytorch'][metric]:.4f} (PyTorch) / {report['dev_metrics_onnx'][metric]:.4f} (ONNX)")
    fused = report["optimizer"].get("fused")
    if fused is not None:
        print(f"optimizer ({report['optimizer']['level']}): " + (", ".join(f"{n} {k}" for k, n in fused.items())
                                                                 or "nothing fused"))
    if "int8" in report:
        q = report["int8"]
        agreement = ("no calibration rows (no train split)" if q["calibration_disagreement"] is None else
                     f"int8 changes {100 * q['calibration_disagreement']:.2f}% of {q['calibration']['rows']} calibration "
                     "predictions (regression: 1 - Pearson r x 100)")
        print(f"int8 {q['mode']}: {len(q['fp32_nodes'])} of {q['quantizable_nodes']} nodes kept fp32; {agreement}")


def read_texts(path: Path, text_a: str | None, text_b: str | None) -> tuple[list[str], list[str] | None]:
    """Sentences from a TSV with a header row: ``text_a``/``text_b`` columns by name (default: the first one)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            rows = [row for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc.reason}); re-encode the file as UTF-8") from None
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and at least one sentence")
    header = rows[0]

    def column(name: str | None, default: int | None) -> int | None:
        if name is None:
            return default
        if name not in header:
            raise DataError(f"{path}: column {name!r} not found; columns: {header}")
        return header.index(name)

    a, b = column(text_a, 0), column(text_b, None)
    needed = max(i for i in (a, b) if i is not None) + 1
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < needed:
            raise DataError(f"{path}:{number}: {len(row)} fields, expected at least {needed}")
    return [r[a] for r in rows[1:]], (None if b is None else [r[b] for r in rows[1:]])


def predict_command(args) -> None:
    """``distilkit predict MODEL_DIR "text" ["text b"] | --file F.tsv [--time]``: labels and probabilities, as TSV.

    ``--threads`` sets an ONNX folder's session threads; for a PyTorch folder it is the user asking for torch's
    process-wide setting, so it is set here, at the command, never inside the library.
    """
    if args.threads and not (Path(args.model_dir) / "model.onnx").is_file():
        import torch

        torch.set_num_threads(args.threads)
    classifier = load_classifier(args.model_dir, threads=args.threads)
    if args.file:
        texts, pairs = read_texts(Path(args.file), args.text_a, args.text_b)
    elif args.texts:
        if len(args.texts) > 2:
            raise ExportError("distilkit predict: give one sentence, or two for a pair task (or --file)")
        texts, pairs = [args.texts[0]], (args.texts[1:] or None)
    else:
        raise ExportError("distilkit predict: give a sentence (and a second one for pair tasks) or --file F.tsv")
    if getattr(classifier, "is_pair", False) and pairs is None:
        raise ExportError(f"{args.model_dir}: a sentence-pair model; give the second sentence (or --text-b)")
    results = predict(classifier, texts, pairs, batch_size=args.batch_size)
    out = sys.stdout
    if "score" in results[0]:
        out.write("score\n" + "".join(f"{r['score']:.4f}\n" for r in results))
        return
    names = list(results[0]["probabilities"])
    out.write("\t".join(["label", *names]) + "\n")
    for r in results:
        out.write("\t".join([r["label"], *(f"{r['probabilities'][n]:.4f}" for n in names)]) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    if args.time:
        time_command(args, classifier, texts, pairs)


def time_command(args, classifier, texts: list[str], pairs: list[str] | None) -> dict:
    """``predict --time``: the model and ``--against`` (default: an ONNX folder's PyTorch source), interleaved,
    at batch 1 and ``--batch-size``; the table goes to stderr (stdout keeps the predictions)."""
    source = classifier.source if isinstance(classifier, OnnxClassifier) else None
    other = args.against or (source if source and (Path(source) / "config.json").is_file() else None)
    models = {f"{Path(args.model_dir).name} ({_runtime(classifier)})": classifier}
    if other:
        if not Path(other).is_dir():
            raise ExportError(f"--against: {other}: no such folder")
        second = load_classifier(other, threads=args.threads)
        models[f"{Path(other).name} ({_runtime(second)})"] = second
    latency = time_classifiers(models, texts, pairs, batch_sizes=tuple(dict.fromkeys((1, args.batch_size))),
                               rounds=args.rounds)
    print(timing_table(latency, reference=list(models)[-1]), file=sys.stderr)
    return latency


def _runtime(classifier) -> str:
    if isinstance(classifier, OnnxClassifier):
        return f"ORT {classifier.precision}"
    return "PyTorch"
