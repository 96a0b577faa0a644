"""The base of every recipe section: unknown keys are errors, values are validated on assignment.

Unknown keys fail loudly, naming the file and the dotted key, with a "did you mean" hint
(:mod:`distilkit.run.recipe_io`), in the spirit of llm-compressor's pydantic modifiers: a typo in
``train.epocs`` must never silently train with defaults. Each layer declares the sections it owns
(``data/config.py``, ``models/config.py``, ``methods/<method>/config.py``); :mod:`distilkit.run.schema`
assembles them into a recipe.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base for every recipe section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
