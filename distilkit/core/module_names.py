"""Choosing modules by name, as recipes do (``skip_modules: [classifier]``)."""

from __future__ import annotations


def skipped(name: str, skip_modules) -> bool:
    """True when module ``name`` or one of its parents is named in ``skip_modules`` (last name parts match)."""
    parts = name.split(".")
    return any(s == name or s in parts or name.endswith("." + s) for s in skip_modules)
