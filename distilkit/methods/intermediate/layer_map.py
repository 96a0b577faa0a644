"""Which student layer learns from which teacher layer (torch-free: preflight resolves maps from ``config.json``).

A map is a list of ``(student, teacher)`` pairs of 0-based transformer layers (see
:mod:`distilkit.methods.intermediate.config`).
"""

from __future__ import annotations

from distilkit.core.errors import RecipeError


def uniform_pairs(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    """TinyBERT's uniform strategy ``g(m) = m N / M`` (Jiao et al. 2020, section 4.1) in 0-based layers: student
    layer ``j`` learns from teacher layer ``ceil(N (j + 1) / M) - 1``, ending on the teacher's last layer.

    The same teacher layers :func:`distilkit.models.transformer.uniform_layers` copies into a student
    (``init_from_teacher_layers: uniform``; a test holds the two equal), so an initialised student layer keeps
    learning from the layer it started as. 6 -> 2 gives ``[(0, 2), (1, 5)]``; a student deeper than its
    teacher repeats teacher layers.
    """
    # ceil(teacher * (j + 1) / student) - 1 in integer arithmetic.
    return [(j, -(-teacher_layers * (j + 1) // student_layers) - 1) for j in range(student_layers)]


def layer_map_problems(spec, student_layers: int | None, teacher_layers: int | None, key: str) -> list[str]:
    """Why the explicit pairs of ``spec`` do not fit the models (one message per bad pair), or ``[]``.

    ``None`` for a depth not known yet (checked again once the models are built); ``uniform`` and ``last``
    always fit.
    """
    if isinstance(spec, str):
        return []
    problems = []
    for pair in spec:
        student, teacher = pair
        for side, layer, depth, model in (("student", student, student_layers, "the student"),
                                          ("teacher", teacher, teacher_layers, "the teacher")):
            if depth is not None and layer >= depth:
                problems.append(f"{key}: pair {list(pair)} names {side} layer {layer} but {model} has {depth} "
                                f"layers (valid: 0..{depth - 1})")
    return problems


def resolve_layer_map(spec, student_layers: int, teacher_layers: int, key: str) -> list[tuple[int, int]]:
    """The ``(student, teacher)`` pairs of ``spec`` (``uniform``, ``last`` or explicit pairs) for these depths.

    Raises:
        RecipeError: an explicit pair names a layer a model does not have (the message names ``key``).
    """
    if spec == "uniform":
        return uniform_pairs(student_layers, teacher_layers)
    if spec == "last":
        return [(student_layers - 1, teacher_layers - 1)]
    problems = layer_map_problems(spec, student_layers, teacher_layers, key)
    if problems:
        raise RecipeError("; ".join(problems))
    return [(int(s), int(t)) for s, t in spec]
