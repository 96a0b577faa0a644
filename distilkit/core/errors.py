"""Exceptions raised for bad user input.

Every message names *where* the problem is (a file, a key, a line) so a user can fix it without a
traceback. The CLI prints these without a stack trace and exits with status 2.
"""

from __future__ import annotations


class DistilkitError(ValueError):
    """Base class for user-facing errors (bad recipe, bad data, bad model)."""


class RecipeError(DistilkitError):
    """A recipe or task file is invalid: unknown key, wrong type, impossible combination."""


class DataError(DistilkitError):
    """Input data is unusable: missing file or column, label out of range, malformed row."""


class TeacherError(DistilkitError):
    """A teacher cannot be loaded or does not fit the task (e.g. num_labels mismatch)."""


class ExportError(DistilkitError):
    """A model cannot be exported or served: not a model folder, a variant ONNX cannot express, a bad flag."""


class DamagedFileError(DistilkitError):
    """A file distilkit wrote earlier (a model, metrics.json, a checkpoint) is missing or unreadable."""
