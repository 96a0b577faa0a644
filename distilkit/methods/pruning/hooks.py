"""Pruning in the recipe program: iterative pruning replaces the single run by one run per round.

One-shot pruning needs no hook: ``student.kind: pruned`` builds the pruned copy
(:func:`distilkit.methods.pruning.student.build_pruned_student`) and the ordinary loop recovers it.
"""

from __future__ import annotations

from collections.abc import Callable

from distilkit.core.method_hooks import MethodHooks
from distilkit.methods.pruning.student import run_iterative


class IterativePruningHooks(MethodHooks):
    """``student: {kind: pruned, rounds: R > 1}``: R prune -> recover runs (Han et al. 2015's prune-retrain loop)."""

    name = "pruning"

    def run_instead(self, recipe, run: Callable) -> dict | None:
        return run_iterative(recipe, run)


def from_recipe(recipe) -> IterativePruningHooks | None:
    """Active for pruned students reached in more than one round."""
    if recipe.student.kind == "pruned" and recipe.student.rounds > 1:
        return IterativePruningHooks()
    return None
