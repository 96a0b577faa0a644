"""Task definitions (``tasks/<name>.yaml``) and loading of their splits as one normalized table.

Every source (the original GLUE TSV files, the Hugging Face Hub copy, a user's CSV/JSON/Parquet files) is turned
into the same ``datasets.Dataset`` with columns ``id``, ``text_a``, ``text_b`` and ``label`` (see
``docs/design.md``), so teachers, students and the logit cache never care where examples came from.
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from distilkit.core.errors import DataError, RecipeError
from distilkit.core.yaml_files import read_yaml
from distilkit.data.metrics import MetricName
from distilkit.data.task_rows import Rows, normalize_rows, read_delimited, read_records

if TYPE_CHECKING:
    import datasets

Column = str | int
"""A header name, or a 0-based field number for files without a header (CoLA)."""


class _Strict(BaseModel):
    # A typo in a task file must fail loudly instead of silently falling back to a default.
    model_config = ConfigDict(extra="forbid")


class _Columns(_Strict):
    """Which columns of a source hold the two texts, the label and the example number."""

    text_a: Column
    text_b: Column | None = None
    label: Column | None = "label"
    index: Column | None = None
    """Column with a stable example number (GLUE's ``index``/``idx``); the row number when absent."""


class HubSource(_Columns):
    """Where the task lives on the Hugging Face Hub (read with ``datasets.load_dataset``)."""

    path: str
    name: str | None = None
    revision: str | None = None


class TsvFile(_Strict):
    """One split's file; other keys override the folder-wide layout (CoLA's test file has a header)."""

    file: str
    header: bool | None = None
    text_a: Column | None = None
    text_b: Column | None = None
    label: Column | None = None
    index: Column | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        # Most entries are just a file name; accept that instead of forcing ``{file: x}`` everywhere.
        return {"file": data} if isinstance(data, str) else data


class _LocalColumns(_Columns):
    """Columns of local files, which need label parsing and tolerate GLUE's known defects."""

    label_values: dict[str, int] | None = None
    """Raw label string -> class id; without it a label is a class id or a name. Regression parses floats."""
    skip_malformed: bool = False
    """Skip (and count) rows with too few fields instead of failing (QQP's train file has some)."""


class TsvSource(_LocalColumns):
    """The original GLUE layout: ``<data.dir>/<folder>/<file>`` as tab-separated values."""

    folder: str
    files: dict[str, TsvFile]
    header: bool = True


class FileSource(_LocalColumns):
    """A user's own files, one per split, with a header row (CSV/TSV) or keys (JSON lines, Parquet)."""

    format: Literal["csv", "tsv", "json", "parquet"]
    data_files: dict[str, str]


class TaskSpec(_Strict):
    """A text classification or regression task: labels, metrics and where its splits come from."""

    name: str
    problem_type: Literal["single_label_classification", "regression"]
    label_names: list[str] | None = None
    """Class names in class-id order (classification only)."""
    metrics: list[MetricName] = Field(min_length=1)
    main_metric: str
    """Any key :func:`distilkit.data.metrics.compute_metrics` returns for this task."""
    train_split: str = "train"
    eval_splits: list[str] = Field(default_factory=lambda: ["validation"], min_length=1)
    hub: HubSource | None = None
    tsv: TsvSource | None = None
    files: FileSource | None = None
    teacher_finetune: dict[str, Any] | None = None
    """Settings for fine-tuning a bare pretrained encoder into this task's teacher (``epochs``, ``lr``,
    ``max_length``...): a recipe's ``teacher.finetune`` takes every key it does not set itself from here.
    Checked against the recipe's fine-tuning section when a recipe uses them."""
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source_path(self) -> Path | None:
        """The YAML file this task was read from (relative ``files:`` paths start there)."""
        return self._source

    @property
    def is_regression(self) -> bool:
        return self.problem_type == "regression"

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names or [])

    @property
    def is_pair(self) -> bool:
        return any(src is not None and src.text_b is not None for src in (self.hub, self.tsv, self.files))


