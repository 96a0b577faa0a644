"""Recipe files on disk and on the command line: YAML loading, ``--set`` overrides, validation with
file-and-key error messages, and the resolved dump written next to every run.

The schema itself lives in :mod:`distilkit.run.schema`; this module turns text into it and back.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from distilkit.core.errors import DistilkitError, RecipeError
from distilkit.core.yaml_files import read_yaml
from distilkit.data.tasks import TaskSpec, load_task
from distilkit.models.config import TOKENIZER_TAGS, FinetuneConfig
from distilkit.run.methods import STUDENTS
from distilkit.run.recipe_checks import meaningless_keys, recipe_problems
from distilkit.run.schema import STUDENT_KINDS, TEACHER_FORMS, Recipe


def _model_forms(annotation, listed: bool = False) -> list[tuple[type[BaseModel], bool]]:
    """The pydantic models inside an annotation, through unions, lists and ``Annotated`` tags, each with
    whether it sits inside a list (``teacher`` takes one section or a list of them)."""
    origin = typing.get_origin(annotation)
    if origin is None and isinstance(annotation, type):
        return [(annotation, listed)] if issubclass(annotation, BaseModel) else []
    return [form for arg in typing.get_args(annotation) for form in _model_forms(arg, listed or origin is list)]

def _known_keys(model: type[BaseModel], path: tuple) -> list[str]:
    """Field names valid at ``path`` inside ``model`` (for "did you mean" hints); a list index in ``path``
    (``teacher.1``, ``stages.0``) picks the list form of a field that also takes a single section."""
    current: Any = model
    for i, part in enumerate(path):
        if part.isdigit():
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        forms = _model_forms(fields[part].annotation)
        listed = i + 1 < len(path) and path[i + 1].isdigit()
        models = [m for m, _ in forms]
        preferred = [m for m, is_list in forms if is_list == listed]
        if not models:
            return []
        current = (preferred or models)[0]
    return list(getattr(current, "model_fields", {}))


def format_validation_error(err: ValidationError, source: str, model: type[BaseModel] = Recipe,
                            overrides: dict[str, str] | None = None) -> str:
    """Turn a pydantic error into lines ``source: dotted.key: message`` a user can act on."""
    lines = []
    for item in err.errors():
        # Discriminated unions insert the tag ("bilstm") into the location; users never wrote it.
        kind = next((p for p in item["loc"] if p in STUDENT_KINDS), None)
        loc = [str(p) for i, p in enumerate(item["loc"]) if p not in STUDENT_KINDS and p not in TEACHER_FORMS
               and not (p in TOKENIZER_TAGS and i and item["loc"][i - 1] == "tokenizer")]
        key = ".".join(loc) or "<root>"
        if _teacher_item(loc):  # teacher.1.model -> teacher[1].model, as preflight names it
            key = f"teacher[{loc[1]}]" + "".join(f".{p}" for p in loc[2:])
        where = f"--set {key}={overrides[key]}" if overrides and key in overrides else source
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            known = _known_keys(model, tuple(loc[:-1]))
            if "student" in loc[:-1]:  # the keys of the kind the recipe chose, or of a section inside it
                chosen = STUDENTS[kind].config if kind in STUDENTS else None
                inner = tuple(loc[loc.index("student") + 1:-1])
                known = sorted(_known_keys(chosen, inner)) if chosen else []
            hint = difflib.get_close_matches(loc[-1], known, n=1)
            msg = f"unknown key '{loc[-1]}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
            if known:
                msg += f"; valid keys here: {', '.join(known)}"
            if loc[-2:] == ["student", "share_layers"] and kind is not None:
                msg = (f"cross-layer parameter sharing is for kind: transformer students, not {kind}: "
                       f"{STUDENTS[kind].no_sharing}")
        elif "input" in item and item["type"] not in ("missing",):
            msg += f" (got {item['input']!r})"
        lines.append(f"{where}: {key}: {msg}")
    return "\n".join(lines)


def _teacher_item(loc: list[str]) -> bool:
    return len(loc) > 1 and loc[0] == "teacher" and loc[1].isdigit()


def apply_override(tree: dict, assignment: str) -> tuple[str, str]:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (``2`` -> int, ``null``)."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment}: expected KEY=VALUE, e.g. train.epochs=2")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        if isinstance(node, list):  # pipeline stages: --set stages.1.train.epochs=2
            node = _list_item(node, part, assignment)
            continue
        child = node.setdefault(part, {})
        if not isinstance(child, dict | list):
            raise RecipeError(f"--set {assignment}: '{part}' holds a value, not a section")
        node = child
    value = yaml.safe_load(raw) if raw != "" else None
    if isinstance(node, list):
        _list_item(node, parts[-1], assignment)  # validates the index
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value
    return key.strip(), raw


def _list_item(items: list, part: str, assignment: str):
    if not part.isdigit() or int(part) >= len(items):
        raise RecipeError(f"--set {assignment}: '{part}' is not an index of a list of {len(items)} items")
    return items[int(part)]


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load and validate a recipe file, applying ``--set`` style overrides first.

    Args:
        path: The recipe YAML file.
        overrides: ``["train.epochs=2", "data.dir=/data/glue"]``; values are parsed as YAML.

    Returns:
        The validated :class:`Recipe`.

    Raises:
        RecipeError: naming the file (or the ``--set`` argument) and the dotted key for every problem.
    """
    tree = read_yaml(path)
    applied = dict(apply_override(tree, item) for item in overrides)
    return validate_recipe(tree, source=str(path), overrides=applied)


