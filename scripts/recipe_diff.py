"""What a benchmark cell's resolved recipe runs, and how two of them differ (bench_glue.py's stale rule).

A cell records the ``recipe.yaml`` its ``distilkit run`` resolved; a later run keeps the cell when the recipe it
would resolve now runs the same thing: locations and wording aside, and keys added to the schema since read as
their defaults (what the code did before they existed).
"""

from __future__ import annotations

import copy

import yaml

#: Overrides that say where things are on this machine, not what runs: left out of the stale comparison.
LOCATION_KEYS = ("data.dir", "output_dir", "cache.dir")


def what_runs(resolved_recipe: str) -> dict:
    """A resolved ``recipe.yaml`` without what says where things are or what they are called."""
    tree = yaml.safe_load(resolved_recipe)
    for key in ("description", "output_dir"):
        tree.pop(key, None)
    for section, key in (k.split(".") for k in LOCATION_KEYS if "." in k):
        (tree.get(section) or {}).pop(key, None)
    return tree


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _default(tree: dict, dotted: str):
    """The value today's schema gives ``dotted`` when a recipe leaves it out (``tree`` without it, validated)."""
    from distilkit.core.errors import RecipeError
    from distilkit.run.recipe_io import dump_recipe, validate_recipe

    *parents, last = dotted.split(".")
    pruned = copy.deepcopy(tree)
    holder = pruned
    for part in parents:
        holder = holder[part]
    holder.pop(last)
    try:
        return _flat(yaml.safe_load(dump_recipe(validate_recipe(pruned)))).get(dotted)
    except RecipeError:
        return object()  # equal to nothing


def differences(recorded: str, resolved: str) -> list[str]:
    """What a cell's recorded resolved recipe runs differently from ``resolved`` (``key: then -> now``; locations
    and wording aside, :func:`what_runs`).

    Recipes dumped by older code may lack keys added since: such a key counts as the same when today's value
    is the key's default (what the code did before the key existed). A key today's schema no longer writes
    (removed, or meaningless for the section, e.g. ``loss.temperature`` of an MSE loss) is not compared."""
    before, now = _flat(what_runs(recorded)), _flat(what_runs(resolved))
    changed = [f"{k}: {before[k]!r} -> {now[k]!r}" for k in sorted(before.keys() & now.keys()) if before[k] != now[k]]
    for key in sorted(now.keys() - before.keys()):
        parts = key.split(".")
        above = next((".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in before), None)
        if above is not None:  # e.g. a section that was null
            changed.append(f"{above}: {before[above]!r} -> {key} {now[key]!r}")
        elif now[key] != _default(yaml.safe_load(resolved), key):
            changed.append(f"{key}: (not written, the default) -> {now[key]!r}")
    return changed


def runs_the_same(recorded: str, resolved: str) -> bool:
    """Whether a recorded resolved recipe runs what ``resolved`` runs (no :func:`differences`)."""
    return not differences(recorded, resolved)