# --------------------------------------------------------------------------------------------- task files
def builtin_tasks_dir() -> Path:
    """``distilkit/_builtin_tasks`` in a wheel, else ``<repo>/tasks`` for an editable install."""
    package = Path(__file__).resolve().parents[1]  # distilkit/ (this file is distilkit/data/tasks.py)
    packaged = package / "_builtin_tasks"
    return packaged if packaged.is_dir() else package.parent / "tasks"


def list_tasks() -> list[str]:
    """Names of the built-in tasks (the YAML files in :func:`builtin_tasks_dir`)."""
    return sorted(p.stem for p in builtin_tasks_dir().glob("*.yaml"))


def load_task(name_or_path: str | Path) -> TaskSpec:
    """Load a built-in task by name (``sst2``) or a user task from a YAML file path.

    Raises:
        RecipeError: unknown task name, unreadable YAML, or an invalid task naming the file and dotted key.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and not path.is_file():
        builtin = builtin_tasks_dir() / f"{name_or_path}.yaml"
        if not builtin.is_file():
            hint = difflib.get_close_matches(str(name_or_path), list_tasks(), n=1)
            raise RecipeError(
                f"unknown task '{name_or_path}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                + f"; built-in tasks: {', '.join(list_tasks())}; or give the path to a task YAML file"
            )
        path = builtin
    tree = read_yaml(path, what="task", top="task keys")
    try:
        spec = TaskSpec.model_validate(tree)
    except ValidationError as err:
        raise RecipeError(_format_errors(err, str(path))) from None
    _check_consistency(spec, str(path))
    spec._source = path.resolve()
    return spec


def _keys_at(loc: Sequence[Any]) -> list[str]:
    """Valid keys at ``loc`` inside a task file, walking through optional sections and split dicts."""
    model: type[BaseModel] = TaskSpec
    parts = list(loc)
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        if field is None:
            return []
        args = get_args(field.annotation) or (field.annotation,)
        if get_origin(field.annotation) is dict:
            args = args[1:]
            parts = parts[1:]  # the next part is a split name, not a key
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if not models:
            return []
        model = models[0]
    return list(model.model_fields)


def _format_errors(err: ValidationError, source: str) -> str:
    """One ``file: dotted.key: message`` line per problem, with a "did you mean" for unknown keys."""
    lines: dict[str, str] = {}
    for item in err.errors():
        # Union members ("str", "int") appear in pydantic's location but never in the user's file.
        loc = [p for p in item["loc"] if p not in ("str", "int")]
        key = ".".join(str(p) for p in loc) or "<root>"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            known = _keys_at(loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = f"unknown key '{loc[-1]}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
            msg += f"; valid keys here: {', '.join(known)}" if known else ""
        elif item["type"] != "missing" and "input" in item:
            msg += f" (got {item['input']!r})"
        lines.setdefault(key, f"{source}: {key}: {msg}")
    return "\n".join(lines.values())


def _check_consistency(spec: TaskSpec, source: str) -> None:
    """Rules that span several keys, which per-field validation cannot see."""

    def fail(key: str, msg: str) -> None:
        raise RecipeError(f"{source}: {key}: {msg}")

    if spec.is_regression and spec.label_names:
        fail("label_names", "regression tasks have no label names; remove the key")
    if not spec.is_regression and not spec.label_names:
        fail("label_names", "classification tasks need the class names, in class-id order")
    if spec.label_names and len(set(spec.label_names)) != len(spec.label_names):
        fail("label_names", f"duplicate names in {spec.label_names}")
    produced = list(dict.fromkeys(spec.metrics)) + (["combined_score"] if len(set(spec.metrics)) > 1 else [])
    if spec.main_metric not in produced:
        fail("main_metric", f"'{spec.main_metric}' is not computed for this task; choose one of {produced}")
    if "f1" in spec.metrics and spec.num_labels != 2:
        fail("metrics", "f1 is the binary F1 of class 1 and needs exactly two labels")
    sources = {"hub": spec.hub, "tsv": spec.tsv, "files": spec.files}
    if not any(sources.values()):
        fail("<root>", "a task needs at least one data source: hub, tsv or files")
    pair = {k: v.text_b is not None for k, v in sources.items() if v is not None}
    if len(set(pair.values())) > 1:
        fail("text_b", f"sources disagree on whether the task is a sentence pair: {pair}")
    for key in ("tsv", "files"):
        values = getattr(sources[key], "label_values", None)
        if values and spec.is_regression:
            fail(f"{key}.label_values", "regression labels are parsed as floats; remove label_values")
        bad = {raw: i for raw, i in (values or {}).items() if not 0 <= i < spec.num_labels}
        if bad:
            fail(f"{key}.label_values", f"class ids {bad} out of range [0, {spec.num_labels})")


# --------------------------------------------------------------------------------------------- splits
def example_features(task: TaskSpec) -> datasets.Features:
    """The normalized table's schema; Arrow columns are nullable, so unlabeled rows hold ``None``."""
    import datasets  # here, not at the top: preflight reads tasks and rows without paying for datasets' import

    label = datasets.Value("float32" if task.is_regression else "int64")
    return datasets.Features({"id": datasets.Value("string"), "text_a": datasets.Value("string"),
                              "text_b": datasets.Value("string"), "label": label})


