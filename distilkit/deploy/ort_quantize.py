"""ONNX Runtime int8 for exported students: dynamic or static (calibrated), with per-node fp32 fallback (issue 26).

* ``dynamic``: ``quantize_dynamic``, per-channel int8 weights, activations quantized at run time (integer
  ``MatMulInteger``/``QAttention``/``DynamicQuantizeLSTM`` kernels). No calibration needed.
* ``static``: ``quantize_static`` in QDQ form (ORT's recommended CPU format): per-channel int8 weights, uint8
  activations whose ranges are fixed by MinMax calibration on sentences the model was trained on (the transfer
  set or the train split, never the dev rows the export is checked on). The ranges are computed once and
  cached, so trying many fallback sets costs no further calibration.

Per-node fp32 fallback (``fallback="auto"``) keeps in float the nodes whose quantization moves the logits most,
until int8 agrees with fp32 on the calibration rows within ``tolerance``:

1. each quantizable node is quantized *alone* and scored by the mean squared logit change it causes on the
   calibration rows (its sensitivity);
2. with every node quantized, the disagreement with fp32 is measured (classification: the fraction of
   calibration rows whose predicted class changes; regression: ``1 - r`` of int8 and fp32 scores, or the change
   of Pearson r against the rows' gold scores where that is larger; :func:`disagreement`);
3. while it exceeds ``tolerance``, the 1, 2, 4, ... most sensitive nodes are kept in fp32.

This is the layer-wise sensitivity analysis of mixed-precision post-training quantization (e.g. Wu et al. 2020,
"Integer Quantization for Deep Learning Inference", arXiv:2004.09602, Sec. 6: "partial quantization" keeps
the most sensitive layers in floating point).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from distilkit.core.errors import ExportError

INT8_MODES = ("dynamic", "static")


def check_int8_mode(mode: str | None) -> None:
    """Raises :class:`ExportError` for an ``--int8`` mode other than ``dynamic``/``static``."""
    if mode is not None and mode not in INT8_MODES:
        raise ExportError(f"--int8: '{mode}' is not an ONNX Runtime int8 mode; choose dynamic or static")


def quantizable_nodes(path: Path, mode: str) -> dict[str, str]:
    """Name -> op type of the nodes ``mode`` quantizes (named so ``nodes_to_exclude`` can address them)."""
    import onnx
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry

    model = onnx.load(str(path))
    kinds = IntegerOpsRegistry if mode == "dynamic" else QDQRegistry
    weights = {t.name for t in model.graph.initializer}
    # Only nodes that hold a weight: quantizing an activation-only op (Reshape, Transpose) buys no speed.
    nodes = {}
    for node in model.graph.node:
        if not any(i in weights for i in node.input):
            continue
        if mode == "dynamic" and node.op_type == "Gemm":
            # quantize_dynamic first rewrites each Gemm as MatMul + Add, naming the MatMul "<gemm>_MatMul".
            nodes[f"{node.name}_MatMul"] = "MatMul"
        elif node.op_type in kinds:
            nodes[node.name] = node.op_type
    return nodes


def _infer_shapes(path: Path) -> None:
    """ORT's pre-quantization shape inference, in place (the symbolic pass types the fused contrib nodes'
    outputs, without which static calibration cannot see the tensors after them)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    staged = path.with_name("model.shapes.onnx")
    try:
        quant_pre_process(str(path), str(staged), skip_optimization=True, auto_merge=True)
    except Exception:  # noqa: BLE001 -- a graph the symbolic pass cannot type is still quantizable, with less
        staged.unlink(missing_ok=True)
        return
    staged.replace(path)


#: Op types whose ORT quantizer rewrites the weight initializer itself (so it cannot be shared between nodes).
REWRITES_WEIGHTS = ("LSTM", "GRU", "RNN")


