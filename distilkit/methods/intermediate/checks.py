"""Recipe checks and preflight of the ``intermediate:`` section (torch-free: they run before any model loads).

:func:`recipe_problems` needs the recipe alone (``run/recipe_checks.py`` calls it); :func:`preflight_problems`
also reads the teacher's ``config.json`` (``run/preflight.py`` passes its reader). The same conditions are checked again
on the built models (:mod:`distilkit.methods.intermediate.hooks`), for what only the built student knows (a
pruned student's depth and value width).
"""

from __future__ import annotations

from collections.abc import Callable

from distilkit.core.plugins import is_plugin_path
from distilkit.methods.intermediate.layer_map import layer_map_problems

#: Student kinds that are Hugging Face transformers reading the teacher's token ids.
TRANSFORMER_KINDS = ("transformer", "copy", "pruned", "linear_attention")

#: ``model_type`` values (after the distilkit prefixes) whose last layer's value projection is found by name.
VALUE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert")
_DISTILKIT_PREFIXES = ("distilkit-pruned-", "distilkit-linear-", "distilkit-shared-")
BILSTM_MODEL_TYPE = "distilkit-bilstm"
LINEAR_PREFIX = "distilkit-linear-"

# Config attribute names differ across the BERT family: DistilBERT says n_layers/dim/n_heads.
_LAYERS, _WIDTH, _HEADS = ("num_hidden_layers", "n_layers"), ("hidden_size", "dim"), ("num_attention_heads", "n_heads")


def _first(config: dict, names: tuple[str, ...]) -> int | None:
    return next((config[n] for n in names if isinstance(config.get(n), int)), None)


def config_depth(config: dict) -> int | None:
    """Transformer layers of a ``config.json`` mapping (``None`` when it names none)."""
    return _first(config, _LAYERS)


def config_width(config: dict) -> int | None:
    """Hidden width of a ``config.json`` mapping."""
    return _first(config, _WIDTH)


def config_heads(config: dict) -> int | None:
    """Attention heads per layer of a ``config.json`` mapping."""
    return _first(config, _HEADS)


def own_model_type(config: dict) -> str:
    """The architecture under distilkit's pruned/linear/shared wrappers (``distilkit-pruned-bert`` -> ``bert``)."""
    model_type = str(config.get("model_type", ""))
    for prefix in _DISTILKIT_PREFIXES:
        model_type = model_type.removeprefix(prefix)
    return model_type


def recipe_problems(recipe) -> list[str]:
    """What makes ``intermediate:`` impossible whatever the models are, one message each, naming the keys.

    * a BiLSTM student has no transformer layers, attention or token states aligned with the teacher's;
    * a linear-attention student computes no attention matrix (``intermediate.attention``);
    * a plug-in teacher has no Hugging Face inside to read;
    * the student must read the teacher's token ids (the teacher runs on the student's batch, token for token):
      ``student.tokenizer`` and ``student.vocab`` give it other ids.
    """
    cfg = getattr(recipe, "intermediate", None)
    if cfg is None:
        return []
    student, kind = recipe.student, recipe.student.kind
    if kind not in TRANSFORMER_KINDS:
        return [f"intermediate: {cfg.terms()} means nothing with student.kind: \"{kind}\"; a BiLSTM has no "
                "transformer layers, attention maps or per-token states aligned with the teacher's (it reads words "
                f"without special tokens); use a transformer student ({', '.join(TRANSFORMER_KINDS)})"]
    problems = []
    if kind == "linear_attention" and cfg.attention is not None:
        problems.append("intermediate.attention: conflicts with student.kind: \"linear_attention\"; linear "
                        "attention never forms the softmax attention matrix the term compares (its own "
                        "attention transfer is loss.attention_weight)")
    teacher = recipe.primary_teacher
    if is_plugin_path(teacher.model):
        problems.append(f"intermediate: conflicts with teacher.model: \"{teacher.model}\"; a plug-in teacher has "
                        "no Hugging Face hidden states or attention to distil from")
    if isinstance(student.tokenizer, str) and student.tokenizer not in (teacher.model, teacher.tokenizer):
        problems.append(f"intermediate: conflicts with student.tokenizer: \"{student.tokenizer}\"; the teacher runs "
                        "on the student's token ids, so the student must use the teacher's tokenizer")
    if getattr(student, "vocab", None) is not None:
        problems.append("intermediate: conflicts with student.vocab; a trimmed vocabulary renumbers the tokens "
                        "the teacher would read (the teacher runs on the student's token ids)")
    return problems


