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
latest one. Budget mode (NetAdapt, Yang et al. 2018, measures candidates on the target device instead of
trusting proxies): ``search`` tries ``values`` for one dotted ``key`` in order, from least to most
compressed, builds each candidate student, *measures* its parameters, size on disk and CPU latency, and
trains the first one inside the budget.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from distilkit.core.atomic import write_json_atomic, write_text_atomic
from distilkit.core.errors import DamagedFileError, RecipeError
from distilkit.core.faults import fault_point
from distilkit.core.saved_files import read_json
from distilkit.core.sections import Section
from distilkit.core.yaml_files import read_yaml
from distilkit.report.pipeline_summary import summarize, summary_markdown
from distilkit.run.budget_search import SearchConfig, budget_search, yaml_scalar
from distilkit.run.distill import run
from distilkit.run.recipe_io import apply_override, format_validation_error, validate_recipe

STAGE_SECTIONS = ("data", "teacher", "student", "loss", "train", "measure", "quantize", "hub")


class StageConfig(Section):
    """One stage: sections that override the pipeline's shared ones."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    data: dict[str, Any] = Field(default_factory=dict)
    teacher: dict[str, Any] = Field(default_factory=dict)
    student: dict[str, Any]
    loss: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    measure: dict[str, Any] = Field(default_factory=dict)
    quantize: dict[str, Any] | None = None
    hub: dict[str, Any] | None = None
    search: SearchConfig | None = None


class PipelineConfig(Section):
    """A pipeline recipe: shared defaults plus an ordered list of stages."""

    description: str | None = None
    task: str
    output_dir: str
    data: dict[str, Any] = Field(default_factory=dict)
    teacher: dict[str, Any]
    loss: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    cache: dict[str, Any] = Field(default_factory=dict)
    measure: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageConfig] = Field(min_length=1)


logger = logging.getLogger("distilkit")


def is_pipeline(tree: dict) -> bool:
    """Whether a recipe mapping is a pipeline (it has ``stages``)."""
    return "stages" in tree


def _merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; values of ``override`` win."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def stage_dir(pipeline: PipelineConfig, index: int) -> Path:
    """Output directory of stage ``index`` (``output_dir/<index>-<name>``)."""
    return Path(pipeline.output_dir) / f"{index}-{pipeline.stages[index].name}"


def stage_tree(pipeline: PipelineConfig, index: int) -> dict:
    """The plain recipe mapping of stage ``index`` (teacher = previous stage's model for ``index > 0``)."""
    stage = pipeline.stages[index]
    shared = pipeline.model_dump(exclude={"stages", "description"})
    tree = {**shared, "output_dir": str(stage_dir(pipeline, index))}
    for section in STAGE_SECTIONS:
        value = getattr(stage, section, None)
        if value is not None:
            tree[section] = _merge(tree.get(section, {}), value)
    if index > 0:
        previous = pipeline.stages[index - 1]
        if previous.student.get("kind") == "bilstm":
            raise RecipeError(f"stages[{index}] ({stage.name}): stage '{previous.name}' trains a BiLSTM, which "
                              "cannot teach a later stage; make it the last stage (its 'quantize' runs after it)")
        previous_length = previous.student.get("max_length", pipeline.teacher.get("max_length", 128))
        tree["teacher"] = {"model": str(stage_dir(pipeline, index - 1) / "model"), "max_length": previous_length,
                           "batch_size": pipeline.teacher.get("batch_size", 64), **stage.teacher}
    return tree


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


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Load a pipeline recipe and validate every stage as a full recipe before anything runs.

    Raises:
        RecipeError: naming the file and ``stages[i]`` and the dotted key for every problem.
    """
    tree = read_yaml(path)
    for item in overrides:
        apply_override(tree, item)
    return validate_pipeline(tree, str(path))


def validate_pipeline(tree: dict, source: str = "<pipeline>") -> PipelineConfig:
    """Validate a pipeline mapping (see :func:`load_pipeline`)."""
    try:
        pipeline = PipelineConfig.model_validate(tree)
    except ValidationError as err:
        raise RecipeError(format_validation_error(err, source, PipelineConfig)) from None
    for index, stage in enumerate(pipeline.stages):
        validate_recipe(stage_tree(pipeline, index), source=f"{source}: stages[{index}] ({stage.name})")
    names = [stage.name for stage in pipeline.stages]
    if len(set(names)) != len(names):
        raise RecipeError(f"{source}: stages: names must be unique, got {names}")
    return pipeline


def run_pipeline(pipeline: PipelineConfig, *, measure_side_by_side: bool = True) -> dict:
    """Run (or resume) every stage in order and write ``output_dir/pipeline.json`` and ``pipeline.md``.

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
        if finished(directory):
            info["resumed"] = "skipped (already complete)"
        else:
            if stage.search is not None:
                info["search"] = budget_search(tree, stage.search)
                apply_override(tree, f"{stage.search.key}={yaml_scalar(info['search']['chosen'])}")
            if any((directory / "checkpoints").glob("step-*")):
                tree["train"] = {**tree.get("train", {}), "resume_from": "latest"}
                info["resumed"] = "from latest checkpoint"
            run(validate_recipe(tree, source=f"{pipeline.output_dir}: stages[{index}] ({stage.name})"))
            fault_point("pipeline.stage")
            if "search" in info:
                write_json_atomic(directory / "search.json", info["search"])
        if (directory / "search.json").is_file() and "search" not in info:
            info["search"] = read_json(directory / "search.json")
        stages.append(info)
    summary = summarize(pipeline, stages, measure_side_by_side=measure_side_by_side)
    write_json_atomic(out / "pipeline.json", summary)
    write_text_atomic(out / "pipeline.md", summary_markdown(summary))
    return summary
