"""Quantization in the recipe program: QAT before training, conversion of the best student after it."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from distilkit.core.method_hooks import MethodHooks
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.convert import prepare_qat, quantize_output


class QuantizationHooks(MethodHooks):
    """``quantize:`` in a recipe. With ``qat: true`` the float teacher teaches a student that trains through
    fake-quantized weights; either way the best student is converted on the same grids after training.
    ``seed`` (the recipe's ``train.seed``) seeds stochastic rounding in the conversion."""

    name = "quantization"

    def __init__(self, cfg: QuantizeConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed

    def prepare_student(self, student: nn.Module) -> None:
        if self.cfg.qat:
            prepare_qat(student, self.cfg)

    def after_training(self, output_dir: Path) -> None:
        quantize_output(output_dir, self.cfg, self.seed)


def from_recipe(recipe) -> QuantizationHooks | None:
    """Active when the recipe has a ``quantize`` section."""
    return QuantizationHooks(recipe.quantize, recipe.train.seed) if recipe.quantize is not None else None


def metrics(recipe, student, output_dir, rescore) -> dict:
    """``metrics.json``: the quantized model's scores as reloaded (the float ones kept beside them) and the
    ``quantize`` section as ``student.quantization``."""
    if recipe.quantize is None:
        return {}
    return {**rescore(), "quantization": recipe.quantize.model_dump()}
