"""``distilkit export MODEL_DIR --onnx OUT_DIR [--int8 [dynamic|static]] [--optimize LEVEL]``: any saved student
as an ONNX Runtime folder.

Every student kind exports with ``torch.onnx`` (TorchScript tracing, dynamic batch and sequence axes):
transformer students, pruned models with uneven heads per layer, vocabulary-trimmed students, linear-attention
variants, and the BiLSTM through :class:`~distilkit.deploy.onnx_graphs.ExportableBiLSTM`. optimum-onnx is not
used: its releases pin ``transformers<4.58`` and distilkit runs on transformers 5.

distilkit-quantized models are exported from the float weights their integers represent and then quantized by
ONNX Runtime (dynamic int8, per channel), so they stay integer; ``--int8`` does the same for float models, and
``--int8 static`` calibrates activation ranges on training sentences instead (:mod:`~distilkit.deploy.ort_quantize`,
which also keeps the nodes whose int8 costs accuracy in fp32 with ``--fp32-fallback auto``).

Transformer students go through ONNX Runtime's transformer optimizer first (``--optimize``, default ``basic``:
fused attention, skip-layer-norm, bias-GELU and embedding-layer-norm kernels; :mod:`~distilkit.deploy.ort_optimize`),
and int8 is applied to the fused graph (``Attention`` becomes ORT's integer ``QAttention``).

The folder holds ``model.onnx``, the tokenizer, ``config.json`` (labels) and ``export.json``: ONNX Runtime's
logits checked against the PyTorch model on real dev sentences (max |difference|) and both dev metrics, what the
optimizer fused, and for int8 the fp32 graph's own check, the calibration rows, the nodes kept in fp32 and int8's
agreement with fp32 on the calibration rows. It is written atomically: a failed export leaves nothing in OUT_DIR.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distilkit.core.atomic import atomic_directory
from distilkit.core.errors import DistilkitError, ExportError
from distilkit.core.faults import fault_point
from distilkit.core.saved_files import FLOAT_ON_LOAD, read_json
from distilkit.core.yaml_files import read_yaml
from distilkit.data.metrics import compute_metrics
from distilkit.data.tasks import TaskSpec, load_split, load_task
from distilkit.deploy.onnx_graphs import ExportableBiLSTM
from distilkit.deploy.ort_optimize import check_level, optimize_graph, use_fusable_attention
from distilkit.deploy.ort_quantize import check_int8_mode, quantize_with_fallback
from distilkit.deploy.ort_runner import OnnxClassifier, at_least_one_column, encoder_for_type
from distilkit.methods.quantization.convert import dequantize_model
from distilkit.models.inference import load_saved
from distilkit.models.lora_layers import ADAPTER_DIR, apply_saved_adapter

ONNX_FILE = "model.onnx"
REPORT_FILE = "export.json"


class TransformerLogits(nn.Module):
    """A ``*ForSequenceClassification`` model returning only its logits (what the graph outputs)."""

    def __init__(self, model, with_token_types: bool):
        super().__init__()
        self.model, self.with_token_types = model, with_token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"token_type_ids": token_type_ids} if self.with_token_types else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits


def check_model_dir(model_dir: Path) -> dict:
    """The folder's ``config.json``; a named error if it is not a saved model."""
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"{model_dir}: not a saved model folder (no config.json); pass a run's OUTPUT_DIR/model")
    return read_json(model_dir / "config.json")


def dev_rows(model_dir: Path, task: str | None, data_dir: str | None, max_examples: int) -> tuple[TaskSpec, list]:
    """Real dev sentences to check the export on: ``--task``/``--data-dir``, else the run's saved recipe."""
    saved = model_dir / "recipe.yaml"
    if task is None and saved.is_file():
        recipe = read_yaml(saved, "saved recipe")
        task, data_dir = recipe.get("task"), data_dir or (recipe.get("data") or {}).get("dir")
    if task is None:
        raise ExportError(f"{model_dir}: no recipe.yaml names its task; pass --task (and --data-dir) so the export "
                          "can be checked on dev sentences")
    try:
        spec = load_task(task)
        rows = load_split(spec, spec.eval_splits[0], data_dir=data_dir, max_examples=max_examples, seed=0)
    except DistilkitError as exc:
        raise ExportError(f"{model_dir}: cannot read the dev sentences to check the export on: {exc}") from None
    return spec, list(rows)


