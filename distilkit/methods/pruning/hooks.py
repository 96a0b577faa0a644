"""Pruning in the recipe program: block pruning masks during training.

One-shot pruning of heads, neurons and layers needs no hook: ``student.kind: pruned`` builds the pruned copy
(:func:`distilkit.methods.pruning.student.build_pruned_student`) and the ordinary loop recovers it. Iterative
rounds need none either: they are a pipeline of such runs (:mod:`distilkit.methods.pruning.rounds`).
``student.blocks`` adds :class:`BlockPruningHooks`: masks on a cubic schedule after every optimizer step, and the
structural removal of emptied heads and neurons once the best student is saved.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.core.method_hooks import MethodHooks
from distilkit.core.sparsity_schedule import cubic_sparsity, update_step
from distilkit.methods.pruning.blocks import (
    BlockMasks,
    MovementScores,
    block_targets,
    emptied_units,
    magnitude_scores,
    select_pruned,
)
from distilkit.methods.pruning.compact import compact_output
from distilkit.methods.pruning.config import BlockPruningConfig, block_problems


class BlockPruningHooks(MethodHooks):
    """``student.blocks``: block pruning during the recovery distillation (:mod:`distilkit.methods.pruning.blocks`).

    ``one_shot`` (``train.epochs: 0``): the student is pruned to the final sparsity by magnitude as it is built.
    Otherwise masks are recomputed every ``every`` steps on the cubic schedule between ``start`` and ``end``
    and re-applied after every step; evaluations before ``end`` do not compete for the best model.
    """

    name = "pruning"

    def __init__(self, cfg: BlockPruningConfig, one_shot: bool = False):
        self.cfg, self.one_shot = cfg, one_shot
        self.targets = []
        self.movement: MovementScores | None = None
        self.masks: BlockMasks | None = None
        self.sparsity = 0.0

    def prepare_student(self, student: nn.Module) -> None:
        cfg = self.cfg
        self.targets = block_targets(student, cfg.granularity, cfg.size, cfg.parts)  # a bad size fails here
        if cfg.score == "movement" and not self.one_shot:
            self.movement = MovementScores(self.targets)
        if self.one_shot:
            self._prune_to(cfg.sparsity, emptied_units(self.targets))

    def after_step(self, student: nn.Module, step: int, total_steps: int) -> None:
        if self.masks is None:  # first step, or a resumed run: the units pruned so far are the all-zero ones
            already = emptied_units(self.targets)
            self.masks = BlockMasks(self.targets, already)
            self.sparsity = self.masks.fraction
        if not self.one_shot:
            cfg = self.cfg
            target = cubic_sparsity(update_step(step, total_steps, cfg.every, cfg.end), total_steps,
                                    cfg.sparsity, start=cfg.start, end=cfg.end)
            if target > self.sparsity:
                self._prune_to(target, self.masks.pruned)
                return
        self.masks.apply()

    def final_form(self, step: int, total_steps: int) -> bool:
        return self.one_shot or step >= self.cfg.end * total_steps

    def after_training(self, output_dir: Path) -> None:
        if self.movement is not None:
            self.movement.remove()
        compact_output(Path(output_dir), {"granularity": self.cfg.granularity, "size": self.cfg.size,
                                          "score": self.cfg.score, "sparsity": self.cfg.sparsity,
                                          "scope": self.cfg.scope, "parts": list(self.cfg.parts)})

    def _prune_to(self, sparsity: float, already: dict[str, torch.Tensor]) -> None:
        scores = self.movement.scores() if self.movement is not None else magnitude_scores(self.targets)
        self.masks = BlockMasks(self.targets, select_pruned(scores, already, sparsity, self.cfg.scope))
        self.masks.apply()
        self.sparsity = sparsity


def from_recipe(recipe) -> MethodHooks | None:
    """Block pruning (``student.blocks``) of a pruned student (iterative rounds are stages, not hooks).

    Raises:
        RecipeError: ``student.blocks`` that cannot work with this recipe (movement scores without training).
    """
    spec = recipe.student
    if spec.kind != "pruned":
        return None
    if spec.blocks is not None:
        problems = block_problems(spec.blocks, recipe.train.epochs)
        if problems:
            raise RecipeError("\n".join(problems))
        return BlockPruningHooks(spec.blocks, one_shot=recipe.train.epochs == 0)
    return None


def metrics(recipe, student, output_dir, rescore) -> dict:
    """``metrics.json``'s ``student.block_pruning``: the heads and neurons block pruning removed."""
    removed = getattr(student.config, "distilkit_block_pruning", None)
    return {"block_pruning": removed} if removed else {}