def unshare_weights(path: Path) -> int:
    """Give every recurrent node its own copy of each weight initializer another node also reads (directly or
    through the ``Identity`` nodes the exporter puts in for repeated constants), in place; returns the copies.

    ORT's LSTM quantizer squeezes and transposes the node's ``W``/``R``/``B`` initializers in place, so any
    other reader of the same tensor (a siamese pair BiLSTM runs one LSTM over both sentences: two nodes, one
    ``W``) would see the rewritten tensor and fail at run time ("Input W must have shape {1,24,12}"). The
    copies cost the recurrent weights' bytes once more (not the embedding table's: Gather is not recurrent)."""
    import onnx

    model = onnx.load(str(path))
    weights = {t.name: t for t in model.graph.initializer}
    through = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity" and n.input[0] in weights}
    readers: dict[str, int] = {}
    for node in model.graph.node:
        for name in set(node.input):
            readers[name] = readers.get(name, 0) + 1
    copies = 0
    for node in (n for n in model.graph.node if n.op_type in REWRITES_WEIGHTS):
        for slot, name in enumerate(node.input):
            source = through.get(name, name)
            if source not in weights or (source == name and readers[name] == 1):
                continue  # not a weight, or this node's alone
            copies += 1
            private = onnx.TensorProto()
            private.CopyFrom(weights[source])
            private.name = f"{source}__{node.name or 'node'}_{slot}"
            model.graph.initializer.append(private)
            node.input[slot] = private.name
    if copies:
        onnx.save(model, str(path))
    return copies


def name_nodes(path: Path) -> None:
    """Give every unnamed node a unique name, in place (the fallback addresses nodes by name)."""
    import onnx

    model = onnx.load(str(path))
    seen: set[str] = set()
    changed = False
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name, changed = f"{node.op_type}_{index}", True
        seen.add(node.name)
    if changed:
        onnx.save(model, str(path))