def calibration_rows(spec: TaskSpec, data_dir: str | None, source: str | None, rows: int) -> list:
    """Sentences to calibrate int8 on: a transfer set (``distilkit augment``'s table) or the train split.

    Raises:
        ExportError: ``rows`` is not positive, or the set is empty or unreadable (named before any export work).
    """
    if rows <= 0:
        raise ExportError(f"--calibrate: needs a positive number of rows (got {rows})")
    where, table = source or f"the {spec.name} train split", None
    if source is not None and not Path(source).is_dir():
        raise ExportError(f"--calibration-data: {source}: no such folder (a transfer set saved by distilkit augment)")
    state = Path(source or ".") / "state.json"
    if source is not None and state.is_file() and not read_json(state).get("_data_files"):
        table = []  # a table saved with no rows has no shards, which datasets cannot load
    try:
        if source is not None and table is None:
            import datasets

            table = datasets.load_from_disk(source)
        elif source is None:
            table = load_split(spec, "train", data_dir=data_dir, max_examples=rows, seed=0)
    except DistilkitError as exc:
        raise ExportError(f"--calibrate: cannot read {where} to calibrate int8 on: {exc}") from None
    except Exception as exc:  # datasets' own errors for a folder that is not a saved table
        raise ExportError(f"--calibration-data: {source}: not a saved table ({type(exc).__name__}: {exc})") from None
    if len(table) == 0:
        raise ExportError(f"--calibration-data: {where} has no rows to calibrate int8 on")
    if source is not None:
        table = table.select(range(min(rows, len(table))))
    missing = [c for c in ("text_a", *(("text_b",) if spec.is_pair else ())) if c not in table.column_names]
    if missing:
        raise ExportError(f"--calibration-data: {where} has no column {missing[0]!r}")
    return list(table)


def check_flags(optimize: str, int8: str | None, calibrate: int, fp32_fallback: str | list[str],
                tolerance: float) -> str | list[str]:
    """The export flags checked before anything is read; returns the fallback as ``none``/``auto``/node names."""
    check_level(optimize)
    check_int8_mode(int8)
    if int8 is not None and calibrate <= 0:
        raise ExportError(f"--calibrate: needs a positive number of rows (got {calibrate})")
    if not 0 <= tolerance < 1:
        raise ExportError(f"--fallback-tolerance: a fraction in [0, 1) (got {tolerance})")
    if isinstance(fp32_fallback, str) and fp32_fallback not in ("none", "auto"):
        fp32_fallback = [name.strip() for name in fp32_fallback.split(",") if name.strip()]
    return fp32_fallback


def check_tolerance_resolves(fp32_fallback, tolerance: float, rows: int, spec: TaskSpec) -> None:
    """``auto`` fallback on a classifier measures disagreement in whole changed predictions (1/rows each): a
    tolerance that allows less than one silently asks for exact agreement, keeping many more nodes in fp32 than
    the user meant. Say so before anything is exported (0 asks for exact agreement on purpose)."""
    if fp32_fallback != "auto" or spec.is_regression or tolerance == 0 or rows == 0 or tolerance * rows >= 1:
        return
    raise ExportError(
        f"--fallback-tolerance {tolerance:g} on {rows} calibration rows allows {tolerance * rows:.2f} changed "
        f"predictions, fewer than one, so it would demand exact agreement: pass --calibrate "
        f"{math.ceil(1 / tolerance)} or more, a tolerance of at least {1 / rows:.4f}, or 0 for exact agreement")


