"""Budget mode of a pipeline stage (NetAdapt, Yang et al. 2018): build each candidate student, measure its
parameters, size on disk and CPU latency on this machine, and train the first one inside the budget."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from accelerate import Accelerator

from distilkit.core.errors import RecipeError
from distilkit.core.measure import MB, count_parameters, cpu_latency_ms, repeated_inputs, size_on_disk
from distilkit.data.tasks import load_split, load_task
from distilkit.models.inference import encoder_for
from distilkit.run.pipeline_config import SearchConfig
from distilkit.run.recipe_io import apply_override, validate_recipe
from distilkit.run.schema import Recipe
from distilkit.run.students import make_student
from distilkit.run.teachers import load_teacher


def yaml_scalar(value: Any) -> str:
    """``value`` as the YAML text an ``--set key=value`` override takes."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def budget_search(tree: dict, search: SearchConfig) -> dict:
    """Measure each candidate of ``search.values`` (built, untrained) and pick the first inside the budget.

    Returns:
        ``{"key", "chosen", "candidates": [{"value", "params", "size_mb", "latency_ms", "fits"}...]}``.

    Raises:
        RecipeError: no candidate fits (the message lists what each measured).
    """
    candidates = []
    for value in search.values:
        candidate = copy.deepcopy(tree)
        apply_override(candidate, f"{search.key}={yaml_scalar(value)}")
        recipe: Recipe = validate_recipe(candidate, source=f"search {search.key}={value}")
        with tempfile.TemporaryDirectory(prefix="distilkit-search-") as tmp:
            measured = measure_candidate(recipe, Path(tmp), search.latency_batch_size,
                                         with_latency=search.max_latency_ms is not None)
        fits = ((search.max_params is None or measured["params"] <= search.max_params)
                and (search.max_size_mb is None or measured["size_mb"] <= search.max_size_mb)
                and (search.max_latency_ms is None or measured["latency_ms"] <= search.max_latency_ms))
        candidates.append({"value": value, **measured, "fits": fits})
        if fits:
            return {"key": search.key, "chosen": value, "candidates": candidates,
                    "budget": search.model_dump(exclude={"key", "values"}, exclude_none=True)}
    tried = "; ".join(f"{c['value']}: {c['params']:,} params, {c['size_mb']:.2f} MB"
                      + (f", {c['latency_ms']:.2f} ms" if c.get("latency_ms") is not None else "") for c in candidates)
    raise RecipeError(f"search: no value of {search.key} fits the budget "
                      f"{search.model_dump(exclude={'key', 'values'}, exclude_none=True)}; measured {tried}")


def measure_candidate(recipe: Recipe, tmp: Path, batch_size: int, with_latency: bool) -> dict:
    """Build the stage's student exactly as :func:`distilkit.run.distill.run` would and measure it untrained.

    Parameters, size on disk and latency do not depend on the weights' values, so the untrained student
    measures what the trained one will cost.
    """
    task = load_task(recipe.task)
    data = recipe.data
    train_ds = load_split(task, data.train_split or task.train_split, data_dir=data.dir,
                          max_examples=data.max_train_examples, seed=recipe.train.seed)
    eval_split = (data.eval_splits or task.eval_splits)[0]
    eval_ds = load_split(task, eval_split, data_dir=data.dir, max_examples=64, seed=recipe.train.seed)
    teacher = load_teacher(recipe, task, train_ds, eval_ds, Accelerator(cpu=True))
    student, tokenizer = make_student(recipe, task, teacher, list(train_ds))
    student.save_pretrained(tmp)
    measured = {"params": count_parameters(student), "size_mb": round(size_on_disk(tmp) / MB, 3),
                "latency_ms": None}
    if with_latency:
        pairs = list(eval_ds["text_b"]) if task.is_pair else None
        make = repeated_inputs(encoder_for(student), tokenizer, list(eval_ds["text_a"]), pairs, recipe.student.max_length)
        measured["latency_ms"] = cpu_latency_ms(student, make, batch_sizes=(batch_size,), repeats=10)[f"b{batch_size}"]
    return measured