def _reader(feeds: list[dict]):
    """An ORT ``CalibrationDataReader`` over the calibration batches (imported late: ORT is an extra)."""
    from onnxruntime.quantization import CalibrationDataReader

    class CalibrationRows(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    return CalibrationRows()


def quantize_file(source: Path, target: Path, mode: str, feeds: list[dict], op_types: list[str], *,
                  only: list[str] | None = None, exclude: list[str] | None = None, cache: Path | None = None) -> None:
    """Quantize ``source`` into ``target``: nodes of ``op_types`` (``only``: these nodes alone; ``exclude``: kept
    fp32). Only weight-bearing op types are passed, so excluding every node leaves the fp32 graph."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    # Shape inference knows no types for ORT's fused (com.microsoft) nodes' outputs: they are float.
    extra = {"DefaultTensorType": TensorProto.FLOAT}
    if mode == "dynamic":
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=op_types, nodes_to_quantize=only, nodes_to_exclude=exclude or None, extra_options=extra)
        return
    quantize_static(str(source), str(target), _reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=op_types,
                    nodes_to_quantize=only,
                    nodes_to_exclude=exclude or None, calibration_cache_path=cache, extra_options=extra)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / scale) if scale > 0 else 0.0


def disagreement(quantized: np.ndarray, reference: np.ndarray, labels: np.ndarray | None = None) -> float:
    """How far int8's outputs are from fp32's on the calibration rows.

    Classification: the fraction of rows whose argmax changes (it bounds the change of accuracy). Regression:
    ``1 - r`` (Pearson) of the two score lists, on the metric's own scale (0.003 is 0.3 points of Pearson x
    100); with the rows' gold ``labels``, the larger of that and the change of Pearson r against the gold
    scores. ``r(int8, fp32)`` alone is not enough: on STS-B it was 0.9978 on 512 train rows while int8 moved the
    dev Pearson by 0.74 points, because int8's errors need not be independent of the scores.
    """
    if reference.shape[1] == 1:
        q, r = quantized[:, 0].astype(np.float64), reference[:, 0].astype(np.float64)
        if np.allclose(q, r, rtol=0, atol=0):
            return 0.0
        apart = 1 - _pearson(q, r)
        if labels is not None:
            apart = max(apart, abs(_pearson(q, labels) - _pearson(r, labels)))
        return float(apart)
    return float((quantized.argmax(1) != reference.argmax(1)).mean())


def quantize_with_fallback(path: Path, mode: str, feeds: list[dict], run: Callable[[Path], np.ndarray], *,
                           fallback: str | list[str] = "none", tolerance: float = 0.003,
                           labels: np.ndarray | None = None) -> dict:
    """Quantize the ONNX file at ``path`` in place (see the module doc); return what was done.

    Args:
        path: The (optimized) fp32 ``model.onnx``.
        mode: ``dynamic`` or ``static``.
        feeds: Calibration batches (ONNX input name -> int64 array), from the calibration rows.
        run: ``run(onnx_path)`` -> logits of that file on the calibration rows.
        fallback: ``none``, ``auto`` or a list of node names to keep in fp32.
        tolerance: ``auto``'s bound on the disagreement with fp32 on the calibration rows.
        labels: A regressor's gold scores of the calibration rows, when they have them (see :func:`disagreement`).

    Returns:
        ``{"mode", "fp32_nodes", "quantizable_nodes", "calibration_disagreement", ...}`` (``auto`` adds the
        sensitivities and the steps it tried).

    Raises:
        ExportError: a node named in ``fallback`` is not a quantizable node of the graph.
    """
    unshare_weights(path)
    _infer_shapes(path)
    name_nodes(path)
    kinds = quantizable_nodes(path, mode)
    candidates, op_types = list(kinds), sorted(set(kinds.values()))
    if not feeds:  # plain dynamic int8 without calibration rows: nothing to measure agreement on
        quantize_file(path, path.with_name("model.int8.onnx"), mode, feeds, op_types)
        path.with_name("model.int8.onnx").replace(path)
        return {"mode": mode, "quantizable_nodes": len(candidates), "op_types": op_types, "fp32_nodes": [],
                "calibration_disagreement": None, "calibration_max_abs_logit_diff": None}
    reference = run(path)
    work = path.parent / ".quantize"
    work.mkdir(exist_ok=True)
    cache = work / "calibration.json" if mode == "static" else None
    staged = work / "model.int8.onnx"

    def quantized_logits(**kw) -> np.ndarray:
        quantize_file(path, staged, mode, feeds, op_types, cache=cache, **kw)
        return run(staged)

    report: dict = {"mode": mode, "quantizable_nodes": len(candidates), "op_types": op_types, "tolerance": tolerance}
    if isinstance(fallback, list):
        fallback = [f"{n}_MatMul" if f"{n}_MatMul" in kinds and n not in kinds else n for n in fallback]
        unknown = [n for n in fallback if n not in candidates]
        if unknown:
            raise ExportError(f"--fp32-fallback: {unknown} are not quantizable nodes of this graph; some that "
                              f"are: {candidates[:8]}")
        excluded = list(fallback)
    else:
        excluded = []
        if fallback == "auto" and candidates:
            excluded = _auto_fallback(candidates, reference, quantized_logits, tolerance, report, labels)
    final = quantized_logits(exclude=excluded)
    report.update({"fp32_nodes": excluded, "calibration_disagreement": disagreement(final, reference, labels),
                   "calibration_gold_scores": labels is not None,
                   "calibration_max_abs_logit_diff": float(np.abs(final - reference).max())})
    staged.replace(path)
    for leftover in work.iterdir():
        leftover.unlink()
    work.rmdir()
    return report


def _auto_fallback(candidates: list[str], reference: np.ndarray, quantized_logits, tolerance: float,
                   report: dict, labels: np.ndarray | None) -> list[str]:
    steps = [{"fp32_nodes": 0, "disagreement": disagreement(quantized_logits(), reference, labels)}]
    report["steps"] = steps
    if steps[0]["disagreement"] <= tolerance:
        return []
    sensitivity = {}
    for name in tqdm(candidates, desc="int8 sensitivity per node", leave=False):
        sensitivity[name] = float(((quantized_logits(only=[name]) - reference) ** 2).mean())
    ranked = sorted(candidates, key=sensitivity.__getitem__, reverse=True)
    report["sensitivity"] = {name: sensitivity[name] for name in ranked}
    count = 1
    while True:
        steps.append({"fp32_nodes": count, "disagreement": disagreement(quantized_logits(exclude=ranked[:count]),
                                                                        reference, labels)})
        if steps[-1]["disagreement"] <= tolerance:
            return ranked[:count]
        if count >= len(ranked):  # nothing met the bound (int8 interacts): the fewest fp32 nodes of the best step
            best = min(steps, key=lambda step: (step["disagreement"], step["fp32_nodes"]))
            return ranked[:best["fp32_nodes"]]
        count = min(2 * count, len(ranked))
