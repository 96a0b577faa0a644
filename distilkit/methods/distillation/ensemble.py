"""Distilling from several teachers at once (``teacher:`` written as a list, ``loss.ensemble``).

Two ways to combine them, as in TextBrewer's multi-teacher distillation (Yang et al. 2020, "TextBrewer: An
Open-Source Knowledge Distillation Toolkit for Natural Language Processing", its ``MultiTeacherDistiller``)
and the ensemble distillation of Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network": soft
targets at a temperature, §2; an ensemble of ten speech models distilled into one, §4):

* ``average`` (:func:`combine_average`): one target per example. For classification the teachers'
  temperature-softened class *probabilities* are averaged with the weights,
  ``p = sum_k w_k softmax(z_k / T_k)`` -- Hinton et al.'s ensemble prediction (the arithmetic mean of the
  members' distributions). We average probabilities rather than logits (TextBrewer's choice) because a mean of
  logits is a normalised *geometric* mean of the distributions, which lets one over-confident teacher with
  large logits outvote the others, while the arithmetic mean is the ensemble's actual predictive distribution
  and stays calibrated where the teachers disagree. The result is turned back into logits
  ``z = T log p + c`` (``T`` = ``loss.temperature``, so ``softmax(z / T) = p`` and the soft-target KL loss of
  Hinton et al. §2 sees exactly ``p``), with ``c`` per example setting the mean of ``z`` to the weighted mean of
  the teachers' logits, so the logit MSE of Tang et al. (eq. 3) compares on the teachers' scale; one teacher at
  ``T_k = T`` gives back its own logits exactly. For regression it is the weighted mean of the predictions.
* ``each`` (:func:`each_teacher_loss`): the student matches every teacher, ``sum_k w_k L(z_S, z_k; T_k)``
  (the sum of per-teacher distillation losses, each at its own temperature).

Each teacher's logits are computed and cached separately under its own fingerprint
(:func:`distilkit.data.logit_cache.label_with_teacher`, whose key is unchanged), and the combination is computed
from those cached logits (:func:`label_with_ensemble`), so adding a teacher to an ensemble reuses the others'
entries, and a single-teacher recipe's cache stays valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from distilkit.core.errors import TeacherError
from distilkit.data.logit_cache import CachedLogits, label_with_teacher
from distilkit.methods.distillation.losses import REGRESSION, distillation_loss, with_hard_labels
from distilkit.models.label_names import label_mismatch, teacher_label_names


def combine_average(logits: torch.Tensor, weights, temperatures, temperature: float = 1.0,
                    problem_type: str = "single_label_classification") -> torch.Tensor:
    """The ``average`` target from the teachers' logits (see the module docstring for the formula and why).

    Args:
        logits: ``[batch, teachers, num_labels]``.
        weights: One weight per teacher (normalised here to sum to 1).
        temperatures: One softening temperature ``T_k`` per teacher.
        temperature: The loss temperature ``T`` the target is expressed at.
        problem_type: ``regression`` averages the predictions themselves.

    Returns:
        ``[batch, num_labels]`` target logits.
    """
    logits = logits.float()
    w = torch.as_tensor(weights, dtype=torch.float32)
    w = (w / w.sum()).view(1, -1, 1)
    if problem_type == REGRESSION:
        return (w * logits).sum(dim=1)
    t = torch.as_tensor(temperatures, dtype=torch.float32).view(1, -1, 1)
    probs = (w * torch.softmax(logits / t, dim=-1)).sum(dim=1)
    target = temperature * torch.log(probs.clamp_min(torch.finfo(torch.float32).tiny))
    # softmax is shift-invariant: put the target on the teachers' (weighted) logit level for the MSE loss.
    level = (w * logits.mean(dim=-1, keepdim=True)).sum(dim=1)
    return target - target.mean(dim=-1, keepdim=True) + level


def each_teacher_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                      *, weights, temperatures, kind: str = "mse", alpha: float = 0.0,
                      problem_type: str = "single_label_classification") -> tuple[torch.Tensor, dict[str, float]]:
    """``(1 - alpha) * sum_k w_k soft(z_S, z_k; T_k) + alpha * hard`` (TextBrewer's per-teacher sum).

    Args:
        student_logits: ``[batch, num_labels]``.
        teacher_logits: ``[batch, teachers, num_labels]``.
        labels: Gold labels (needed only when ``alpha > 0``).
        weights: One weight per teacher (normalised here to sum to 1).
        temperatures: One temperature per teacher (used by ``kind="kl"``).
        kind, alpha, problem_type: As :func:`distilkit.methods.distillation.losses.distillation_loss`.

    Returns:
        The loss and its parts: ``soft_<kind>`` (the weighted sum), ``soft_<kind>_t<k>`` per teacher, ``hard``.
    """
    w = [float(x) / float(sum(weights)) for x in weights]
    soft, parts = None, {}
    for k, (weight, temp) in enumerate(zip(w, temperatures)):
        term, _ = distillation_loss(student_logits, teacher_logits[:, k], kind=kind, temperature=temp, alpha=0.0,
                                    problem_type=problem_type)
        parts[f"soft_{kind}_t{k}"] = term.item()
        soft = weight * term if soft is None else soft + weight * term
    parts[f"soft_{kind}"] = soft.item()
    return with_hard_labels(soft, parts, student_logits, labels, alpha, problem_type)


class TeacherEnsemble:
    """Several teachers behind the :class:`~distilkit.models.teachers.Teacher` call: texts in, training
    targets out (``average``: ``[batch, num_labels]``; ``each``: ``[batch, teachers, num_labels]``).

    Used as is when the logit cache is off; with the cache, :func:`label_with_ensemble` labels with each
    member separately instead. It has no ``fingerprint``: the ensemble itself is never a cache entry.

    Raises:
        TeacherError: the members predict different numbers of labels, or name their labels differently
            (``config.id2label``), so their logit columns would mean different classes.
    """

    def __init__(self, members: list, *, weights, temperatures, mode: str, temperature: float,
                 problem_type: str, names: list[str] | None = None):
        self.members, self.mode, self.temperature, self.problem_type = list(members), mode, temperature, problem_type
        self.weights, self.temperatures = [float(w) for w in weights], [float(t) for t in temperatures]
        labels = [getattr(m, "num_labels", None) for m in self.members]
        names = names or [getattr(m, "name", type(m).__name__) for m in self.members]
        for k in range(1, len(self.members)):
            if labels[k] != labels[0]:
                raise TeacherError(f"teacher[{k}].model: '{names[k]}' predicts {labels[k]} labels but teacher[0] "
                                   f"'{names[0]}' predicts {labels[0]}; ensemble teachers of one task")
            problem = label_mismatch(_config_labels(self.members[0]), _config_labels(self.members[k]))
            if problem:
                raise TeacherError(f"teacher[{k}].model: '{names[k]}' {problem} teacher[0] '{names[0]}'")
        self.num_labels = labels[0]
        self.name = "ensemble(" + ", ".join(names) + ")"

    @property
    def tokenizer(self):
        """The first teacher's tokenizer (the student's default, and the augmentation's mask token)."""
        return getattr(self.members[0], "tokenizer", None)

    def combine(self, stacked: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """Targets from ``[batch, teachers, num_labels]`` member logits for ``mode`` (default: the ensemble's)."""
        if (mode or self.mode) == "each":
            return stacked
        return combine_average(stacked, self.weights, self.temperatures, self.temperature, self.problem_type)

    def __call__(self, texts: list[str], text_pairs: list[str] | None = None) -> torch.Tensor:
        outs = []
        for member in self.members:
            logits = member(texts, text_pairs).float()
            outs.append(logits[:, None] if logits.ndim == 1 else logits)
        return self.combine(torch.stack(outs, dim=1))


def _config_labels(teacher) -> list[str] | None:
    model = getattr(teacher, "model", None)
    config = getattr(model, "config", None)
    return teacher_label_names(config.to_dict()) if config is not None else None


@dataclass
class EnsembleLogits:
    """Targets of an ensemble, built from each member's cached logits.

    Attributes:
        ensemble: The :class:`TeacherEnsemble`.
        members: Each teacher's :class:`~distilkit.data.logit_cache.CachedLogits` (its own cache entry).
    """

    ensemble: TeacherEnsemble
    members: list[CachedLogits]

    @property
    def hit(self) -> bool:
        """Whether every member came from the cache."""
        return all(m.hit for m in self.members)

    def stacked(self, ids: list[str]) -> np.ndarray:
        """``[len(ids), teachers, num_labels]`` member logits in the order of ``ids``."""
        return np.stack([m.aligned(ids) for m in self.members], axis=1)

    def aligned(self, ids: list[str], mode: str | None = None) -> np.ndarray:
        """Training targets in the order of ``ids`` (``mode`` as :meth:`TeacherEnsemble.combine`)."""
        return self.ensemble.combine(torch.from_numpy(self.stacked(ids)), mode).numpy()

    def predictions(self, ids: list[str]) -> np.ndarray:
        """The ensemble's own prediction (the ``average`` combination), e.g. to score it on a dev set."""
        return self.aligned(ids, "average")


def is_ensemble(teacher) -> bool:
    """Whether a loaded teacher is several (a :class:`TeacherEnsemble`): the one test the recipe program,
    the student builders and the labelling use, so what counts as an ensemble is decided here alone."""
    return isinstance(teacher, TeacherEnsemble)


def teacher_members(teacher) -> list:
    """The teachers behind ``teacher``: an ensemble's members, else the teacher alone (its first member gives
    the student its default tokenizer, word vectors and network)."""
    return list(teacher.members) if is_ensemble(teacher) else [teacher]


def teacher_loss(teacher, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                 *, kind: str, temperature: float, alpha: float,
                 problem_type: str) -> tuple[torch.Tensor, dict[str, float]]:
    """The distillation loss of one step against ``teacher``'s targets (its cached or freshly computed logits).

    An ensemble in ``each`` mode gives ``[batch, teachers, num_labels]`` targets and is matched teacher by
    teacher (:func:`each_teacher_loss`, at the members' weights and temperatures); every other teacher gives
    ``[batch, num_labels]`` targets for :func:`~distilkit.methods.distillation.losses.distillation_loss` at
    ``temperature``. ``kind``, ``alpha`` and ``problem_type`` are the recipe's ``loss`` section and task.
    """
    if is_ensemble(teacher) and teacher.mode == "each":
        return each_teacher_loss(student_logits, teacher_logits, labels, weights=teacher.weights,
                                 temperatures=teacher.temperatures, kind=kind, alpha=alpha,
                                 problem_type=problem_type)
    return distillation_loss(student_logits, teacher_logits, labels, kind=kind, temperature=temperature,
                             alpha=alpha, problem_type=problem_type)


def label_with_ensemble(teacher, ds, *, cache_dir, batch_size: int | list[int] = 64, accelerator=None,
                        desc: str = "teacher logits"):
    """:func:`~distilkit.data.logit_cache.label_with_teacher` for one teacher or a :class:`TeacherEnsemble`
    (each member labels ``ds`` under its own cache key; ``batch_size`` may be one per member)."""
    if not is_ensemble(teacher):
        size = batch_size[0] if isinstance(batch_size, list) else batch_size
        return label_with_teacher(teacher, ds, cache_dir=cache_dir, batch_size=size,
                                  accelerator=accelerator, desc=desc)
    sizes = batch_size if isinstance(batch_size, list) else [batch_size] * len(teacher.members)
    members = [label_with_teacher(m, ds, cache_dir=cache_dir, batch_size=size, accelerator=accelerator,
                                  desc=f"{desc} [teacher {k}]")
               for k, (m, size) in enumerate(zip(teacher.members, sizes))]
    return EnsembleLogits(teacher, members)
