"""Pipeline recipes as values: the schema of a ``stages`` file, how each stage's plain recipe is built, and its
validation (see :mod:`distilkit.run.pipeline` for what a pipeline does and :func:`~distilkit.run.pipeline.run_pipeline`).

Kept apart from the runner so that ``distilkit validate`` and preflight check a pipeline without importing
torch or transformers.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from distilkit.core.errors import RecipeError
from distilkit.core.sections import Section
from distilkit.core.yaml_files import read_yaml
from distilkit.run.recipe_io import apply_override, format_validation_error, validate_recipe


class SearchConfig(Section):
    """Budget mode for one stage: the first value of ``key`` whose student fits every given limit is trained."""

    key: str
    """Dotted recipe key inside the stage, e.g. ``student.num_layers``."""
    values: list[Any] = Field(min_length=1)
    """Candidates, from least to most compressed."""
    max_params: int | None = Field(default=None, gt=0)
    max_size_mb: float | None = Field(default=None, gt=0)
    max_latency_ms: float | None = Field(default=None, gt=0)
    """Median CPU latency at ``latency_batch_size``, measured on this machine."""
    latency_batch_size: int = Field(default=1, gt=0)


STAGE_SECTIONS = ("data", "teacher", "student", "loss", "train", "measure", "quantize", "deep_compression", "factorize",
                  "intermediate", "hub")


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
    deep_compression: dict[str, Any] | None = None
    factorize: dict[str, Any] | None = None
    intermediate: dict[str, Any] | None = None
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
        if previous.student.get("kind") == "bilstm" and stage.student.get("kind") not in ("copy", "bilstm"):
            raise RecipeError(f"stages[{index}] ({stage.name}): stage '{previous.name}' trains a BiLSTM, which "
                              "can teach only a copy of itself (Deep Compression, quantization) or another "
                              f"BiLSTM, not a '{stage.student.get('kind')}' student")
        previous_length = previous.student.get("max_length", pipeline.teacher.get("max_length", 128))
        tree["teacher"] = {"model": str(stage_dir(pipeline, index - 1) / "model"), "max_length": previous_length,
                           "batch_size": pipeline.teacher.get("batch_size", 64), **stage.teacher}
    return tree


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