def export_onnx(model_dir: str | Path, out_dir: str | Path, *, int8: bool | str = False, task: str | None = None,
                data_dir: str | None = None, max_examples: int = 256, max_length: int = 128,
                opset: int = 17, optimize: str = "basic", calibrate: int = 512,
                calibration_data: str | None = None, fp32_fallback: str | list[str] = "none",
                fallback_tolerance: float = 0.003) -> dict:
    """Export a saved student to ``out_dir`` (see the module doc) and return ``export.json``'s content.

    Args:
        model_dir: A ``save_pretrained`` folder.
        out_dir: The ONNX folder to write (atomically).
        int8: ``"dynamic"`` (``True``), ``"static"`` or ``False``; distilkit-quantized models are dynamic int8.
        task: Task of the dev rows the export is checked on (default: the folder's ``recipe.yaml``).
        data_dir: Where the task's data is.
        max_examples: Dev rows checked.
        max_length: Tokens per sentence.
        opset: ONNX opset.
        optimize: ORT transformer optimizer level for transformer students (:data:`OPTIMIZE_LEVELS`;
            ``none`` skips it). BiLSTM graphs have nothing it fuses.
        calibrate: Rows of the calibration set int8 is calibrated and checked on.
        calibration_data: A transfer set (``distilkit augment`` output); default: the task's train split.
        fp32_fallback: ``none``, ``auto`` or node names (a list or comma-separated) kept in fp32.
        fallback_tolerance: ``auto``'s bound on int8's disagreement with fp32 on the calibration rows.

    Raises:
        ExportError: not a model folder, ``int8`` on an already-integer model, a bitsandbytes model, a variant
            ONNX cannot express (the message names the model type), an optimizer level ORT does not have, an
            empty calibration set; OUT_DIR is left untouched.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    mode = "dynamic" if int8 is True else (int8 or None)
    fp32_fallback = check_flags(optimize, mode, calibrate, fp32_fallback, fallback_tolerance)
    config = check_model_dir(model_dir)
    quant = (config.get("quantization_config") or {}).get("quant_method")
    quant = None if quant in FLOAT_ON_LOAD else quant
    if quant and quant != "distilkit":
        raise ExportError(f"{model_dir}: {quant} models cannot be exported (their kernels have no ONNX form); "
                          "export the float model and pass --int8")
    if quant and mode:
        raise ExportError(f"{model_dir}: --int8 on a model that is already integer (distilkit-quantized); export "
                          "it without --int8: it is re-quantized by ONNX Runtime from the weights it stores")
    mode = mode or ("dynamic" if quant else None)
    if fp32_fallback != "none" and mode is None:
        raise ExportError("--fp32-fallback: only applies to int8 exports (--int8, or a distilkit-quantized model)")
    spec, rows = dev_rows(model_dir, task, data_dir, max_examples)
    calibration = []
    if mode:
        try:
            calibration = calibration_rows(spec, data_dir, calibration_data, calibrate)
        except ExportError:
            # Plain dynamic int8 needs no calibration: its agreement check is skipped when there is no train split.
            if mode == "static" or fp32_fallback != "none" or calibration_data is not None or calibrate <= 0:
                raise
    check_tolerance_resolves(fp32_fallback, fallback_tolerance, len(calibration), spec)
    reference, tokenizer = load_saved(model_dir)
    model, _ = load_saved(model_dir, tokenizer=False, adapter=False)
    dequantized = dequantize_model(model)
    if (model_dir / ADAPTER_DIR / "adapter_config.json").is_file():  # train.lora beside integer weights: the
        apply_saved_adapter(model, model_dir / ADAPTER_DIR)  # adapter goes on the dequantized layers, into the graph
    model_type = config.get("model_type", "")
    encode = encoder_for_type(model_type)
    transformer = model_type != "distilkit-bilstm"
    traced_from = use_fusable_attention(model) if transformer and optimize != "none" else None
    graph, sample = _graph_and_sample(model, model_type, tokenizer, encode, max_length)
    names = list(sample)
    axes = {name: {0: "batch", 1: f"sequence{'_b' if name.endswith('_b') else ''}"} for name in names}
    start = time.perf_counter()
    for stale in out_dir.parent.glob(f".{out_dir.name}.*.tmp"):  # what a killed export of OUT_DIR left
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_directory(out_dir) as tmp:
        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
                torch.onnx.export(graph, (), str(tmp / ONNX_FILE), kwargs=sample, input_names=names,
                                  output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}},
                                  opset_version=opset, dynamo=False)
        except Exception as exc:  # the exporter's own errors are many and undocumented
            raise ExportError(f"{model_dir}: model type '{model_type}' cannot be expressed in ONNX: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
        fault_point("export.written")  # the graph is on disk, the folder not yet published
        optimizer = {"level": "none"}
        if transformer and optimize != "none":
            optimizer = {**optimize_graph(tmp / ONNX_FILE, config, optimize), "traced_attention": "eager"
                         if traced_from else getattr(model.config, "_attn_implementation", None)}
        elif not transformer:
            optimizer = {"level": "none", "why": "the transformer optimizer has no fusions for an LSTM graph"}
        report = {"source": str(model_dir), "model_type": model_type, "precision": "int8" if mode else "fp32",
                  "opset": opset, "dequantized_layers": dequantized, "task": spec.name, "is_pair": spec.is_pair,
                  "max_length": max_length, "optimizer": optimizer}
        tokenizer.save_pretrained(tmp)
        shutil.copy(model_dir / "config.json", tmp / "config.json")
        if mode:
            report["fp32_graph"] = _fidelity(reference, tokenizer, encode, OnnxClassifier(tmp, max_length=max_length),
                                             spec, rows, max_length)
            report["int8"] = _quantize(tmp / ONNX_FILE, mode, calibration, tokenizer, encode, spec, max_length,
                                       fp32_fallback, fallback_tolerance)
            report["int8"]["calibration"] = {"source": (calibration_data or f"{spec.name} train split")
                                             if calibration else None, "rows": len(calibration)}
        report["export_seconds"] = round(time.perf_counter() - start, 2)
        report.update(_fidelity(reference, tokenizer, encode, OnnxClassifier(tmp, max_length=max_length), spec, rows,
                                max_length))
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def _graph_and_sample(model, model_type: str, tokenizer, encode, max_length: int):
    texts, pairs = ["a short sentence", "another one, somewhat longer"], ["one more", "and a last"]
    if model_type == "distilkit-bilstm":
        batch = encode(tokenizer, texts, pairs if model.config.is_pair else None, max_length)
        return ExportableBiLSTM(model).eval(), dict(batch)
    batch = dict(encode(tokenizer, texts, pairs, max_length))
    uses_types = "token_type_ids" in batch and getattr(model.config, "type_vocab_size", 0) > 1
    sample = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if uses_types:
        sample["token_type_ids"] = batch["token_type_ids"]
    return TransformerLogits(model, uses_types).eval(), sample


def _quantize(path: Path, mode: str, rows: list, tokenizer, encode, spec: TaskSpec, max_length: int,
              fallback, tolerance: float) -> dict:
    """int8 in place (:mod:`distilkit.deploy.ort_quantize`), calibrated and checked on ``rows``."""
    import onnxruntime as ort

    inputs = {i.name for i in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()}
    texts = [r["text_a"] or "" for r in rows]
    pairs = [r["text_b"] or "" for r in rows] if spec.is_pair else None
    feeds = []
    for i in range(0, len(rows), 32):
        batch = encode(tokenizer, texts[i:i + 32], None if pairs is None else pairs[i:i + 32], max_length)
        feeds.append({k: at_least_one_column(v).numpy().astype(np.int64) for k, v in batch.items() if k in inputs})

    def run(onnx_path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(["logits"], feed)[0] for feed in feeds]).astype(np.float32)

    scores = [r.get("label") for r in rows] if spec.is_regression else []
    labels = (np.asarray(scores, dtype=np.float64) if scores and all(
        isinstance(v, (int, float)) and math.isfinite(v) for v in scores) else None)  # a transfer set may lack them
    return quantize_with_fallback(path, mode, feeds, run, fallback=fallback, tolerance=tolerance, labels=labels)


def _fidelity(reference, tokenizer, encode, session: OnnxClassifier, spec: TaskSpec, rows: list,
              max_length: int) -> dict:
    """Max |ORT - PyTorch| logit difference and both dev metrics on the same rows."""
    texts = [r["text_a"] for r in rows]
    pairs = [r["text_b"] for r in rows] if spec.is_pair else None
    ort_logits = session.logits(texts, pairs, batch_size=32)
    torch_logits = []
    with torch.inference_mode():
        for i in range(0, len(rows), 32):
            batch = encode(tokenizer, texts[i:i + 32], None if pairs is None else pairs[i:i + 32], max_length)
            torch_logits.append(reference(**batch).logits.float().numpy())
    torch_logits = np.concatenate(torch_logits)
    labels = np.asarray([r["label"] for r in rows])
    return {"checked_rows": len(rows), "max_abs_logit_diff": float(np.abs(ort_logits - torch_logits).max()),
            "dev_metrics_onnx": compute_metrics(spec, ort_logits, labels),
            "dev_metrics_pytorch": compute_metrics(spec, torch_logits, labels)}