def load_split(task: TaskSpec | str, split: str, *, data_dir: str | Path | None = None,
               max_examples: int | None = None, seed: int = 0) -> datasets.Dataset:
    """Load one split of a task as the normalized table (``id``, ``text_a``, ``text_b``, ``label``).

    The source is the task's ``tsv:`` layout when ``data_dir`` is given, else its ``files:``, else its ``hub:``.

    Args:
        task: A :class:`TaskSpec` or anything :func:`load_task` accepts.
        split: ``train``, ``validation``, ``validation_matched``, ``test``...
        data_dir: Root of the original GLUE layout (``<data_dir>/SST-2/train.tsv``); also searched first for
            relative ``files:`` paths. ``None`` reads the task's Hub dataset (or its ``files:``).
        max_examples: Keep a random subset of this size, seeded and in file order, ids unchanged.
        seed: Seed of that subset.

    Raises:
        DataError: missing file, column or split, a bad label, a malformed row (naming file and line).
    """
    spec = task if isinstance(task, TaskSpec) else load_task(task)
    if max_examples is not None and max_examples <= 0:
        raise ValueError(f"max_examples must be positive, got {max_examples}")
    columns = _read_columns(spec, split, data_dir)
    import datasets

    table = datasets.Dataset.from_dict(columns, features=example_features(spec))
    keep = subset_indices(len(table), max_examples, seed)
    return table if keep is None else table.select(keep)


def subset_indices(size: int, max_examples: int | None, seed: int) -> list[int] | None:
    """Rows of a split that ``max_examples`` keeps, in file order (``None``: all of them).

    A random subset, not the head: SST-2's train file lists the phrases of each sentence together, so its
    head is a handful of correlated sentences.
    """
    if max_examples is None or max_examples >= size:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(size, size=max_examples, replace=False)).tolist()


def split_texts(task: TaskSpec | str, split: str, *, data_dir: str | Path | None = None,
                max_examples: int | None = None, seed: int = 0) -> list[str]:
    """The sentences (``text_a`` then ``text_b`` of each row) of the rows :func:`load_split` would load, read
    without building a ``datasets`` table (for preflight checks on texts)."""
    spec = task if isinstance(task, TaskSpec) else load_task(task)
    columns = _read_columns(spec, split, data_dir)
    keep = subset_indices(len(columns["id"]), max_examples, seed)
    rows = range(len(columns["id"])) if keep is None else keep
    second = columns.get("text_b")
    return [text for i in rows for text in (columns["text_a"][i], second[i] if second else None) if text]


def check_split(task: TaskSpec | str, split: str, *, data_dir: str | Path | None = None) -> int:
    """Read and validate one split as :func:`load_split` does, without building the ``datasets`` table (the
    preflight check of :mod:`distilkit.run.preflight`). Returns the number of examples.

    Raises:
        DataError: as :func:`load_split`, including an empty split.
    """
    spec = task if isinstance(task, TaskSpec) else load_task(task)
    return len(_read_columns(spec, split, data_dir)["id"])


