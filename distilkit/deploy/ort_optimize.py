"""ONNX Runtime's transformer graph optimizer on exported transformer students (issue 26).

``onnxruntime.transformers.optimizer.optimize_model`` rewrites a BERT-shaped graph into ORT's fused CPU
kernels: ``EmbedLayerNormalization`` (embeddings + LayerNorm), ``Attention`` (Q/K/V projections, scaled
dot-product, softmax and the mask in one node), ``SkipLayerNormalization`` (residual add + LayerNorm) and
``BiasGelu``. Two things stand between a transformers-5 export and those patterns, and :func:`optimize_graph`
handles both:

* the attention must be traced from the ``eager`` implementation (SDPA's graph and transformers 5's boolean
  mask helpers match no fusion pattern): :func:`use_fusable_attention` switches it before tracing;
* transformers reshapes Q/K/V to ``(batch, seq, -1, head_size)``; the ``-1`` hides the number of heads, which
  the fusion reads per layer from that shape. Pruned students have a different head count in every layer,
  so :func:`_pin_head_counts` writes each layer's real count (its Q/K/V projection width / head size) into
  the graph first; then every layer fuses with its own heads (``num_heads=0``: detect per layer).

The levels are ORT's own (``GraphOptimizationLevel``) as ``optimize_model`` accepts them; a level it does not
have is a named error before anything is exported. A student with tensor-train or block-term layers gets the
Python fusions only (``fusion``; the report says ``capped``): ORT's graph optimizer would fold each rebuilt dense
weight into the file.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from distilkit.core.errors import ExportError
from distilkit.methods.low_rank.storage import rebuilt_weight_modules

#: ``--optimize`` values -> ``optimize_model``'s ``opt_level`` (``None``: the optimizer is not run). ``fusion``
#: is the Python fusions alone (level 0); ``basic``/``extended``/``all`` also run ORT's own graph optimizer at
#: that level first. ``all`` bakes CPU-specific layouts into the file (ORT warns): for this machine only.
OPTIMIZE_LEVELS = {"none": None, "fusion": 0, "basic": 1, "extended": 2, "all": 99}
#: Fused node types the optimizer can produce (what ``export.json`` counts).
FUSED_TYPES = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
               "LayerNormalization", "BiasGelu", "Gelu", "FastGelu")


def check_level(level: str) -> int | None:
    """``optimize_model``'s ``opt_level`` for ``--optimize LEVEL``.

    Raises:
        ExportError: a level ONNX Runtime's transformer optimizer does not have (``layout`` is an ORT session
            level the offline optimizer refuses; anything else is unknown).
    """
    if level in OPTIMIZE_LEVELS:
        return OPTIMIZE_LEVELS[level]
    known = ", ".join(OPTIMIZE_LEVELS)
    raise ExportError(f"--optimize: ONNX Runtime's transformer optimizer has no level '{level}'; choose one of "
                      f"{known}")


def use_fusable_attention(model) -> str | None:
    """Trace ``model`` with eager attention when it uses SDPA (same numbers, a graph ORT can fuse).

    Returns the implementation switched from, or ``None`` when the model keeps its own (custom attentions,
    e.g. linear-attention students, are left alone: ORT has no fused form for them anyway).
    """
    current = getattr(model.config, "_attn_implementation", None)
    if current != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return None
    model.set_attn_implementation("eager")
    return current


def optimize_graph(path: Path, config: dict, level: str) -> dict:
    """Run the transformer optimizer on the ONNX file at ``path`` in place; return what it fused.

    Args:
        path: The exported ``model.onnx``.
        config: The student's ``config.json`` (its ``hidden_size``; BERT-family graphs only).
        level: An ``--optimize`` value (see :data:`OPTIMIZE_LEVELS`).

    Returns:
        ``{"level", "opt_level", "fused": {op type: count}, "attention_heads": [per fused Attention node]}``.
    """
    import onnx
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    opt_level = check_level(level)
    rebuilt = rebuilt_weight_modules(config)
    capped = None
    if rebuilt and opt_level:
        # ORT's graph optimizer folds constant subgraphs, and a tensor-train or block-term layer's rebuild of W
        # from its factors is one: the saved file would hold every dense W (as large as the unfactorised model).
        # The Python fusions alone keep the factors; an ORT session folds the rebuild in memory when it loads.
        capped = (f"{level} -> fusion: {len(rebuilt)} tensor-train/block-term layers, whose dense weights ORT's "
                  "constant folding would store in the file")
        opt_level = 0
    model = onnx.load(str(path))
    pinned = _pin_head_counts(model, config)
    onnx.save(model, str(path))
    options = FusionOptions("bert")
    # Layers sharing one block (parameter sharing) feed the same weights to several MatMuls: the fusion would
    # fuse one layer and copy its Q/K/V weights, storing the block twice. Attention stays unfused there.
    shared = _shared_matmul_weights(model)
    options.enable_attention = not shared
    # The fusions log a warning per pattern they could not match (e.g. the classifier head): not the user's concern.
    quiet = [logging.getLogger(name) for name in ("fusion_base", "fusion_attention", "fusion_embedlayer",
                                                   "onnx_model", "onnx_model_bert", "fusion_utils")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(str(path), model_type="bert", num_heads=0, hidden_size=0, opt_level=opt_level,
                                   optimization_options=options)
    finally:
        for logger, old in zip(quiet, levels):
            logger.setLevel(old)
    merged = share_identical_initializers(optimized.model)
    optimized.save_model_to_file(str(path))
    return {"level": level, "opt_level": opt_level, **fused_summary(optimized.model), "pinned_head_counts": pinned,
            "shared_initializers": merged, "attention_fusion": "off: layers share weights" if shared else "on",
            **({"capped": capped} if capped else {})}


def _shared_matmul_weights(model) -> bool:
    """True when one weight initializer feeds more than one MatMul (layers sharing parameters; the exporter
    hands the later uses an ``Identity`` of the first)."""
    weights = {t.name: t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    uses = Counter(weights[node.input[1]] for node in model.graph.node
                   if node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in weights)
    return any(count > 1 for count in uses.values())


def share_identical_initializers(model) -> int:
    """Point every use of a duplicated weight at one copy; returns how many copies were dropped.

    Fusion builds each ``Attention`` node's Q/K/V weight as a new tensor, so a student whose layers share one
    block (parameter sharing) would store that block once per layer again; identical tensors are merged back.
    """
    import hashlib

    from onnx import numpy_helper

    keep: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        key = (array.dtype.str, array.shape, hashlib.sha256(array.tobytes()).hexdigest())
        if key in keep:
            rename[tensor.name] = keep[key]
        else:
            keep[key] = tensor.name
    if not rename:
        return 0
    outputs = {o.name for o in model.graph.output}
    rename = {old: new for old, new in rename.items() if old not in outputs}
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name in rename:
                node.input[index] = rename[name]
    stale = [t for t in model.graph.initializer if t.name in rename]
    for tensor in stale:
        model.graph.initializer.remove(tensor)
    return len(stale)


def fused_summary(model) -> dict:
    """Fused node counts of an ONNX ``ModelProto`` and the head count of every fused ``Attention`` node."""
    counts = Counter(node.op_type for node in model.graph.node)
    heads = [next((a.i for a in node.attribute if a.name == "num_heads"), None)
             for node in model.graph.node if node.op_type == "Attention"]
    return {"fused": {name: counts[name] for name in FUSED_TYPES if counts[name]}, "attention_heads": heads}


def _pin_head_counts(model, config: dict) -> list[int]:
    """Replace the ``-1`` head dimension of every Q/K/V reshape by its layer's real head count (module doc)."""
    from onnx import numpy_helper

    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    if not hidden or not heads:
        return []
    head_size = hidden // heads
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def value(name: str):
        array = constants.get(name)
        return None if array is None else np.asarray(array).reshape(-1)

    def projection_width(reshape) -> int | None:
        # Reshape(Add(MatMul(x, W), b)) or Reshape(MatMul(x, W)): the width is W's second dimension.
        node = producer.get(reshape.input[0])
        if node is not None and node.op_type == "Add":
            node = next((producer[i] for i in node.input if i in producer and producer[i].op_type == "MatMul"), None)
        if node is None or node.op_type != "MatMul" or node.input[1] not in constants:
            return None
        return int(constants[node.input[1]].shape[-1])

    pinned = []
    for node in list(model.graph.node):
        if node.op_type != "Concat" or len(node.input) != 4:
            continue
        third, fourth = value(node.input[2]), value(node.input[3])
        if third is None or fourth is None or third.tolist() != [-1] or fourth.tolist() != [head_size]:
            continue
        widths = {projection_width(r) for r in consumers.get(node.output[0], []) if r.op_type == "Reshape"}
        if len(widths) != 1 or None in widths or next(iter(widths)) % head_size:
            continue
        count = next(iter(widths)) // head_size
        name = f"{node.name or node.output[0]}_heads"
        model.graph.initializer.append(numpy_helper.from_array(np.asarray([count], dtype=third.dtype), name))
        node.input[2] = name
        pinned.append(count)
    used = {name for node in model.graph.node for name in node.input}
    stale = [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] not in used]
    for node in stale:  # the -1s just replaced (ORT would warn about each one)
        model.graph.node.remove(node)
    return pinned
