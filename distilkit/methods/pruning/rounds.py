"""Iterative pruning (``student: {kind: pruned, rounds: R > 1}``) as R stages of a pipeline.

Michel et al. 2019 (sec. 5) and the prune-retrain loop of Han et al. 2015 reach the pruning targets in steps,
each followed by recovery. Round ``r`` (1-based) is an ordinary one-run recipe: it prunes the previous round's
model (``student.start_from``) a fraction ``r / R`` of the way to the targets (``student.round_fraction``;
counted from the unpruned teacher, so earlier rounds' removals count) and recovers it by distillation from the
*unpruned* teacher, in ``output_dir/rounds/<r>``. The pipeline runner (:func:`distilkit.run.pipeline.run_rounds`)
runs, skips and resumes rounds as it does a pipeline's stages; the final round's model becomes
``output_dir/model``.

Plain recipe mappings in, plain mappings out: this module knows the pruning keys, not the recipe schema.
"""

from __future__ import annotations

import copy
from pathlib import Path


def pruning_rounds(tree: dict) -> int:
    """How many runs a recipe mapping's pruning takes: ``student.rounds`` for a pruned student, else 1."""
    student = tree.get("student") or {}
    return int(student.get("rounds") or 1) if student.get("kind") == "pruned" else 1


def round_dir(output_dir: str | Path, r: int) -> Path:
    """Where round ``r`` (1-based) runs: ``output_dir/rounds/<r>``."""
    return Path(output_dir) / "rounds" / str(r)


def round_trees(tree: dict) -> list[dict]:
    """The one-run recipe mapping of every round of an iterative-pruning recipe mapping (``[]`` for one run).

    Each round keeps the recipe's teacher (the unpruned model teaches every round), starts from the previous
    round's saved model and goes ``r / rounds`` of the way. Only the final round is quantized and has its
    vocabulary trimmed: earlier rounds re-score their start model with the teacher's tokenizer.
    ``train.resume_from`` is left to the runner, which resumes each round from its own checkpoints.
    """
    rounds = pruning_rounds(tree)
    if rounds <= 1:
        return []
    trees, previous = [], None
    for r in range(1, rounds + 1):
        sub = copy.deepcopy(tree)
        sub["output_dir"] = str(round_dir(tree["output_dir"], r))
        sub["student"].update(rounds=1, start_from=previous, round_fraction=r / rounds)
        sub.get("train", {}).pop("resume_from", None)
        if r < rounds:
            sub.pop("quantize", None)
            sub["student"].pop("vocab", None)
        trees.append(sub)
        previous = str(Path(sub["output_dir"]) / "model")
    return trees


def rounds_history(round_metrics: list[dict]) -> list[dict]:
    """``metrics["rounds"]``: per round its number, the student's parameters and its eval metrics."""
    return [{"round": r, "params": m["student"]["params"], **m["student"]["metrics"]}
            for r, m in enumerate(round_metrics, start=1)]
