"""Recipe checks that span keys: combinations the schema of one section cannot see.

Two kinds live here, each one rule in an explicit tuple:

* :data:`MEANINGLESS` -- a key that another key makes meaningless. Writing it is an error naming both keys,
  never a value silently dropped (issue 18: ``embedding_dim: 300`` with ``init_embeddings_from_teacher:
  true`` used to keep BERT-large's 1024-d vectors and give a student 36x larger than the recipe promised).
  A rule fires only on keys the recipe *writes* (pydantic's ``model_fields_set``), so a default that does not
  apply is never an error. ``docs/design.md`` lists every rule; a test keeps the two in step.
* :data:`CONFLICTS` -- combinations that would fail later, or train something that cannot work.

The rules here are the generic ones (students, teachers, training, measurement, the Hub); each method declares
the rules about its own keys (:attr:`distilkit.core.method_spec.Method.meaningless` and ``conflicts``, in
``methods/<name>/checks.py``) and both tuples collect them from :data:`distilkit.run.methods.METHODS`, ordered by
the recipe section of their key.

:func:`recipe_problems` runs them all and returns every message, so a recipe with three mistakes shows three
lines rather than the first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection

from distilkit.core.plugins import is_plugin_path
from distilkit.core.recipe_rules import Rule, written
from distilkit.data.tasks import TaskSpec
from distilkit.run.methods import METHODS, STUDENTS
from distilkit.run.schema import Recipe

__all__ = ["CONFLICTS", "MEANINGLESS", "Rule", "meaningless_keys", "recipe_problems", "written"]


def _student(recipe: Recipe, kind: str | tuple[str, ...]) -> bool:
    return recipe.student.kind in ((kind,) if isinstance(kind, str) else kind)


def _plugin(recipe: Recipe) -> bool:
    """Whether the (first) teacher, whose word vectors a student copies, is a plug-in."""
    return is_plugin_path(recipe.primary_teacher.model)


def _teachers(recipe: Recipe, broken: Callable[[bool, object], bool]) -> bool:
    """Whether ``broken(is_plugin, teacher_section)`` holds for any teacher of the recipe."""
    return any(broken(is_plugin_path(t.model), t) for t in recipe.teachers)


def _shared(recipe: Recipe):
    """The transformer student's ``share_layers`` section, or ``None``."""
    return getattr(recipe.student, "share_layers", None) if _student(recipe, "transformer") else None


def _share_group_count(recipe: Recipe) -> int | None:
    """How many shared blocks a whole-number depth gives (``None`` when a fraction or a non-divisor)."""
    share, depth = _shared(recipe), recipe.student.num_layers
    if share is None or not isinstance(depth, int):
        return None
    size = depth if share.group_size == "all" else share.group_size
    return depth // size if depth % size == 0 else None


