"""The recipe schema: every section, assembled from the layers that own them and from the method registry.

A recipe holds *values* only. Plug-ins (a custom teacher) are dotted import paths such as
``my_pkg.teachers:MyTeacher``; the built-in short names live in explicit dicts
(:data:`distilkit.run.methods.STUDENTS`, :data:`distilkit.models.model_names.TEACHER_ALIASES`,
:data:`distilkit.run.methods.METHODS`). The sections a method owns (``factorize``, ``train.lora``...) and the
student kinds come from :data:`~distilkit.run.methods.METHODS`; this module names no method. Loading, overrides
and validation: :mod:`distilkit.run.recipe_io`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, create_model, field_validator, model_validator

from distilkit.core.sections import Section
from distilkit.data.config import CacheConfig, DataConfig
from distilkit.models.config import EnsembleTeacherConfig, TeacherConfig
from distilkit.run.methods import METHODS, STUDENTS

STUDENT_CONFIGS = tuple(kind.config for kind in STUDENTS.values())

STUDENT_KINDS = tuple(STUDENTS)

StudentConfig = Annotated[Union[STUDENT_CONFIGS], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple)


def method_sections(parent: str = "") -> dict[str, tuple[type[Section], bool]]:
    """The sections the methods own directly under ``parent`` (``""``: the recipe's top level; ``"train"``):
    name -> (section class, whether it is always present)."""
    found = {}
    for method in METHODS.values():
        for key, section in method.sections.items():
            owner, _, name = key.rpartition(".")
            if owner == parent:
                if name in found:
                    raise TypeError(f"recipe section '{key}' is claimed by two methods (the second: {method.name})")
                found[name] = (section, key in method.defaults)
    return found


def _fields(sections: dict[str, tuple[type[Section], bool]], present: bool) -> dict[str, Any]:
    """pydantic field definitions of the sections that are (or are not) always present."""
    return {name: (section, Field(default_factory=section, description=section.__doc__)) if always
            else (section | None, Field(default=None, description=section.__doc__))
            for name, (section, always) in sections.items() if always == present}


#: Tags of the two forms ``teacher:`` takes (pydantic puts them in error locations; messages drop them).
TEACHER_FORMS = ("teacher-section", "teacher-list")


def _teacher_form(value) -> str:
    return TEACHER_FORMS[1] if isinstance(value, list) else TEACHER_FORMS[0]


# A callable discriminator, not a plain union: a mistake in one teacher section is reported once, against the
# form the recipe wrote, instead of once per form pydantic tried.
TeacherSpec = Annotated[
    Annotated[TeacherConfig, Tag(TEACHER_FORMS[0])] | Annotated[list[EnsembleTeacherConfig], Tag(TEACHER_FORMS[1])],
    Discriminator(_teacher_form),
]


class _TrainSettings(Section):
    """Optimisation and bookkeeping of the student's training loop."""

    epochs: int = Field(default=3, ge=0)
    """0: no training; the student is evaluated and saved as built (post-training quantization of a copy)."""
    max_steps: int | None = Field(default=None, gt=0)
    """Stop after this many optimizer steps (overrides ``epochs``)."""
    batch_size: int = Field(default=32, gt=0)
    """Per process; the global batch is ``batch_size * num_processes * grad_accum``."""
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    grad_accum: int = Field(default=1, gt=0)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    group_by_length: bool = True
    """Batch transfer-set examples of similar length together: less padding, fewer LSTM steps (1.7x the BiLSTM
    examples/s on SST-2 in a microbenchmark); the order stays a function of ``(seed, epoch)``."""
    sparse_embeddings: bool = False
    """Sparse gradients for the student's input embedding, updated by lazy Adam (``torch.optim.SparseAdam``):
    only the rows a batch uses are read and written, instead of the whole table every step (2.4x the BiLSTM
    examples/s on SST-2 with a 30,522-row table, in a microbenchmark). ``weight_decay`` still decays every row,
    as AdamW does (one pass over the table per step)."""
    seed: int = 42
    eval_every_epoch: bool = True
    """Evaluate after every epoch and keep the best; ``false``: after the last epoch only (saves the final student)."""
    checkpoint_every: int | None = Field(default=None, gt=0)
    """Save the full training state every N optimizer steps (and at each epoch end)."""
    keep_checkpoints: int = Field(default=2, gt=0)
    resume_from: str | None = None
    """A checkpoint directory, or ``latest`` for the newest one under ``output_dir/checkpoints``."""
    log_with: list[str] = Field(default_factory=lambda: ["jsonl"])
    """Accelerate trackers: ``jsonl`` (built in, offline) plus any Accelerate name (tensorboard, wandb...)."""
    log_every: int = Field(default=10, gt=0)
    record_batch_ids: bool = False
    """Write the example ids each process trained on to ``logs/`` (for audits and tests)."""


#: The ``train`` section: the loop's own settings plus the methods' subsections (``train.lora``).
TrainConfig = create_model("TrainConfig", __base__=_TrainSettings, __module__=__name__,
                           **_fields(method_sections("train"), True), **_fields(method_sections("train"), False))
TrainConfig.__doc__ = _TrainSettings.__doc__


class MeasureConfig(Section):
    """What to measure for ``metrics.json`` after training."""

    latency: bool = True
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 32])
    repeats: int = Field(default=10, gt=0)
    num_threads: int | None = Field(default=None, gt=0)


