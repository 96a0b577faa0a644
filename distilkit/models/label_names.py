"""Class names of a teacher's ``config.json`` and when two teachers' names cannot be combined.

Kept free of torch and transformers: preflight reads them from ``config.json`` before anything heavy is imported.
"""

from __future__ import annotations


def teacher_label_names(config: dict) -> list[str] | None:
    """The class names of a ``config.json`` (``id2label`` in id order), or ``None`` when they are the generic
    ``LABEL_<i>`` names transformers writes for an unnamed head (those say nothing about the order)."""
    id2label = config.get("id2label") or {}
    names = [str(name) for _, name in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
    if not names or all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return None
    return names


def label_mismatch(first: list[str] | None, other: list[str] | None) -> str | None:
    """Why two teachers' named labels cannot be combined column by column, or ``None`` (either unnamed: ok).

    Averaging logits column by column assumes column ``i`` is the same class in every teacher."""
    if first is None or other is None or first == other:
        return None
    if sorted(first) == sorted(other):
        return f"orders its labels {other} (config.id2label) differently from the {first} of"
    return f"names its labels {other} (config.id2label), unlike the {first} of"
