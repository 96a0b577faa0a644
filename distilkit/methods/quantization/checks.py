"""Quantization's recipe rules and preflight (torch-free)."""

from __future__ import annotations

from distilkit.core import plugins
from distilkit.core.recipe_rules import Rule, written


def _distilkit_linear_grid(recipe) -> bool:
    q = recipe.quantize
    return q is not None and q.linear is not None and not q.linear.startswith("bnb")


MEANINGLESS = (
    Rule("quantize.activation_bits", "quantize.qat",
         lambda r, t: r.quantize is not None and not r.quantize.qat and written(r.quantize, "activation_bits"),
         "activation fake-quantization is part of quantization-aware training only"),
    Rule("quantize.backend", "quantize.linear",
         lambda r, t: written(r.quantize, "backend") and not (_distilkit_linear_grid(r) and r.quantize.symmetric),
         "the kernel choice applies to symmetric distilkit linear grids (int8, int4, ternary, binary)"),
    Rule("quantize.per_channel", "quantize.linear",
         lambda r, t: written(r.quantize, "per_channel") and not _distilkit_linear_grid(r),
         "per-channel scales belong to distilkit linear grids; embeddings are always row-wise, bitsandbytes "
         "picks its own blocks"),
    Rule("quantize.symmetric", "quantize.linear",
         lambda r, t: written(r.quantize, "symmetric") and r.quantize.embedding is None
         and r.quantize.linear not in ("int8", "int4"),
         "only the int8/int4 grids (linear or embedding) come in symmetric and asymmetric forms"),
)

CONFLICTS = (
    Rule("train.sparse_embeddings", "quantize.embedding",
         lambda r, t: r.train.sparse_embeddings and r.quantize is not None and r.quantize.qat
         and r.quantize.embedding is not None,
         "a fake-quantized table trained by QAT needs dense gradients; drop one of them"),
    Rule("student.share_layers", "quantize",
         lambda r, t: getattr(r.student, "share_layers", None) is not None and r.quantize is not None,
         "quantization converts each layer's modules separately and would save the shared block "
         "once per layer; share layers in one stage and quantize in the next"),
)


def preflight(recipe, teacher_exists: bool = True) -> list[str]:
    """The optional packages a ``quantize`` section needs (bitsandbytes, torchao), found without importing them."""
    q, problems = recipe.quantize, []
    if q is not None and (q.linear or "").startswith("bnb") and not plugins.importable("bitsandbytes"):
        problems.append(f"quantize.linear: {q.linear} needs bitsandbytes; pip install bitsandbytes")
    if q is not None and q.backend == "torchao" and not plugins.importable("torchao"):
        problems.append("quantize.backend: torchao is not installed; pip install torchao")
    return problems
