"""Low-rank factorisation's recipe rules (torch-free). Other methods' sections are read with ``getattr``: a
registry without them leaves these rules valid."""

from __future__ import annotations

from distilkit.core.recipe_rules import Rule

CONFLICTS = (
    Rule("factorize", "quantize",
         lambda r, t: r.factorize is not None and getattr(r, "quantize", None) is not None,
         "quantization converts the factors too and replaces config.json's record of them, so the saved model "
         "would not reload; factorisation and quantization do not combine yet"),
    Rule("factorize", "deep_compression",
         lambda r, t: r.factorize is not None and getattr(r, "deep_compression", None) is not None,
         "the encoding replaces config.json's record of the factors, so the saved model would not reload; "
         "factorisation and Deep Compression do not combine yet"),
    Rule("factorize", "student.kind",
         lambda r, t: r.factorize is not None and r.student.kind == "pruned"
         and (getattr(r.student, "blocks", None) is not None or getattr(r.student, "rounds", 1) > 1),
         "block pruning and pruning rounds mask and remove rows of the dense weights factorisation replaces; "
         "prune in one stage, factorise in the next (one-shot structural pruning may share the recipe)"),
    Rule("student.share_layers", "factorize",
         lambda r, t: getattr(r.student, "share_layers", None) is not None and r.factorize is not None,
         "each layer would get factors of its own, undoing the sharing; share layers in one stage and "
         "factorize in the next"),
)