class HubConfig(Section):
    """Publishing the result to the Hugging Face Hub with a measured model card (``distilkit.report.hub``)."""

    push: bool = False
    repo: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
    """``user/name`` on the Hub; the token comes from ``HF_TOKEN`` or ``hf auth login``."""
    private: bool = False

    @model_validator(mode="after")
    def _repo(self):
        if self.push and not self.repo:
            raise ValueError("push: true needs repo: user/name")
        return self


class _RecipeCore(Section):
    """A complete distillation recipe (see ``recipes/``)."""

    description: str | None = None
    task: str
    """A built-in task name (``sst2``) or a path to a task YAML file."""
    output_dir: str
    data: DataConfig = Field(default_factory=DataConfig)
    teacher: TeacherSpec
    """One teacher section, or a list of them (an ensemble, combined as ``loss.ensemble`` says)."""
    student: StudentConfig

    @field_validator("teacher")
    @classmethod
    def _teacher_list(cls, teacher):
        # A one-element list is today's single teacher: stored as one section so every reader of
        # ``recipe.teacher`` (and every cache key) sees exactly what the single form gives.
        if not isinstance(teacher, list):
            return teacher
        if not teacher:
            raise ValueError("the teacher list is empty; name at least one teacher")
        if len(teacher) > 1:
            return teacher
        if "temperature" in teacher[0].model_fields_set:
            raise ValueError("teacher[0].temperature: a single teacher distils at loss.temperature; set that instead")
        return TeacherConfig.model_validate(teacher[0].model_dump(exclude_unset=True, exclude={"weight", "temperature"}))

    @property
    def teachers(self) -> list[TeacherConfig]:
        """Every teacher section (one for a single teacher); each keeps its ``weight``/``temperature`` when
        the recipe lists several."""
        return list(self.teacher) if isinstance(self.teacher, list) else [self.teacher]

    @property
    def teacher_weights(self) -> list[float]:
        """The teachers' weights, normalised to sum to 1 (equal unless written)."""
        raw = [getattr(t, "weight", None) or 1.0 for t in self.teachers]
        return [w / sum(raw) for w in raw]

    @property
    def teacher_temperatures(self) -> list[float]:
        """Each teacher's softening temperature (``loss.temperature`` unless written)."""
        return [getattr(t, "temperature", None) or self.loss.temperature for t in self.teachers]

    @property
    def is_ensemble(self) -> bool:
        """Whether the recipe lists several teachers (a one-element list is validated into one teacher section);
        the recipe-level counterpart of :func:`distilkit.methods.distillation.ensemble.is_ensemble`."""
        return isinstance(self.teacher, list)

    @property
    def primary_teacher(self) -> TeacherConfig:
        """The first teacher: its tokenizer and word vectors are the student's defaults."""
        return self.teachers[0]


_TOP = method_sections()
_NESTED = {f"train.{name}" for name in method_sections("train")}
if stray := [key for m in METHODS.values() for key in m.sections if "." in key and key not in _NESTED]:
    raise TypeError(f"method sections {stray}: a method's section is top-level or inside train")

#: A recipe: the core sections, then the methods' (those always present, such as ``loss``, first; the optional
#: ones, ``None`` when left out, after ``measure``), then ``hub``.
Recipe = create_model(
    "Recipe", __base__=_RecipeCore, __module__=__name__,
    **_fields(_TOP, True),
    train=(TrainConfig, Field(default_factory=TrainConfig)),
    cache=(CacheConfig, Field(default_factory=CacheConfig)),
    measure=(MeasureConfig, Field(default_factory=MeasureConfig)),
    **_fields(_TOP, False),
    hub=(HubConfig | None, None),
)
Recipe.__doc__ = _RecipeCore.__doc__
