"""Reading files that distilkit wrote earlier, with a named error when a crash or a full disk damaged them.

A truncated ``metrics.json`` or ``model.safetensors`` used to surface as a raw ``JSONDecodeError`` or
``SafetensorError`` traceback in whatever command read it next (``report``, ``push``, ``export``, a pipeline
rerun). These readers name the file and say how to recover (issue 17).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distilkit.core.errors import DamagedFileError

#: ``quant_method`` values whose checkpoints load as plain float models (the weights are decoded while loading):
#: Deep Compression's encoded tensors and low-rank factors. They export and re-quantize like float models.
FLOAT_ON_LOAD = ("distilkit-deep-compression", "distilkit-low-rank")


def _read(path: str | Path, parse, errors: tuple[type[Exception], ...]) -> Any:
    path = Path(path)
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DamagedFileError(f"{path}: missing; rerun the step that writes it") from None
    except (*errors, UnicodeDecodeError) as exc:
        raise DamagedFileError(f"{path}: damaged ({type(exc).__name__}: {str(exc)[:200]}); rerun the step that "
                               "wrote it") from None


def read_json(path: str | Path) -> Any:
    """Parse a JSON file distilkit wrote; a missing or damaged file is a :class:`DamagedFileError`."""
    return _read(path, json.loads, (ValueError,))  # JSONDecodeError is a ValueError

