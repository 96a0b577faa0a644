"""Reading YAML files (recipes, tasks) with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from distilkit.core.errors import RecipeError


def read_yaml(path: str | Path, what: str = "recipe", top: str = "sections") -> dict:
    """Read a YAML mapping, raising :class:`RecipeError` naming the file on any problem.

    Args:
        path: The file.
        what: What the file is, for messages ("recipe", "task").
        top: What its top-level keys are, for messages.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: {what} file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # a damaged file too: zeroed, truncated, binary
        raise RecipeError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping of {top} at the top level, got {type(data).__name__}")
    return data