def _student_depth(recipe, teacher_depth: int | None) -> int | None:
    """The student's depth as far as the recipe and the teacher's config tell (``None``: known once built)."""
    student = recipe.student
    if student.kind == "transformer":
        layers = student.num_layers
        if isinstance(layers, float):  # a fraction of the teacher's, rounded as models.transformer does
            return None if teacher_depth is None else max(1, int(layers * teacher_depth + 0.5))
        return layers
    if teacher_depth is None:
        return None
    if student.kind == "pruned":
        return teacher_depth - student.layers
    return teacher_depth  # copy, linear_attention


def preflight_problems(recipe, read_config: Callable[[str], dict | None] | None) -> list[str]:
    """``intermediate:`` against the (first) teacher's ``config.json``.

    ``read_config(name)`` returns a model's ``config.json`` mapping, or ``None`` (a plug-in, or a model not
    readable without a download); ``read_config=None``: the teacher is one a pipeline stage has yet to write.
    What cannot be read here is checked again when the run has built the models.

    * a BiLSTM teacher (a pipeline stage taught by a BiLSTM) has no transformer inside;
    * a linear-attention teacher returns no attention matrix (``intermediate.attention``);
    * explicit layer-map pairs must name layers both models have (``intermediate.<term>.layer_map``);
    * ``intermediate.value_relation.relation_heads`` must divide both models' widths, and the teacher's
      architecture must be one whose value projection is known.
    """
    cfg = getattr(recipe, "intermediate", None)
    if cfg is None or recipe.student.kind not in TRANSFORMER_KINDS:
        return []  # a BiLSTM student: recipe_problems names it
    student_depth = _student_depth(recipe, None)
    teacher_config = read_config(recipe.primary_teacher.model) if read_config is not None else None
    problems = []
    if teacher_config is not None:
        name = recipe.primary_teacher.model
        model_type = str(teacher_config.get("model_type", ""))
        if model_type == BILSTM_MODEL_TYPE:
            return [f"intermediate: teacher.model '{name}' is a BiLSTM (model type {model_type}): it has no "
                    "transformer layers, attention maps or per-token states to distil from; drop intermediate"]
        if model_type.startswith(LINEAR_PREFIX) and cfg.attention is not None:
            problems.append(f"intermediate.attention: teacher.model '{name}' has linear attention (model type "
                            f"{model_type}); it never forms the softmax attention matrix the term compares")
        if cfg.value_relation is not None and own_model_type(teacher_config) not in VALUE_MODEL_TYPES:
            problems.append(f"intermediate.value_relation: teacher.model '{name}' is model type {model_type}; the "
                            f"value projection is found in model types {', '.join(VALUE_MODEL_TYPES)}")
        teacher_depth = config_depth(teacher_config)
        student_depth = _student_depth(recipe, teacher_depth)
        for term in ("hidden", "attention", "cls"):
            spec = getattr(cfg, term)
            if spec is not None:
                problems += layer_map_problems(spec.layer_map, student_depth, teacher_depth,
                                               f"intermediate.{term}.layer_map")
        problems += _relation_head_problems(recipe, teacher_config)
    else:
        for term in ("hidden", "attention", "cls"):  # the student's side alone
            spec = getattr(cfg, term)
            if spec is not None:
                problems += layer_map_problems(spec.layer_map, student_depth, None, f"intermediate.{term}.layer_map")
    return problems


def _relation_head_problems(recipe, teacher_config: dict) -> list[str]:
    spec = recipe.intermediate.value_relation
    if spec is None:
        return []
    heads = spec.relation_heads or config_heads(teacher_config)
    teacher_width = config_width(teacher_config)
    student_width = getattr(recipe.student, "hidden_size", None) or teacher_width
    problems = []
    for side, width in (("the teacher's", teacher_width), ("the student's", student_width)):
        if heads and width and width % heads:
            given = f"{heads}" if spec.relation_heads else f"{heads} (the default: the teacher's head count)"
            problems.append(f"intermediate.value_relation.relation_heads: {given} does not divide {side} width "
                            f"{width}; give a relation_heads that divides both widths")
    return problems