_GENERIC_MEANINGLESS: tuple[Rule, ...] = (
    Rule("student.embedding_dim", "student.init_embeddings_from_teacher",
         lambda r, t: _student(r, "bilstm") and r.student.init_embeddings_from_teacher is True
         and written(r.student, "embedding_dim"),
         "true copies the teacher's word vectors at the teacher's width; use 'pca' to project them to "
         "embedding_dim, or drop embedding_dim"),
    Rule("student.init_embeddings_from_teacher", "student.tokenizer",
         lambda r, t: _student(r, "bilstm") and bool(r.student.init_embeddings_from_teacher)
         and written(r.student, "init_embeddings_from_teacher") and isinstance(r.student.tokenizer, str),
         "the teacher's word vectors index the teacher's vocabulary, not student.tokenizer's; drop "
         "student.tokenizer (the student then reads the teacher's) or set init_embeddings_from_teacher: false"),
    Rule("student.init_embeddings_from_teacher", "teacher.model",
         lambda r, t: _student(r, "bilstm") and bool(r.student.init_embeddings_from_teacher)
         and written(r.student, "init_embeddings_from_teacher") and _plugin(r),
         "a plug-in teacher has no Hugging Face word embeddings to copy; set init_embeddings_from_teacher: false"),
    Rule("train.sparse_embeddings", "student.freeze_embeddings",
         lambda r, t: _student(r, "bilstm") and r.student.freeze_embeddings and r.train.sparse_embeddings,
         "a frozen table gets no gradients, sparse or dense; drop one of them"),
    Rule("student.init_from_teacher_layers", "student.config_from",
         lambda r, t: _student(r, "transformer") and r.student.config_from is not None
         and written(r.student, "init_from_teacher_layers") and r.student.init_from_teacher_layers is not None,
         "a student built from config_from has no teacher layers to copy; drop one of them"),
    Rule("student.init_from_teacher_layers", "student.share_layers.init",
         lambda r, t: _shared(r) is not None and isinstance(_shared(r).init, list)
         and written(r.student, "init_from_teacher_layers") and r.student.init_from_teacher_layers is not None,
         "a list of teacher layers in share_layers.init picks each group's teacher layer itself; drop one of them"),
    Rule("student.share_layers.init", "student.init_from_teacher_layers",
         lambda r, t: _shared(r) is not None and written(_shared(r), "init")
         and r.student.init_from_teacher_layers is None,
         "a student that copies no teacher layers has none to average or pick: each shared block starts as its "
         "group's first, freshly initialised layer"),
    Rule("student.share_layers.init", "student.config_from",
         lambda r, t: _shared(r) is not None and written(_shared(r), "init") and r.student.config_from is not None,
         "a student built from config_from has no teacher layers to average or pick"),
    Rule("train.max_steps", "train.epochs",
         lambda r, t: r.train.epochs == 0 and r.train.max_steps is not None,
         "epochs: 0 trains no step at all"),
    Rule("train.resume_from", "train.epochs",
         lambda r, t: r.train.epochs == 0 and r.train.resume_from is not None,
         "epochs: 0 trains nothing to resume"),
    Rule("train.log_every", "train.log_with",
         lambda r, t: written(r.train, "log_every") and not r.train.log_with,
         "no tracker is logged to"),
    *(Rule(f"measure.{name}", "measure.latency",
           lambda r, t, name=name: not r.measure.latency and written(r.measure, name),
           "it sets up the latency measurement that latency: false turns off")
      for name in ("batch_sizes", "repeats", "num_threads")),
    Rule("teacher.revision", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, c: plugin and c.revision is not None),
         "a plug-in teacher is imported, not downloaded: there is no Hub revision to pick"),
    Rule("teacher.kwargs", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, c: not plugin and bool(c.kwargs)),
         "kwargs are passed to a plug-in callable (package.module:Callable) only"),
    Rule("teacher.dtype", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, c: plugin and written(c, "dtype")),
         "a plug-in teacher runs in whatever precision it was built in"),
    Rule("teacher.finetune", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, c: plugin and c.finetune is not None),
         "distilkit fine-tunes Hugging Face teachers; fine-tune a plug-in teacher yourself"),
    *(Rule(f"hub.{name}", "hub.push",
           lambda r, t, name=name: r.hub is not None and not r.hub.push and written(r.hub, name),
           "the recipe pushes nothing; `distilkit push RUN_DIR --repo user/name` takes its own arguments")
      for name in ("repo", "private")),
    Rule("data.augment.pair_mode", "task",
         lambda r, t: r.data.augment is not None and written(r.data.augment, "pair_mode") and not t.is_pair,
         "the task has one sentence per example: there is no pair to choose from"),
)

#: Kinds that are the teacher's own network (copied, pruned, attention swapped): they read its token ids.
_TEACHER_NETWORK_KINDS = tuple(name for name, kind in STUDENTS.items() if kind.teacher_network)