def _read_columns(spec: TaskSpec, split: str, data_dir: str | Path | None) -> dict[str, list]:
    if data_dir is not None and spec.tsv is not None:
        columns = _load_tsv(spec, split, Path(data_dir))
    elif spec.files is not None:
        columns = _load_files(spec, split, data_dir)
    elif data_dir is not None:
        raise DataError(f"task '{spec.name}' declares no tsv: layout, so data.dir={data_dir} cannot be read")
    elif spec.hub is not None:
        columns = _load_hub(spec, split)
    else:
        raise DataError(f"task '{spec.name}' only has a tsv: layout; set data.dir to the GLUE data folder")
    return columns


def _split_error(spec: TaskSpec, split: str, known: Sequence[str], where: str) -> DataError:
    return DataError(f"task '{spec.name}' has no split '{split}' in its {where}; splits: {', '.join(known)}")


def _load_tsv(spec: TaskSpec, split: str, data_dir: Path) -> dict[str, list]:
    tsv = spec.tsv
    assert tsv is not None
    if split not in tsv.files:
        raise _split_error(spec, split, list(tsv.files), "tsv: layout")
    entry = tsv.files[split]
    layout = tsv.model_copy(update={k: getattr(entry, k) for k in entry.model_fields_set - {"file"}})
    path = data_dir / tsv.folder / entry.file
    if not path.is_file():
        expected = ", ".join(f"{tsv.folder}/{f.file}" for f in tsv.files.values())
        raise DataError(
            f"{path}: file not found (task '{spec.name}', split '{split}'); data.dir should hold the original "
            f"GLUE layout, for this task: {expected}"
        )
    return normalize_rows(spec, split, str(path), read_delimited(path, "\t", csv.QUOTE_NONE), layout, layout.header)


def _load_files(spec: TaskSpec, split: str, data_dir: str | Path | None) -> dict[str, list]:
    src = spec.files
    assert src is not None
    if split not in src.data_files:
        raise _split_error(spec, split, list(src.data_files), "files: data_files")
    # Relative paths: data.dir first, then next to the task file, then the working directory.
    bases = [Path(data_dir)] if data_dir is not None else []
    bases += [spec.source_path.parent] if spec.source_path else []
    candidates = [base / src.data_files[split] for base in bases] + [Path(src.data_files[split])]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        tried = ", ".join(dict.fromkeys(str(p) for p in candidates))
        raise DataError(f"{src.data_files[split]}: file not found (task '{spec.name}', split '{split}'); tried {tried}")
    if src.format in ("csv", "tsv"):
        rows = read_delimited(path, "," if src.format == "csv" else "\t", csv.QUOTE_MINIMAL)
    else:
        rows = read_records(path, src.format)
    return normalize_rows(spec, split, str(path), rows, src, header=True)


def _load_hub(spec: TaskSpec, split: str) -> dict[str, list]:
    hub = spec.hub
    assert hub is not None
    where = f"{hub.path}" + (f" ({hub.name})" if hub.name else "")
    import datasets

    ds = datasets.load_dataset(hub.path, hub.name, split=split, revision=hub.revision)
    feature = ds.features.get(hub.label or "")
    names = getattr(feature, "names", None)
    if names and spec.label_names and list(names) != spec.label_names:
        raise DataError(f"{where}: label order {names} differs from the task's label_names {spec.label_names}")
    columns = list(ds.column_names)
    label_at = columns.index(hub.label) if names and hub.label in columns else None

    def rows() -> Rows:
        yield where, columns
        number = 0
        for batch in ds.iter(batch_size=1024):
            for values in map(list, zip(*(batch[c] for c in columns), strict=True)):
                if label_at is not None and values[label_at] == -1:  # ClassLabel's mark for unlabeled rows
                    values[label_at] = None
                yield f"{where} split '{split}' row {number}", values
                number += 1

    return normalize_rows(spec, split, f"{where} split '{split}'", rows(), hub, header=True)