def validate_recipe(tree: dict, source: str = "<recipe>", overrides: dict[str, str] | None = None) -> Recipe:
    """Validate a recipe given as a nested dict (see :func:`load_recipe`)."""
    try:
        recipe = Recipe.model_validate(tree)
    except ValidationError as err:
        raise RecipeError(format_validation_error(err, source, Recipe, overrides)) from None
    try:
        task = load_task(recipe.task)
    except DistilkitError as exc:
        raise RecipeError(f"{source}: task: {exc}") from None
    problems = recipe_problems(recipe, task, overrides or {})
    if problems:
        raise RecipeError("\n".join(f"{source}: {problem}" for problem in problems))
    for teacher in recipe.teachers:  # the list's members are the recipe's own sections: updated in place
        if teacher.finetune is not None:
            teacher.finetune = with_task_finetune(teacher.finetune, task)
    return recipe


def with_task_finetune(finetune: FinetuneConfig, task: TaskSpec) -> FinetuneConfig:
    """``teacher.finetune`` with every key the recipe leaves unset taken from the task's ``teacher_finetune``
    (so ``teacher: {model: minilm, finetune: {}}`` fine-tunes with the settings measured for that task).

    Raises:
        RecipeError: the task file's ``teacher_finetune`` holds an unknown key or a bad value (named).
    """
    if not task.teacher_finetune:
        return finetune
    merged = {**task.teacher_finetune, **finetune.model_dump(include=finetune.model_fields_set)}
    try:
        return FinetuneConfig.model_validate(merged)
    except ValidationError as err:
        where = f"{task.source_path or task.name}: teacher_finetune"
        raise RecipeError(format_validation_error(err, where, FinetuneConfig)) from None


def dump_recipe(recipe: Recipe) -> str:
    """The fully resolved recipe (defaults included) as YAML, for ``output_dir/recipe.yaml``.

    Defaults that another key makes meaningless are left out (writing them would be an error), so the dump
    validates again and means the same recipe."""
    tree = recipe.model_dump(mode="json")
    task = load_task(recipe.task)
    while keys := meaningless_keys(Recipe.model_validate(tree), task):
        for key in keys:
            *parents, last = key.split(".")
            nodes = [tree]
            for part in parents:  # a list of teachers: the key in every teacher section
                nodes = [n for node in nodes for n in (node[part] if isinstance(node[part], list) else [node[part]])]
            for node in nodes:
                node.pop(last, None)
    return yaml.safe_dump(tree, sort_keys=False)
