"""Gradual pruning schedules shared by the pruning methods (methods never import each other, so it lives here).

Zhu & Gupta 2017, "To prune, or not to prune: exploring the efficacy of pruning for model compression"
(arXiv:1710.01878), eq. 1: the sparsity rises as ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n dt))^3`` from
``t_0`` to ``t_0 + n dt``: fast while many redundant weights remain, slowly near the target. Sanh et al. 2020
("Movement Pruning", sec. 5) and Lagunas et al. 2021 (block pruning) use the same cubic schedule.
"""

from __future__ import annotations


def cubic_sparsity(step: int, total: int, final: float, initial: float = 0.0, start: float = 0.0,
                   end: float = 0.75) -> float:
    """Zhu & Gupta 2017, eq. 1: the sparsity at ``step`` of ``total`` when pruning runs from ``start * total``
    to ``end * total`` (fractions of training); 0 before ``start``, ``final`` from ``end`` on."""
    t0, t1 = start * total, max(end * total, start * total + 1)
    if step < t0:
        return 0.0
    progress = min(1.0, (step - t0) / (t1 - t0))
    return final + (initial - final) * (1.0 - progress) ** 3


def update_step(step: int, total: int, every: int, end: float) -> int:
    """The step whose schedule value holds at ``step`` when masks change only every ``every`` steps (and at
    every step from ``end * total`` on, so the target is reached exactly): a resumed run recomputes the same
    masks as the uninterrupted one."""
    return step if step >= end * total else step - step % every
