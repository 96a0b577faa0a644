"""The one interface between the recipe program's training loop and a compression method.

:func:`distilkit.run.distill.run` reads top to bottom as the experiment does; a method does not add an
``if`` branch to it. Instead each method folder (``distilkit/methods/<name>/hooks.py``) offers
``from_recipe(recipe) -> MethodHooks | None`` (``None``: the recipe does not use the method), named by its
registry entry (:attr:`distilkit.core.method_spec.Method.hooks`, :data:`distilkit.run.methods.METHODS`), and the loop
calls the hooks of the active methods at these fixed points:

=====================  ====================================================================================
``attach_teacher``     once the teacher is loaded: a method that reads the teacher's inside keeps it
``prepare_student``    once the student is built, before the optimizer: fake-quantize, record attention...
``parameter_groups``   the optimizer's groups (e.g. a larger learning rate for new parameters)
``forward_kwargs``     extra keyword arguments of every training forward (``output_hidden_states=True``...)
``distillation_weight`` per step: the weight of the logit distillation loss (0 in a first, intermediate stage)
``extra_losses``       after every student forward: named terms, each added to the distillation loss
``after_step``         after every optimizer step: keep pruned weights at zero, follow a sparsity schedule
``final_form``         at each evaluation: may this student compete for the best model yet (pruning done)?
``after_training``     on the main process, once the best student is saved: convert it (quantize...)
=====================  ====================================================================================

Every hook has a do-nothing default, so a method overrides only what it needs. Hooks receive the validated
recipe as a plain object (methods sit below the recipe layer and never import it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class MethodHooks:
    """What a compression method adds to a distillation run; subclass and override the hooks you need."""

    name: str = "method"

    def attach_teacher(self, teacher) -> None:
        """Keep the loaded teacher (an ``HFTeacher``, a plug-in or an ensemble) for later hooks; called once,
        before the student is built."""

    def prepare_student(self, student: nn.Module) -> None:
        """Change the freshly built student in place before its optimizer is made."""

    def parameter_groups(self, student: nn.Module) -> list[dict] | None:
        """Optimizer parameter groups (AdamW ``param_groups`` syntax), or ``None`` for the default single group.
        At most one active method may return groups."""
        return None

    def forward_kwargs(self) -> dict:
        """Keyword arguments added to every training forward of the student (e.g. ``output_hidden_states``);
        the outputs then reach :meth:`extra_losses`."""
        return {}

    def distillation_weight(self, step: int, total_steps: int) -> float:
        """The weight of the logit distillation loss at optimizer step ``step`` (0-based) of ``total_steps``;
        the weights of all active methods multiply."""
        return 1.0

    def extra_losses(self, student: nn.Module, batch: dict | None = None, outputs=None) -> dict[str, torch.Tensor]:
        """Weighted loss terms to add to the distillation loss of the step whose forward just ran.

        ``batch`` is the collated batch (``texts``, ``text_pairs``, the student's input tensors, ``labels``,
        ``teacher_logits`` when cached); ``outputs`` the student's forward output. Keys are logged as
        ``train/<key>``."""
        return {}

    def after_step(self, student: nn.Module, step: int, total_steps: int) -> None:
        """Change the student's weights in place after optimizer step ``step`` (1-based) of ``total_steps``."""

    def final_form(self, step: int, total_steps: int) -> bool:
        """Whether the student has reached its final form at ``step`` (a sparsity schedule is complete);
        evaluations before that are logged but do not compete for the best model."""
        return True

    def after_training(self, output_dir: Path) -> None:
        """Post-process the best student saved under ``output_dir/model`` (main process only)."""
