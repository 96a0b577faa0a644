"""Compression pipelines: distil -> prune -> quantize, one recipe file, each stage taught by the previous one.

Deep compression (Han et al. 2016, "Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
Quantization and Huffman Coding") chains techniques whose savings multiply. A pipeline recipe is an ordinary
recipe whose shared sections (``task``, ``data``, ``teacher``, ``train``, ``cache``, ``measure`` ...) are
defaults, plus a ``stages`` list; each stage overrides sections and names its student::

    task: sst2
    output_dir: runs/sst2-pipeline
    teacher: {model: minilm, finetune: {epochs: 1}}
    stages:
      - name: distil
        student: {kind: transformer, num_layers: 3}
      - name: shrink
        student: {kind: transformer, num_layers: 1}
        search: {key: student.num_layers, values: [2, 1], max_params: 10_000_000}
      - name: bilstm
        student: {kind: bilstm}
        quantize: {...}              # a post-training stage folds into the last training stage

Stage ``k`` runs :func:`distilkit.run.distill.run` in ``output_dir/<k>-<name>``; for ``k > 0`` its teacher is
stage ``k-1``'s best model, so every stage is evaluated and measured against the model it compresses, and
the pipeline summary compares every stage with the original teacher, measured side by side in one process.

Resume: a stage whose ``metrics.json`` exists is done and skipped; a stage with checkpoints resumes from the
latest one.

Iterative pruning (``student: {kind: pruned, rounds: R > 1}``) is a pipeline too, written as one recipe: its
rounds expand into R stages in ``output_dir/rounds/<r>`` (:mod:`distilkit.methods.pruning.rounds`), each taught by
the recipe's (unpruned) teacher, run, skipped and resumed by the same :func:`run_stage`; :func:`run_recipe` runs
any one recipe, iterative or not, and is what ``distilkit run`` calls. Budget mode (NetAdapt, Yang et al. 2018, measures candidates on the target device instead of
trusting proxies): ``search`` tries ``values`` for one dotted ``key`` in order, from least to most
compressed, builds each candidate student, *measures* its parameters, size on disk and CPU latency, and
trains the first one inside the budget.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from distilkit.core.atomic import atomic_directory, write_json_atomic, write_text_atomic
from distilkit.core.errors import DamagedFileError, RecipeError
from distilkit.core.faults import fault_point
from distilkit.core.saved_files import read_json
from distilkit.core.yaml_files import read_yaml
from distilkit.methods.pruning.rounds import pruning_rounds, round_trees, rounds_history
from distilkit.report.pipeline_summary import summarize, summary_markdown
from distilkit.run.budget_search import budget_search, yaml_scalar
from distilkit.run.distill import run
from distilkit.run.pipeline_config import PipelineConfig, SearchConfig, stage_dir, stage_tree
from distilkit.run.recipe_io import apply_override, dump_recipe, validate_recipe
from distilkit.run.schema import Recipe

logger = logging.getLogger("distilkit")


def finished(directory: Path) -> bool:
    """Whether a stage ran to the end: its ``metrics.json`` and saved model are readable. A damaged one (a crash
    or a full disk while it was written) is moved aside with one warning line and the stage runs again."""
    metrics = directory / "metrics.json"
    if not metrics.is_file():
        return False
    try:
        read_json(metrics)
        read_json(directory / "model" / "config.json")
    except DamagedFileError as exc:
        aside = metrics.with_name(f"metrics.json.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(metrics, aside)
        logger.warning(f"distilkit: warning: stage {directory.name} is not complete ({exc}); running it again")
        return False
    return True


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def check_same_recipe(directory: Path, tree: dict, source: str) -> None:
    """A finished stage is reused only if it ran the recipe the pipeline asks for now.

    Skipping a stage that ran with other settings (say a 160-sentence smoke test before the real run) would
    report its numbers as the new run's; instead the changed keys are named and nothing runs.
    """
    saved = directory / "recipe.yaml"
    if not saved.is_file():
        return
    search = directory / "search.json"
    if search.is_file():  # budget search chose a value: compare with it applied, as the stage ran
        chosen = read_json(search)
        apply_override(tree, f"{chosen['key']}={yaml_scalar(chosen['chosen'])}")
    old = _flat(read_yaml(saved))
    new = _flat(yaml.safe_load(dump_recipe(validate_recipe(tree, source=source))))
    # train.resume_from says how the stage ran (resumed from its own checkpoints), not which recipe it ran.
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k != "train.resume_from")
    if changed:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
        more = f" (and {len(changed) - 4} more)" if len(changed) > 4 else ""
        raise RecipeError(f"{source}: {directory} holds a finished stage run with a different recipe ({shown}{more}); "
                          "delete that folder to run the stage again, or choose another output_dir")


def run_stage(tree: dict, directory: Path, source: str, search: SearchConfig | None = None) -> dict:
    """Run (or resume, or skip) one stage: the plain recipe mapping ``tree`` whose ``output_dir`` is ``directory``.

    A finished stage is skipped once :func:`check_same_recipe` agrees it ran this recipe; otherwise the budget
    search (``search``) picks its value, it resumes from its latest checkpoint if it has one, and runs through
    :func:`run_recipe` (so a stage may itself be iterative pruning).

    Returns:
        What happened, for the summary: ``resumed`` (skipped, or from which checkpoint) and ``search`` (the
        budget search's record) where they apply.
    """
    info: dict[str, Any] = {}
    if finished(directory):
        check_same_recipe(directory, tree, source)
        info["resumed"] = "skipped (already complete)"
    else:
        if search is not None:
            info["search"] = budget_search(tree, search)
            apply_override(tree, f"{search.key}={yaml_scalar(info['search']['chosen'])}")
        if any((directory / "checkpoints").glob("step-*")):
            tree["train"] = {**tree.get("train", {}), "resume_from": "latest"}
            info["resumed"] = "from latest checkpoint"
        run_recipe(validate_recipe(tree, source=source))
        fault_point("pipeline.stage")
        if "search" in info:
            write_json_atomic(directory / "search.json", info["search"])
    if (directory / "search.json").is_file() and "search" not in info:
        info["search"] = read_json(directory / "search.json")
    return info


def run_recipe(recipe: Recipe) -> dict:
    """Run one validated recipe and return its ``metrics.json``: :func:`distilkit.run.distill.run`, or for
    iterative pruning (``student.rounds > 1``) its rounds as stages (:func:`run_rounds`)."""
    if pruning_rounds(recipe.model_dump(mode="json")) > 1:
        return run_rounds(recipe)
    return run(recipe)


def _recipe_tree(recipe: Recipe) -> dict:
    """The recipe as the mapping ``output_dir/recipe.yaml`` holds: it validates again (no meaningless keys)."""
    return yaml.safe_load(dump_recipe(recipe))


def run_rounds(recipe: Recipe) -> dict:
    """Iterative pruning as a pipeline: every round a stage in ``output_dir/rounds/<r>`` (run, skipped when
    finished, resumed from its checkpoints), then the last round's model copied to ``output_dir/model``.

    Returns:
        The last round's metrics with ``rounds``: per round its parameters and eval metrics (also written
        to ``output_dir/metrics.json``; ``output_dir/recipe.yaml`` is the recipe as written).
    """
    out, tree = Path(recipe.output_dir), _recipe_tree(recipe)
    write_text_atomic(out / "recipe.yaml", dump_recipe(recipe))
    trees = round_trees(tree)
    round_metrics = []
    for r, sub in enumerate(trees, start=1):
        directory = Path(sub["output_dir"])
        run_stage(sub, directory, f"{recipe.output_dir}: round {r} of {len(trees)}")
        round_metrics.append(read_json(directory / "metrics.json"))
    with atomic_directory(out / "model") as tmp:
        shutil.copytree(Path(trees[-1]["output_dir"]) / "model", tmp, dirs_exist_ok=True)
    metrics = {**round_metrics[-1], "rounds": rounds_history(round_metrics)}
    write_json_atomic(out / "metrics.json", metrics)
    return metrics


def run_pipeline(pipeline: PipelineConfig, *, measure_side_by_side: bool = True) -> dict:
    """Run (or resume) every stage in order (:func:`run_stage`) and write ``output_dir/pipeline.json`` and
    ``pipeline.md``.

    Returns:
        The summary: per stage its metrics, the chosen budget-search value, and ratios against the
        original teacher (params, size, latency, metric retention).
    """
    out = Path(pipeline.output_dir)
    write_text_atomic(out / "pipeline.yaml", yaml.safe_dump(pipeline.model_dump(mode="json", exclude_none=True),
                                                            sort_keys=False))
    stages = []
    for index, stage in enumerate(pipeline.stages):
        directory = stage_dir(pipeline, index)
        tree = stage_tree(pipeline, index)
        info: dict[str, Any] = {"name": stage.name, "dir": str(directory), "student": tree["student"]["kind"]}
        info.update(run_stage(tree, directory, f"{pipeline.output_dir}: stages[{index}] ({stage.name})", stage.search))
        stages.append(info)
    summary = summarize(pipeline, stages, measure_side_by_side=measure_side_by_side)
    write_json_atomic(out / "pipeline.json", summary)
    write_text_atomic(out / "pipeline.md", summary_markdown(summary))
    return summary
