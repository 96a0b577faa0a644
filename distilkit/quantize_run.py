"""Quantization as a recipe step and as the ``distilkit quantize`` command.

A recipe with a ``quantize`` section (:class:`distilkit.config.QuantizeConfig`) trains its student as usual
(optionally through fake-quantized weights, ``qat: true``), then converts the best student on the same grids
(:func:`quantize_directory`): ``output_dir/model`` becomes the quantized model and the float one moves to
``output_dir/model-float``. ``metrics.json`` reports the quantized model's own accuracy, size on disk and
latency, measured after reloading it with ``from_pretrained``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.checkpointing import atomic_directory
from distilkit.config import QuantizeConfig
from distilkit.errors import RecipeError
from distilkit.fake_quant import Grid, prepare_fake_quant
from distilkit.metrics import compute_metrics
from distilkit.quantize import quantize_model
from distilkit.quantize_hf import quantize_bnb

_LINEAR_GRIDS = {"int8": (8, "uniform"), "int4": (4, "uniform"), "ternary": (2, "ternary"),
                 "binary": (2, "binary")}


def grids(cfg: QuantizeConfig) -> tuple[Grid | None, Grid | None]:
    """The distilkit grids of ``cfg``: ``(linear, embedding)``, ``None`` where that part stays float
    (bitsandbytes linears are not distilkit grids: see :func:`quantize_directory`)."""
    linear = None
    if cfg.linear in _LINEAR_GRIDS:
        bits, mode = _LINEAR_GRIDS[cfg.linear]
        linear = Grid(bits, mode, cfg.symmetric if mode == "uniform" else True, cfg.per_channel)
    embedding = None
    if cfg.embedding:
        # Row-wise always: each looked-up row is dequantized with its own scale.
        embedding = Grid(8 if cfg.embedding == "int8" else 4, "uniform", cfg.symmetric, per_channel=True)
    return linear, embedding


def prepare_qat(model: torch.nn.Module, cfg: QuantizeConfig) -> list[str]:
    """Make ``model`` train through fake-quantized weights on ``cfg``'s grids (in place)."""
    linear, embedding = grids(cfg)
    done = prepare_fake_quant(model, linear, embedding, skip_modules=cfg.skip_modules,
                              activation_bits=cfg.activation_bits)
    if not done:
        raise RecipeError(f"quantize: no module of {type(model).__name__} matches the grids (skip_modules="
                          f"{cfg.skip_modules})")
    return done


def quantize_directory(src: str | Path, dst: str | Path, cfg: QuantizeConfig) -> torch.nn.Module:
    """Quantize the float model saved at ``src`` and save it, with its tokenizer, to ``dst`` atomically.

    Returns:
        The quantized model (eval mode), as saved.
    """
    src, dst = Path(src), Path(dst)
    if cfg.linear and cfg.linear.startswith("bnb"):
        with atomic_directory(dst) as tmp:
            if type(AutoModelForSequenceClassification.from_pretrained(src)).__name__.startswith("BiLSTM"):
                raise RecipeError("quantize.linear: bitsandbytes quantizes transformer linears; for a BiLSTM "
                                  "student use int8/int4")
            model = quantize_bnb(src, tmp, cfg.linear, skip_modules=cfg.skip_modules)
            _copy_side_files(src, tmp)
        return model
    model = AutoModelForSequenceClassification.from_pretrained(src).eval()
    linear, embedding = grids(cfg)
    table = quantize_model(model, linear, embedding, skip_modules=cfg.skip_modules, backend=cfg.backend)
    if not table["modules"]:
        raise RecipeError(f"quantize: nothing in {type(model).__name__} was quantized (skip_modules="
                          f"{cfg.skip_modules})")
    with atomic_directory(dst) as tmp:
        model.save_pretrained(tmp)
        _copy_side_files(src, tmp)
    return model


def _copy_side_files(src: Path, dst: Path) -> None:
    """Tokenizer files, recipe and anything else that is not a weight or the config."""
    for path in src.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", ".bin") and path.name != "config.json":
            shutil.copy2(path, dst / path.name)


def quantize_output(out: Path, cfg: QuantizeConfig) -> None:
    """In a finished run: ``out/model`` (float) -> ``out/model-float``; quantized -> ``out/model``.

    Idempotent: a resumed run whose ``model`` was already quantized (a crash before ``metrics.json``) keeps it.
    """
    config = json.loads((out / "model" / "config.json").read_text())
    if (config.get("quantization_config") or {}).get("quant_method") and (out / "model-float").is_dir():
        return
    staged = out / "model-quantized"
    quantize_directory(out / "model", staged, cfg)
    shutil.rmtree(out / "model-float", ignore_errors=True)
    os.replace(out / "model", out / "model-float")
    os.replace(staged, out / "model")


def evaluate_model(model, encode, tokenizer, max_length: int, ds, task, batch_size: int = 64) -> dict:
    """Task metrics of ``model`` on a normalized split, in one process (used on reloaded models)."""
    model.eval()
    rows, logits = list(ds), []
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i:i + batch_size]
            pairs = None if chunk[0]["text_b"] is None else [r["text_b"] for r in chunk]
            inputs = encode(tokenizer, [r["text_a"] for r in chunk], pairs, max_length)
            logits.append(model(**inputs).logits.float().cpu().numpy())
    return compute_metrics(task, np.concatenate(logits), np.asarray([r["label"] for r in rows]))


def quantize_command(args) -> None:
    """``distilkit quantize MODEL_DIR --out DIR [...]``: quantize a saved model; evaluate it on a task."""
    from distilkit.measure import count_parameters, size_on_disk
    from distilkit.pipeline_measure import encoder_for
    from distilkit.recipe_io import format_validation_error
    from distilkit.tasks import load_split, load_task

    fields = {"linear": None if args.linear == "none" else args.linear,
              "embedding": None if args.embedding == "none" else args.embedding,
              "backend": args.backend, "symmetric": not args.asymmetric}
    if args.skip:
        fields["skip_modules"] = args.skip
    try:
        cfg = QuantizeConfig(**fields)
    except Exception as err:  # pydantic's ValidationError, reworded with the option names
        raise RecipeError(format_validation_error(err, "distilkit quantize", QuantizeConfig)) from None
    src = Path(args.model_dir)
    if not (src / "config.json").is_file():
        raise RecipeError(f"distilkit quantize: {src} is not a saved model directory (no config.json)")
    model = quantize_directory(src, args.out, cfg)
    before, after = size_on_disk(src), size_on_disk(args.out)
    print(f"{src} -> {args.out}: {before / 2**20:.1f} MB -> {after / 2**20:.1f} MB on disk "
          f"({before / max(after, 1):.2f}x smaller), {count_parameters(model):,} weights")
    if args.task:
        task = load_task(args.task)
        ds = load_split(task, task.eval_splits[0], data_dir=args.data_dir, max_examples=args.max_examples)
        tokenizer = AutoTokenizer.from_pretrained(args.out)
        encode = encoder_for(model)
        reloaded = AutoModelForSequenceClassification.from_pretrained(args.out)
        for name, m in (("float", AutoModelForSequenceClassification.from_pretrained(src)), ("quantized", reloaded)):
            print(f"{name:>9}: {evaluate_model(m, encode, tokenizer, args.max_length, ds, task)}")
