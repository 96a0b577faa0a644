"""Plug-ins are dotted import paths (``my_pkg.teachers:MyTeacher``); this resolves them, and the dotted paths
a method names for its heavy parts (:mod:`distilkit.core.method_spec`)."""

from __future__ import annotations

import importlib
import importlib.util
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


def resolve(dotted: str) -> Any:
    """Import ``package.module:attr`` named by distilkit itself (a method's hooks, builders, registration).

    Unlike :func:`import_object` (a user's plug-in, whose failure is bad input), a failure here is a bug in
    distilkit and propagates as it is."""
    module_name, _, attr_path = dotted.partition(":")
    obj = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


def importable(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (nor running its code)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a malformed name
        return False