_GENERIC_CONFLICTS: tuple[Rule, ...] = (
    Rule("student.vocab", "student.tokenizer",
         lambda r, t: _student(r, "bilstm") and r.student.vocab is not None
         and r.student.tokenizer is not None and not isinstance(r.student.tokenizer, str),
         "a trained SentencePiece vocabulary is already made for the transfer set; trimming keeps WordPiece "
         "tokens of the teacher's vocabulary; choose one (vocab_size sets the trained vocabulary's size)"),
    Rule("train.sparse_embeddings", "train.mixed_precision",
         lambda r, t: r.train.sparse_embeddings and r.train.mixed_precision == "fp16",
         "clipping sparse gradients does not unscale fp16 gradients; use mixed_precision: bf16 or no"),
    Rule("student.tokenizer", "student.kind",
         lambda r, t: _student(r, _TEACHER_NETWORK_KINDS) and r.student.tokenizer is not None,
         f"{', '.join(_TEACHER_NETWORK_KINDS)} students are the teacher's own network and read its token ids; "
         "set teacher.tokenizer instead"),
    Rule("teacher.adapter", "teacher.finetune",
         lambda r, t: _teachers(r, lambda plugin, s: s.adapter is not None and s.finetune is not None),
         "the adapter would be merged into a teacher the fine-tuning then changes (or is trained on a base it "
         "never saw); fine-tune with teacher.finetune.lora, or load an adapter onto a fine-tuned teacher"),
    Rule("teacher.adapter", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, s: s.adapter is not None and plugin),
         "a PEFT adapter loads onto a Hugging Face model; a plug-in teacher loads its own weights"),
    Rule("student.share_layers.group_size", "student.num_layers",
         lambda r, t: _shared(r) is not None and isinstance(r.student.num_layers, int)
         and _shared(r).group_size != "all" and r.student.num_layers % _shared(r).group_size != 0,
         "layers are shared in groups of group_size consecutive layers, so group_size must divide the depth "
         "(or be 'all')"),
    Rule("student.share_layers.init", "student.share_layers.group_size",
         lambda r, t: _shared(r) is not None and isinstance(_shared(r).init, list)
         and _share_group_count(r) is not None and len(_shared(r).init) != _share_group_count(r),
         "a list gives one teacher layer per group of shared layers (num_layers / group_size of them)"),
)



def _in_recipe_order(rules) -> tuple[Rule, ...]:
    """``rules`` ordered by the recipe section their key is in (stable), so messages follow the recipe."""
    sections = list(Recipe.model_fields)
    return tuple(sorted(rules, key=lambda rule: sections.index(rule.key.split(".")[0])))


MEANINGLESS: tuple[Rule, ...] = _in_recipe_order(
    [*_GENERIC_MEANINGLESS, *(rule for method in METHODS.values() for rule in method.meaningless)])
CONFLICTS: tuple[Rule, ...] = _in_recipe_order(
    [*_GENERIC_CONFLICTS, *(rule for method in METHODS.values() for rule in method.conflicts)])


def recipe_problems(recipe: Recipe, task: TaskSpec, overrides: Collection[str] = ()) -> list[str]:
    """Every rule of :data:`MEANINGLESS` and :data:`CONFLICTS` the recipe breaks, one message each, naming
    both keys and their values, then every method's other problems (:attr:`~distilkit.core.method_spec.Method.problems`).

    ``overrides`` are the dotted keys given with ``--set``. A switch set there (``--set measure.latency=false``,
    ``train.epochs=0``) deliberately turns off what the recipe file configured for it, so the keys it makes
    meaningless are not errors then -- unless they were given on the command line too."""
    problems = []
    for verb, rules in (("means nothing with", MEANINGLESS), ("conflicts with", CONFLICTS)):
        for rule in rules:
            switched = rules is MEANINGLESS and rule.because in overrides and rule.key not in overrides
            if not switched and rule.applies(recipe, task):
                problems.append(f"{rule.key}: {_value(recipe, rule.key)} {verb} {rule.because}: "
                                f"{_value(recipe, rule.because)}; {rule.why}")
    for method in METHODS.values():  # a method's checks that are not one two-key rule
        if method.problems is not None:
            problems += method.problems(recipe, task)
    return problems


def meaningless_keys(recipe: Recipe, task: TaskSpec) -> list[str]:
    """Keys of :data:`MEANINGLESS` rules the recipe breaks (for dumps that write every default)."""
    return [rule.key for rule in MEANINGLESS if rule.applies(recipe, task)]


def _value(recipe: Recipe, dotted: str) -> str:
    node = recipe
    for part in dotted.split("."):
        # a list of teachers: the key's value in every teacher section
        node = [getattr(n, part) for n in node] if isinstance(node, list) else getattr(node, part)
    if isinstance(node, list):
        node = [n.model_dump(exclude_unset=True) if hasattr(n, "model_dump") else n for n in node]
    if hasattr(node, "model_dump"):
        node = node.model_dump(exclude_unset=True)
    return json.dumps(node)
