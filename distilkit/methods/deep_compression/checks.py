"""Deep Compression's recipe rules (torch-free)."""

from __future__ import annotations

from distilkit.core.recipe_rules import Rule

CONFLICTS = (
    Rule("deep_compression.share", "train.sparse_embeddings",
         lambda r, t: r.deep_compression is not None and r.deep_compression.share is not None
         and r.deep_compression.embeddings and r.train.sparse_embeddings,
         "lazy Adam updates only the rows a batch looks up, so shared embedding weights would drift apart; set "
         "train.sparse_embeddings: false or deep_compression.embeddings: false"),
    Rule("deep_compression", "quantize",
         lambda r, t: r.deep_compression is not None and getattr(r, "quantize", None) is not None,
         "both convert the saved model after training; give each its own pipeline stage"),
    Rule("student.share_layers", "deep_compression",
         lambda r, t: getattr(r.student, "share_layers", None) is not None and r.deep_compression is not None,
         "the encoding rewrites the saved weights without the shared layers' record; share layers in "
         "one stage and deep compression in the next"),
)
