"""Cross-key recipe rules as values, so that each method folder can declare the rules about its own keys.

A :class:`Rule` says that ``key`` is meaningless (or conflicts) when ``applies(recipe, task)``; ``because`` names
the other key. :mod:`distilkit.run.recipe_checks` collects the generic rules and every method's
(:attr:`distilkit.core.method_spec.Method.meaningless` and ``conflicts``) and reports each broken one, naming
both keys and their values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """``key`` is meaningless (or wrong) when ``applies(recipe, task)``; ``because`` names the other key."""

    key: str
    because: str
    applies: Callable[[Any, Any], bool]
    why: str


def written(section, *names: str) -> bool:
    """Whether the recipe wrote any of ``names`` in ``section`` (a default it left alone does not count)."""
    return section is not None and any(name in section.model_fields_set for name in names)
