"""How a recipe's teacher is loaded (:func:`load_teacher`): one teacher section, or a list of them combined into
a :class:`~distilkit.methods.distillation.ensemble.TeacherEnsemble`.

Whether a loaded teacher is an ensemble is then asked in one way only,
:func:`distilkit.methods.distillation.ensemble.is_ensemble`.
"""

from __future__ import annotations

from accelerate import Accelerator

from distilkit.core.plugins import is_plugin_path
from distilkit.data.tasks import TaskSpec, load_split
from distilkit.methods.distillation.ensemble import TeacherEnsemble
from distilkit.models.config import TeacherConfig
from distilkit.models.finetune import finetune_teacher
from distilkit.models.teachers import load_hf_teacher, load_plugin_teacher
from distilkit.run.schema import Recipe


def load_teacher(recipe: Recipe, task: TaskSpec, train_ds, eval_ds, accelerator: Accelerator):
    """The recipe's teacher, fine-tuned first when ``teacher.finetune`` is set, with ``teacher.adapter`` merged;
    for a list of teachers a :class:`~distilkit.methods.distillation.ensemble.TeacherEnsemble` combining them as
    ``loss.ensemble`` says (a validated recipe's list always has several: one is stored as a single section)."""
    members = [load_one_teacher(recipe, cfg, task, train_ds, eval_ds, accelerator) for cfg in recipe.teachers]
    if len(members) == 1:
        return members[0]
    return TeacherEnsemble(members, weights=recipe.teacher_weights, temperatures=recipe.teacher_temperatures,
                           mode=recipe.loss.ensemble, temperature=recipe.loss.temperature,
                           problem_type=task.problem_type, names=[cfg.model for cfg in recipe.teachers])


def load_one_teacher(recipe: Recipe, cfg: TeacherConfig, task: TaskSpec, train_ds, eval_ds,
                     accelerator: Accelerator):
    """One teacher section (``recipe.teacher`` or one member of its list), fine-tuned first when asked."""
    if is_plugin_path(cfg.model):
        return load_plugin_teacher(cfg.model, cfg.kwargs, num_labels=task.num_labels, tokenizer=cfg.tokenizer,
                                   max_length=cfg.max_length, device=accelerator.device,
                                   require_fingerprint=recipe.cache.enabled)
    model = cfg.model
    if cfg.finetune is not None:
        # The teacher learns from the labelled train split, sized by finetune.max_examples, independently of
        # the transfer set: students distilled on other transfer-set sizes then reuse the same teacher.
        limit = cfg.finetune.max_examples or recipe.data.max_train_examples
        if limit != recipe.data.max_train_examples:
            train_ds = load_split(task, recipe.data.train_split or task.train_split, data_dir=recipe.data.dir,
                                  max_examples=limit, seed=cfg.finetune.seed)
        model = str(finetune_teacher(cfg, task, train_ds, eval_ds, cache_dir=recipe.cache.dir,
                                     accelerator=accelerator))
    return load_hf_teacher(model, num_labels=task.num_labels, problem_type=task.problem_type,
                           tokenizer=None if cfg.finetune else cfg.tokenizer,
                           revision=None if cfg.finetune else cfg.revision,
                           max_length=cfg.max_length, device=accelerator.device, dtype=cfg.dtype,
                           adapter=cfg.adapter)
