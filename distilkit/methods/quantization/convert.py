"""Quantization as a recipe step and as the ``distilkit quantize`` command.

A recipe with a ``quantize`` section (:class:`distilkit.methods.quantization.config.QuantizeConfig`) trains its student as usual
(optionally through fake-quantized weights, ``qat: true``), then converts the best student on the same grids
(:func:`quantize_directory`): ``output_dir/model`` becomes the quantized model and the float one moves to
``output_dir/model-float``. ``metrics.json`` reports the quantized model's own accuracy, size on disk and
latency, measured after reloading it with ``from_pretrained``.

In memory (what a benchmark calls to compare schemes and roundings side by side):

  * :func:`quantize_in_place` ``(model, cfg, seed=0) -> dict`` puts a float model's weights on ``cfg``'s
    grids with ``cfg.rounding`` (``QuantizeConfig(linear="int4", rounding="stochastic")``: post-training,
    stochastic), exactly as a recipe's conversion does; a QAT-trained model (``cfg.qat``) converts with
    nearest rounding whatever ``cfg.rounding`` says (:func:`conversion_rounding`).
  * :func:`prepare_qat` ``(model, cfg)`` before training makes the model train through fake-quantized weights,
    rounded ``cfg.rounding`` in training forwards; :func:`quantize_in_place` converts it afterwards.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from distilkit.core.atomic import atomic_directory
from distilkit.core.errors import RecipeError
from distilkit.core.faults import fault_point
from distilkit.core.saved_files import read_json
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.fake_quant import Grid, prepare_fake_quant
from distilkit.methods.quantization.hf_quantizer import quantize_bnb
from distilkit.methods.quantization.layers import QuantEmbedding, QuantLinear, QuantLSTM, quantize_model
from distilkit.models.inference import load_saved

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


def conversion_rounding(cfg: QuantizeConfig) -> str:
    """Rounding of the conversion to integers: ``cfg.rounding`` after plain training (post-training
    quantization); ``nearest`` after QAT, whose stochastic rounding is a training regulariser (Gupta et al.
    2015 round stochastically while training): nearest is the deterministic model that QAT's eval-mode
    forwards computed, so the saved model scores what the run's evaluation measured."""
    return "nearest" if cfg.qat else cfg.rounding


def prepare_qat(model: torch.nn.Module, cfg: QuantizeConfig) -> list[str]:
    """Make ``model`` train through fake-quantized weights on ``cfg``'s grids (in place); with
    ``cfg.rounding: stochastic`` its training forwards round stochastically (torch's global generator)."""
    linear, embedding = grids(cfg)
    done = prepare_fake_quant(model, linear, embedding, skip_modules=cfg.skip_modules,
                              activation_bits=cfg.activation_bits, rounding=cfg.rounding)
    if not done:
        raise RecipeError(f"quantize: no module of {type(model).__name__} matches the grids (skip_modules="
                          f"{cfg.skip_modules})")
    return done


def quantize_in_place(model: torch.nn.Module, cfg: QuantizeConfig, seed: int = 0) -> dict:
    """Put ``model``'s weights on ``cfg``'s distilkit grids, in place, as a recipe's conversion does.

    Args:
        model: A float ``PreTrainedModel``, or one prepared by :func:`prepare_qat` and trained.
        cfg: Grids, backend, skipped modules and rounding (:func:`conversion_rounding` of it is used).
        seed: Seed of stochastic rounding: the same seed gives the same integers.

    Returns:
        The ``quantization_config`` dict (also set on ``model.config``).

    Raises:
        RecipeError: bitsandbytes schemes (they quantize a saved directory: :func:`quantize_directory`), or
            nothing in ``model`` matched.
    """
    if cfg.linear and cfg.linear.startswith("bnb"):
        raise RecipeError(f"quantize.linear: {cfg.linear} quantizes a saved model through transformers; "
                          "use quantize_directory")
    linear, embedding = grids(cfg)
    table = quantize_model(model, linear, embedding, skip_modules=cfg.skip_modules, backend=cfg.backend,
                           rounding=conversion_rounding(cfg), seed=seed)
    if not table["modules"]:
        raise RecipeError(f"quantize: nothing in {type(model).__name__} was quantized (skip_modules="
                          f"{cfg.skip_modules})")
    return table


def quantize_directory(src: str | Path, dst: str | Path, cfg: QuantizeConfig, seed: int = 0) -> torch.nn.Module:
    """Quantize the float model saved at ``src`` and save it, with its tokenizer, to ``dst`` atomically.

    ``seed``: of stochastic rounding (:func:`quantize_in_place`); a recipe passes its ``train.seed``.

    Returns:
        The quantized model (eval mode), as saved.
    """
    src, dst = Path(src), Path(dst)
    if cfg.linear and cfg.linear.startswith("bnb"):
        with atomic_directory(dst) as tmp:
            if type(load_saved(src, tokenizer=False)[0]).__name__.startswith("BiLSTM"):
                raise RecipeError("quantize.linear: bitsandbytes quantizes transformer linears; for a BiLSTM "
                                  "student use int8/int4")
            model = quantize_bnb(src, tmp, cfg.linear, skip_modules=cfg.skip_modules)
            _copy_side_files(src, tmp)
        return model
    model, _ = load_saved(src, tokenizer=False)
    quantize_in_place(model, cfg, seed)
    with atomic_directory(dst) as tmp:
        model.save_pretrained(tmp)
        _copy_side_files(src, tmp)
    return model


def _copy_side_files(src: Path, dst: Path) -> None:
    """Tokenizer files, recipe and anything else that is not a weight or the config."""
    for path in src.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", ".bin") and path.name != "config.json":
            shutil.copy2(path, dst / path.name)


def quantize_output(out: Path, cfg: QuantizeConfig, seed: int = 0) -> None:
    """In a finished run: ``out/model`` (float) -> ``out/model-float``; quantized -> ``out/model``
    (``seed``: of stochastic rounding, the recipe's ``train.seed``).

    Idempotent: a resumed run whose ``model`` was already quantized (a crash before ``metrics.json``) keeps it.
    """
    config = read_json(out / "model" / "config.json")
    if (config.get("quantization_config") or {}).get("quant_method") and (out / "model-float").is_dir():
        return
    staged = out / "model-quantized"
    quantize_directory(out / "model", staged, cfg, seed)
    fault_point("quantize.done")
    shutil.rmtree(out / "model-float", ignore_errors=True)
    os.replace(out / "model", out / "model-float")
    fault_point("quantize.swap")  # between the two renames: no out/model at all
    os.replace(staged, out / "model")


def dequantize_model(model: torch.nn.Module) -> int:
    """Replace every distilkit-quantized layer of ``model`` by a float one holding the weights its integers
    represent, in place (what ONNX export starts from; the graph is then re-quantized by ONNX Runtime).

    Returns:
        The number of layers replaced.
    """
    replaced = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantLinear):
            new = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            with torch.no_grad():
                new.weight.copy_(module.dequantize())
                if module.bias is not None:
                    new.bias.copy_(module.bias)
        elif isinstance(module, QuantEmbedding):
            new = nn.Embedding(module.num_embeddings, module.embedding_dim, padding_idx=module.padding_idx)
            with torch.no_grad():
                new.weight.copy_(module.dequantize())
        elif isinstance(module, QuantLSTM):
            new = nn.LSTM(**module.shape)
            with torch.no_grad():
                for pname, param in new.named_parameters():
                    param.copy_(module.weights[pname].dequantize() if pname.startswith("weight")
                                else getattr(module, pname))
        else:
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new.eval())
        replaced += 1
    return replaced

