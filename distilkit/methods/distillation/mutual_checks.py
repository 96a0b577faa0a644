"""Recipe checks of deep mutual learning (``loss.mutual``), called by :mod:`distilkit.run.recipe_checks`.

``loss.mutual.students < 2`` is the schema's own error (:class:`~distilkit.methods.distillation.config.MutualConfig`);
these are the combinations with other keys, each message naming both keys and their values.
"""

from __future__ import annotations

import json


def peer_scope(student, init: str = "auto") -> str:
    """What a peer redraws from its own seed (:func:`~distilkit.methods.distillation.mutual.make_peer`), from the
    recipe's ``student`` section: what the student did not take from the teacher.

    ``bilstm``: everything but the word vectors when they come from the teacher (``init_embeddings_from_teacher``),
    else everything. ``transformer``: the head when the layers come from the teacher (``init_from_teacher_layers``
    without ``config_from``), else everything. ``copy``, ``pruned``, ``linear_attention``: nothing (they are the
    teacher's own network, fine-tuned head included); such peers differ only by their dropout masks, as do all
    peers with ``init: copy``.
    """
    if init == "copy":
        return "none"
    if student.kind == "bilstm":
        return "all_but_embeddings" if student.init_embeddings_from_teacher else "all"
    if student.kind == "transformer":
        from_teacher = student.init_from_teacher_layers is not None and student.config_from is None
        return "head" if from_teacher else "all"
    return "none"


def _dump(section) -> str:
    return json.dumps(section.model_dump(exclude_unset=True) if hasattr(section, "model_dump") else section)


def mutual_problems(recipe, task) -> list[str]:
    """Every combination of ``loss.mutual`` with other keys that cannot work, one message each.

    Args:
        recipe: The validated recipe (a :class:`distilkit.run.schema.Recipe`).
        task: Its :class:`~distilkit.data.tasks.TaskSpec`.

    Returns:
        ``["key: value conflicts with other.key: value; why", ...]``, empty when the recipe is fine.
    """
    mutual = recipe.loss.mutual
    if mutual is None:
        return []
    problems = []
    if recipe.train.resume_from is not None:
        problems.append(f"train.resume_from: {json.dumps(recipe.train.resume_from)} conflicts with loss.mutual: "
                        f"{_dump(mutual)}; checkpoints hold the main student only, so resumed peers would start "
                        "over; train mutual-learning recipes in one go (or drop loss.mutual to resume)")
    if recipe.train.epochs == 0:  # also with --set train.epochs=0: the resolved dump must validate again
        problems.append(f"loss.mutual: {_dump(mutual)} means nothing with train.epochs: 0; no student trains, so "
                        "there is nobody to learn from (drop it, e.g. --set loss.mutual=null)")
    if mutual.seed is not None and peer_scope(recipe.student, mutual.init) == "none":
        because = ("loss.mutual.init: \"copy\"" if mutual.init == "copy"
                   else f"student.kind: {json.dumps(recipe.student.kind)}")
        problems.append(f"loss.mutual.seed: {mutual.seed} means nothing with {because}; such peers start as exact "
                        "copies of the student and draw no fresh weights (only their dropout masks differ)")
    return problems
