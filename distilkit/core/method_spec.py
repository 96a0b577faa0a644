"""What a compression method is to the rest of distilkit: one :class:`Method` value, registered once.

A method folder (``distilkit/methods/<name>/``) describes itself in ``method.py`` as ``METHOD = Method(...)``:
the recipe sections it owns, the student kinds it adds, its cross-key rules and preflight checks, its part of
``metrics.json``, its hooks in the training loop and its Hugging Face Auto-class registration. The explicit
dict :data:`distilkit.run.methods.METHODS` lists them, and the recipe schema, the recipe checks, preflight,
pipeline stages, ``metrics.json`` and ``import distilkit``'s registration loop over it; none of them names a
method.

``method.py`` must stay cheap to import (``distilkit validate`` names a bad recipe before torch is imported):
the sections, rules and preflight checks are torch-free values and functions, and everything that needs torch
or transformers is a dotted path (``package.module:attribute``) resolved only when it is used
(:func:`distilkit.core.plugins.resolve`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from distilkit.core.recipe_rules import Rule
from distilkit.core.sections import Section


@dataclass(frozen=True)
class StudentInputs:
    """What a student builder gets besides its ``student`` section (:attr:`StudentKind.build`).

    Attributes:
        task: The run's :class:`~distilkit.data.tasks.TaskSpec` (labels, pair or single sentences).
        teacher: The (first) Hugging Face teacher (``HFTeacher``), or ``None`` for a plug-in teacher.
        tokenizer: The student's tokenizer, already chosen (the teacher's, a named one or a trained vocabulary).
        rows: The labelled transfer set (importance scores, vocabularies), or ``None``.
        seed: ``train.seed``.
    """

    task: Any
    teacher: Any
    tokenizer: Any
    rows: list[dict] | None
    seed: int


@dataclass(frozen=True)
class StudentKind:
    """One ``student.kind``: its recipe section and how to build and feed the student.

    Attributes:
        config: The ``student`` section of this kind (a :class:`Section` whose ``kind`` is a one-value
            ``Literal``: the name recipes write).
        build: Dotted path to ``build(spec, inputs: StudentInputs) -> PreTrainedModel``.
        encode: Dotted path to ``encode(tokenizer, texts_a, texts_b, max_length) -> dict`` of model inputs.
        teacher_network: The student is the teacher's own network (copied, pruned, attention swapped): it reads
            the teacher's token ids, so a ``student.tokenizer`` of its own is a recipe error.
        no_sharing: Why ``student.share_layers`` does not apply to this kind (named instead of "unknown key").
    """

    config: type[Section]
    build: str
    encode: str
    teacher_network: bool = False
    no_sharing: str = "its layers are not a stack of identical blocks"

    @property
    def name(self) -> str:
        """The ``kind`` value recipes write."""
        return self.config.model_fields["kind"].annotation.__args__[0]


@dataclass(frozen=True)
class Method:
    """A compression method, as the recipe layer sees it (see the module docstring).

    Attributes:
        name: The method's name (its folder's).
        sections: Recipe sections it owns: dotted key -> section class. A top-level key (``factorize``) is a
            recipe section; ``train.lora`` is the field ``lora`` of the ``train`` section. A section is
            ``None`` when the recipe leaves it out, unless its key is in ``defaults``.
        defaults: Keys of ``sections`` that are always present (their defaults when left out), like ``loss``.
        students: Student kinds it adds (``pruned``, ``linear_attention``).
        meaningless: Rules ``key`` is meaningless when ``because`` says so (:mod:`distilkit.run.recipe_checks`).
        conflicts: Rules for combinations that conflict.
        problems: ``problems(recipe, task) -> list[str]``: recipe problems that are not one two-key rule, checked
            with the rules (torch-free; one line each, each starting with the recipe key).
        preflight: ``preflight(recipe, teacher_exists) -> list[str]``: problems found before any model loads,
            without importing torch (a teacher's ``config.json``, optional packages); one line each, each
            starting with the recipe key (``teacher_exists`` is ``False`` for a pipeline stage whose teacher an
            earlier stage writes).
        hooks: Dotted path to ``from_recipe(recipe) -> MethodHooks | None`` (``None``: no hooks at all).
        metrics: Dotted path to ``metrics(recipe, student, output_dir, rescore) -> dict``: the keys it adds to
            ``metrics.json``'s ``student`` (``{}`` when the recipe does not use it). ``rescore()`` returns
            ``{"metrics": ..., "float_metrics": ..., "float_size_on_disk_bytes": ...}`` for a method that
            converts the saved model (the reloaded model's scores, and the float model's).
        auto_classes: Dotted path to a dict of ``(config_class, model_class)`` pairs registered with
            ``AutoConfig``/``AutoModelForSequenceClassification`` by ``import distilkit``.
        register: Dotted path to a function ``import distilkit`` calls once transformers is imported (a
            transformers quantizer or loader for ``quant_method`` values of the method's saved models).
    """

    name: str
    sections: Mapping[str, type[Section]] = field(default_factory=dict)
    defaults: tuple[str, ...] = ()
    students: tuple[StudentKind, ...] = ()
    meaningless: tuple[Rule, ...] = ()
    conflicts: tuple[Rule, ...] = ()
    problems: Callable[[Any, Any], list[str]] | None = None
    preflight: Callable[[Any, bool], list[str]] | None = None
    hooks: str | None = None
    metrics: str | None = None
    auto_classes: str | None = None
    register: str | None = None

    def dotted_paths(self) -> list[str]:
        """Every dotted path the method names (hooks, metrics, registration, its students' builders)."""
        paths = [self.hooks, self.metrics, self.auto_classes, self.register,
                 *(p for kind in self.students for p in (kind.build, kind.encode))]
        return [p for p in paths if p is not None]
