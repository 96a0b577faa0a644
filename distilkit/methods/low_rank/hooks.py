"""Low-rank factorisation in the recipe program: factorise the student, then let distillation recover it."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from distilkit.core.atomic import write_json_atomic
from distilkit.core.method_hooks import MethodHooks
from distilkit.core.saved_files import read_json
from distilkit.methods.low_rank.config import FactorizeConfig
from distilkit.methods.low_rank.factorize import factorize_model

log = logging.getLogger(__name__)


class LowRankHooks(MethodHooks):
    """``factorize:`` in a recipe. The student (usually ``kind: copy`` of the model to compress) has its linears
    and/or word embedding replaced by truncated-SVD factors (or tensor trains, or block terms) before its
    optimizer is made; the distillation loop then trains the factors against the unfactorised teacher (Noach &
    Goldberg 2020's recovery). The saved ``model/`` needs no conversion: its ``config.json`` records the factor
    shapes and it reloads as it is."""

    name = "low_rank"

    def __init__(self, cfg: FactorizeConfig):
        self.cfg = cfg
        self.report: dict | None = None

    def prepare_student(self, student: nn.Module) -> None:
        cfg = self.cfg
        self.report = factorize_model(student, rank=cfg.rank, energy=cfg.energy, keep=cfg.keep, modules=cfg.modules,
                                      block_diagonal=cfg.block_diagonal, embedding=cfg.embedding, kind=cfg.kind,
                                      tt_ranks=cfg.tt_ranks, in_factors=cfg.in_factors, out_factors=cfg.out_factors,
                                      tt_cores=cfg.tt_cores, bt_blocks=cfg.bt_blocks, bt_rank=cfg.bt_rank)
        before, after = self.report["params_before"], self.report["params_after"]
        log.info("factorize: %d layers%s, %d -> %d parameters (%.1f%%)", len(self.report["layers"]),
                 " + embedding" if self.report["embedding"] else "", before, after, 100 * after / max(before, 1))

    def after_training(self, output_dir: Path) -> None:
        if self.report is not None:  # ranks, kept energy and parameters per layer, for reports and benchmarks
            write_json_atomic(Path(output_dir) / "factorize.json", self.report)


def from_recipe(recipe) -> LowRankHooks | None:
    """Active when the recipe has a ``factorize`` section."""
    cfg = getattr(recipe, "factorize", None)
    return LowRankHooks(cfg) if cfg is not None else None


def metrics(recipe, student, output_dir, rescore) -> dict:
    """``metrics.json``'s ``student.factorize``: parameters before and after, and each factorised layer's rank
    (from ``factorize.json``, which :meth:`LowRankHooks.after_training` wrote)."""
    path = Path(output_dir) / "factorize.json"
    if not path.is_file():
        return {}
    report = read_json(path)
    part = {k: v for k, v in report.items() if k != "layers"}
    part["ranks"] = {name: layer.get("rank") for name, layer in report.get("layers", {}).items()}
    return {"factorize": part}
