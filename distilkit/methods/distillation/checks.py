"""The distillation loss's cross-key rules (torch-free: :mod:`distilkit.run.recipe_checks` runs them)."""

from __future__ import annotations

from distilkit.core.recipe_rules import Rule, written


def _ensemble(recipe) -> bool:
    return recipe.is_ensemble


MEANINGLESS = (
    Rule("loss.temperature", "loss.kind",
         lambda r, t: r.loss.kind == "mse" and written(r.loss, "temperature")
         and not (_ensemble(r) and r.loss.ensemble == "average" and t.problem_type != "regression"),
         "the logit MSE of Tang et al. compares raw logits; temperature softens only kind: kl (or the "
         "probabilities an ensemble of teachers averages)"),
    Rule("loss.ensemble", "teacher",
         lambda r, t: not _ensemble(r) and written(r.loss, "ensemble"),
         "there is one teacher: nothing to combine; list several teachers under teacher"),
    Rule("teacher.temperature", "loss.ensemble",
         lambda r, t: _ensemble(r) and any(c.temperature is not None for c in r.teacher)
         and r.loss.kind == "mse" and (r.loss.ensemble == "each" or t.problem_type == "regression"),
         "with loss.kind: mse each teacher's raw logits (or predictions) are matched; a teacher's temperature "
         "softens only kind: kl or the probabilities ensemble: average combines"),
)

CONFLICTS = (
    Rule("loss.alpha", "data.labels",
         lambda r, t: r.data.labels == "none" and r.loss.alpha > 0,
         "alpha mixes in gold labels but data.labels is 'none'; set loss.alpha: 0 or data.labels: gold"),
)
