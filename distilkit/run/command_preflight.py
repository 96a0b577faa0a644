"""Preflight of the commands that take saved folders instead of a recipe (issue 17): ``quantize``, ``export``,
``predict``, ``push`` and ``report``.

Like :func:`distilkit.run.preflight.preflight` for recipes, :func:`preflight_command` reads only small files
(``config.json``, ``metrics.json``) and looks packages up without importing them, so a wrong folder, a missing
package or an unwritable output is named within a second of starting, before torch, transformers or a model
is loaded. Every problem is listed, one line each, naming the option.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distilkit.core.errors import DamagedFileError, DistilkitError, RecipeError
from distilkit.core.saved_files import FLOAT_ON_LOAD, read_json
from distilkit.data.tasks import load_task
from distilkit.run.preflight import importable, unwritable

#: What ``export``/``predict`` on an ONNX folder need (the ``export`` extra).
EXPORT_PACKAGES = ("onnx", "onnxruntime")


def preflight_command(args: argparse.Namespace) -> None:
    """Check the folders, files and packages of a ``quantize``/``export``/``predict``/``push``/``report``
    command line; raise one :class:`RecipeError` listing every problem (``distilkit <command>: <option>: ...``)."""
    check = {"quantize": _quantize, "export": _export, "predict": _predict, "push": _push, "report": _report}
    problems = check[args.command](args)
    if problems:
        raise RecipeError("\n".join(f"distilkit {args.command}: {problem}" for problem in problems))


def _quantize(args) -> list[str]:
    problems = _saved_model("MODEL_DIR", args.model_dir)
    problems += _writable("--out", args.out)
    if (args.linear or "").startswith("bnb") and not importable("bitsandbytes"):
        problems.append(f"--linear: {args.linear} needs bitsandbytes; pip install bitsandbytes")
    if args.backend == "torchao" and not importable("torchao"):
        problems.append("--backend: torchao is not installed; pip install torchao")
    return problems + _task_and_data(args.task, args.data_dir)


def _export(args) -> list[str]:
    problems = _saved_model("MODEL_DIR", args.model_dir)
    config = _config(args.model_dir)
    quant = ((config or {}).get("quantization_config") or {}).get("quant_method")
    quant = None if quant in FLOAT_ON_LOAD else quant
    if quant and quant != "distilkit":
        problems.append(f"MODEL_DIR: {args.model_dir} is a {quant} model, which has no ONNX form; export the float "
                        "model and pass --int8")
    elif quant and args.int8:
        problems.append(f"--int8: {args.model_dir} is already integer (distilkit-quantized); export it without "
                        "--int8: ONNX Runtime re-quantizes it from the weights it stores")
    problems += _writable("--onnx", args.onnx)
    missing = [name for name in EXPORT_PACKAGES if not importable(name)]
    if missing:
        problems.append(f"--onnx: needs {' and '.join(missing)}; pip install 'distilkit[export]'")
    return problems + _task_and_data(args.task, args.data_dir)


def _predict(args) -> list[str]:
    folder = Path(args.model_dir)
    if (folder / "model.onnx").is_file():
        problems = [] if importable("onnxruntime") else [
            "MODEL_DIR: an ONNX folder needs onnxruntime; pip install 'distilkit[export]'"]
    else:
        problems = _saved_model("MODEL_DIR", args.model_dir, also="or model.onnx")
    if args.file and not Path(args.file).is_file():
        problems.append(f"--file: {args.file}: file not found")
    if args.json:
        problems += _writable("--json", str(Path(args.json).parent))
    return problems


def _push(args) -> list[str]:
    problems = [] if "/" in args.repo else [f"--repo: must be 'user/name' (got '{args.repo}')"]
    problems += _finished_run("RUN_DIR", Path(args.run_dir))
    if not problems and not (Path(args.run_dir) / "pipeline.json").is_file():
        problems += _saved_model("RUN_DIR", str(Path(args.run_dir) / "model"))
    if args.dry_run:
        problems += _writable("--dry-run", args.dry_run)
    return problems


def _report(args) -> list[str]:
    problems = [problem for run_dir in args.run_dirs for problem in _finished_run("RUN_DIRS", Path(run_dir))]
    if not importable("matplotlib"):
        problems.append("--out: the Pareto plots need matplotlib, which is not installed; pip install 'distilkit[plot]'")
    return problems + _writable("--out", args.out)


# ------------------------------------------------------------------------------------------------- checks
def _saved_model(option: str, folder: str, also: str = "") -> list[str]:
    path = Path(folder)
    if not path.is_dir():
        return [f"{option}: {folder} {'is a file, not' if path.exists() else 'does not exist; expected'} a saved "
                "model folder (a run's OUTPUT_DIR/model)"]
    if not (path / "config.json").is_file():
        return [f"{option}: {folder} is not a saved model folder (no config.json{' ' + also if also else ''})"]
    try:
        read_json(path / "config.json")
    except DamagedFileError as exc:
        return [f"{option}: {exc}"]
    return []


def _config(folder: str) -> dict | None:
    try:
        config = read_json(Path(folder) / "config.json")
    except (DamagedFileError, OSError):
        return None
    return config if isinstance(config, dict) else None


def _finished_run(option: str, run_dir: Path) -> list[str]:
    if not run_dir.is_dir():
        return [f"{option}: {run_dir} does not exist; expected a finished run's OUTPUT_DIR"]
    files = [run_dir / name for name in ("pipeline.json", "metrics.json") if (run_dir / name).is_file()]
    if not files:
        return [f"{option}: {run_dir} has neither metrics.json nor pipeline.json: not a finished run"]
    try:
        read_json(files[0])
    except DamagedFileError as exc:
        return [f"{option}: {exc}; run it again to rewrite it"]
    return []


def _task_and_data(task: str | None, data_dir: str | None) -> list[str]:
    problems = []
    if task is not None:
        try:
            load_task(task)
        except DistilkitError as exc:
            problems.append(f"--task: {str(exc).splitlines()[0]}")
    if data_dir is not None and not Path(data_dir).is_dir():
        problems.append(f"--data-dir: {data_dir} does not exist")
    return problems


def _writable(option: str, folder: str) -> list[str]:
    problem = unwritable(Path(folder).expanduser())
    return [f"{option}: {problem}"] if problem else []
