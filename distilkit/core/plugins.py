"""Plug-ins are dotted import paths (``my_pkg.teachers:MyTeacher``); this resolves them."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from distilkit.core.errors import TeacherError

_PLUGIN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")



def is_plugin_path(name: str) -> bool:
    """``package.module:Attribute`` (and not an existing local path)."""
    return bool(_PLUGIN.match(name)) and not Path(name).exists()



def import_object(dotted: str) -> Any:
    """Import ``package.module:attr.sub`` and return the attribute."""
    module_name, _, attr_path = dotted.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise TeacherError(f"teacher.model: cannot import module '{module_name}' of plug-in '{dotted}': {exc}") from None
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            raise TeacherError(f"teacher.model: module '{module_name}' has no attribute '{attr_path}'")
        obj = getattr(obj, attr)
    return obj
