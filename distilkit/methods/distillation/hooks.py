"""Deep mutual learning in the recipe program (``loss.mutual``; :mod:`distilkit.methods.distillation.mutual`).

The main student trains in the loop of :func:`distilkit.run.distill.run` as always; these hooks keep its peers
beside it: ``prepare_student`` makes them, ``extra_losses`` runs them on the batch, accumulates their own losses'
gradients and returns the main student's mutual term (added to its loss, logged as ``train/mutual``),
``after_step`` steps them with the main optimizer, ``after_training`` scores them on the dev split
(``output_dir/mutual.json``) and saves them (``save_peers``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer

from distilkit.core.atomic import write_json_atomic
from distilkit.core.method_hooks import MethodHooks
from distilkit.core.saved_files import read_json
from distilkit.data.batches import model_inputs
from distilkit.data.tasks import load_split, load_task
from distilkit.methods.distillation.config import LossConfig, MutualConfig
from distilkit.methods.distillation.ensemble import teacher_loss
from distilkit.methods.distillation.mutual import Peers, make_peer, mutual_loss
from distilkit.methods.distillation.mutual_checks import peer_scope
from distilkit.models.inference import encoder_for, evaluate_model


class MutualLearningHooks(MethodHooks):
    """``loss.mutual``: ``students - 1`` peers trained beside the main student (Zhang et al. 2018)."""

    name = "mutual"

    def __init__(self, cfg: MutualConfig, loss: LossConfig, *, problem_type: str, scope: str, seed: int,
                 lr: float, weight_decay: float = 0.0, warmup_ratio: float = 0.0, max_grad_norm: float | None = None,
                 grad_accum: int = 1,
                 evaluate: Callable[[nn.Module, object], dict] | None = None):
        self.cfg, self.loss, self.problem_type, self.scope = cfg, loss, problem_type, scope
        self.seeds = [seed + k for k in range(1, cfg.students)]
        self.optim = dict(lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio, max_grad_norm=max_grad_norm,
                          grad_accum=grad_accum)
        self.evaluate = evaluate
        self.teacher = None
        self.peers: Peers | None = None
        self.total_steps: int | None = None

    def attach_teacher(self, teacher) -> None:
        self.teacher = teacher  # without the logit cache the peers need the teacher's logits of each batch

    def prepare_student(self, student: nn.Module) -> None:
        # Before any other method changes the student (mutual is first in METHODS): the peers are plain copies
        # of the student as built, not fake-quantized, masked or wrapped in adapters.
        peers = [make_peer(student, self.scope, seed) for seed in self.seeds]
        self.peers = Peers(peers, self.seeds, **self.optim)

    def distillation_weight(self, step: int, total_steps: int) -> float:
        self.total_steps = total_steps  # the peers' schedules take the main one's length
        return 1.0

    def teacher_loss(self, logits: torch.Tensor, teacher_logits: torch.Tensor, labels) -> torch.Tensor:
        """A peer's loss against the teacher: exactly the main student's objective (``loss`` section; an
        ensemble's per-teacher sum when its mode is ``each``, decided by the one ensemble test)."""
        loss, _ = teacher_loss(self.teacher, logits, teacher_logits, labels, kind=self.loss.kind,
                               temperature=self.loss.temperature, alpha=self.loss.alpha,
                               problem_type=self.problem_type)
        return loss

    def extra_losses(self, student: nn.Module, batch: dict | None = None, outputs=None) -> dict[str, torch.Tensor]:
        """Train the peers on this batch (gradients only; :meth:`after_step` steps them) and return the main
        student's mutual term ``weight * 1/(K-1) sum_l D(p_l || p_main)`` as ``mutual``."""
        if batch is None or outputs is None or self.peers is None:
            return {}
        main = outputs.logits.float()
        if not self.peers.started:
            self.peers.start(main.device, self.total_steps)
        teacher_logits = batch.get("teacher_logits")
        if teacher_logits is None:  # cache disabled: the teacher on this very batch, as the main loop does
            with torch.no_grad():
                teacher_logits = self.teacher(batch["texts"], batch["text_pairs"])
        teacher_logits = teacher_logits.to(main.device)
        peer_logits = self.peers.forward(model_inputs(batch))
        cohort = [main, *peer_logits]
        w, t = self.cfg.weight, self.cfg.temperature
        losses = []
        for k, logits in enumerate(peer_logits, start=1):
            others = [z for j, z in enumerate(cohort) if j != k]
            own = self.teacher_loss(logits, teacher_logits, batch.get("labels"))
            losses.append(own + w * mutual_loss(logits, others, temperature=t, problem_type=self.problem_type))
        self.peers.backward(losses)
        return {"mutual": w * mutual_loss(main, peer_logits, temperature=t, problem_type=self.problem_type)}

    def after_step(self, student: nn.Module, step: int, total_steps: int) -> None:
        if self.peers is not None and self.peers.started:  # not yet started: a resume's re-derivation call
            self.peers.step()

    def after_training(self, output_dir: Path) -> None:
        """Score each peer (as trained at the end) on the first eval split, save them if asked, and write
        ``output_dir/mutual.json``."""
        if self.peers is None:
            return
        output_dir = Path(output_dir)
        tokenizer = AutoTokenizer.from_pretrained(output_dir / "model")
        for peer in self.peers.models:
            peer.cpu().eval()
        paths = self.peers.save(output_dir, tokenizer) if self.cfg.save_peers else [None] * len(self.peers.models)
        record = {"students": self.cfg.students, "weight": self.cfg.weight, "temperature": self.cfg.temperature,
                  "peer_init": self.scope,
                  "note": "peers as trained at the end of training; the main student (model/) is its best epoch",
                  "peers": []}
        for k, (peer, seed, path) in enumerate(zip(self.peers.models, self.seeds, paths), start=1):
            entry = {"peer": k, "seed": seed, "path": str(path.relative_to(output_dir)) if path else None}
            if self.evaluate is not None:
                entry.update(self.evaluate(peer, tokenizer))
            record["peers"].append(entry)
        write_json_atomic(output_dir / "mutual.json", record)


def peer_evaluation(recipe, task) -> Callable[[nn.Module, object], dict]:
    """``evaluate(peer, tokenizer) -> {"split": name, "metrics": {...}}`` on the recipe's first eval split (the
    main student's model-selection split), in this process."""
    split = (recipe.data.eval_splits or task.eval_splits)[0]

    def evaluate(peer: nn.Module, tokenizer) -> dict:
        ds = load_split(task, split, data_dir=recipe.data.dir, max_examples=recipe.data.max_eval_examples,
                        seed=recipe.train.seed)
        metrics = evaluate_model(peer, encoder_for(peer), tokenizer, recipe.student.max_length, ds, task,
                                 batch_size=2 * recipe.train.batch_size)
        return {"split": split, "metrics": metrics}

    return evaluate


def from_recipe(recipe) -> MutualLearningHooks | None:
    """Active when the recipe has a ``loss.mutual`` section."""
    cfg = recipe.loss.mutual
    if cfg is None:
        return None
    task = load_task(recipe.task)
    tcfg = recipe.train
    return MutualLearningHooks(
        cfg, recipe.loss, problem_type=task.problem_type,
        scope=peer_scope(recipe.student, cfg.init), seed=tcfg.seed if cfg.seed is None else cfg.seed,
        lr=tcfg.lr, weight_decay=tcfg.weight_decay, warmup_ratio=tcfg.warmup_ratio,
        max_grad_norm=tcfg.max_grad_norm, grad_accum=tcfg.grad_accum, evaluate=peer_evaluation(recipe, task))


def metrics(recipe, student, output_dir, rescore) -> dict:
    """``metrics.json``'s ``student.mutual``: the peers' seeds, paths and dev scores (``mutual.json``, written by
    :meth:`MutualLearningHooks.after_training`); ``{}`` without ``loss.mutual``."""
    path = Path(output_dir) / "mutual.json"
    return {"mutual": read_json(path)} if recipe.loss.mutual is not None and path.is_file() else {}
