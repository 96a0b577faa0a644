"""Deep Compression in the recipe program: prune and share while the student distils, encode after training."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from distilkit.core.atomic import atomic_directory
from distilkit.core.errors import RecipeError
from distilkit.core.faults import fault_point
from distilkit.core.method_hooks import MethodHooks
from distilkit.core.saved_files import read_json
from distilkit.core.sparsity_schedule import cubic_sparsity, update_step
from distilkit.methods.deep_compression.config import DeepCompressionConfig
from distilkit.methods.deep_compression.kmeans import (
    Clusters,
    share_weights,
    snap_to_centroids,
    tie_gradients,
)
from distilkit.methods.deep_compression.magnitude import (
    apply_masks,
    magnitude_masks,
    regularization,
    sparsity_of,
    target_parameters,
)
from distilkit.methods.deep_compression.storage import QUANT_METHOD, encode_modules
from distilkit.models.inference import load_saved


class DeepCompressionHooks(MethodHooks):
    """``deep_compression:`` in a recipe. The student (usually ``kind: copy`` of the model to compress) is
    pruned as the schedule says and kept pruned after every optimizer step; shared weights train through
    tied gradients; after training the best student is encoded (sparse, shared, Huffman) in ``output_dir/model``
    and the float one moves to ``output_dir/model-float``."""

    name = "deep_compression"

    def __init__(self, cfg: DeepCompressionConfig, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        self.params: dict[str, nn.Parameter] = {}
        self.masks: dict[str, torch.Tensor] | None = None
        self.sparsity, self.shared = 0.0, False
        self.clusters: dict[str, Clusters] = {}

    def prepare_student(self, student: nn.Module) -> None:
        cfg = self.cfg
        self.params = target_parameters(student, cfg.skip_modules, cfg.embeddings)
        if not self.params:
            raise RecipeError(f"deep_compression: no linear, LSTM or embedding weights in {type(student).__name__} "
                              f"outside skip_modules={cfg.skip_modules}")
        if cfg.prune is not None and cfg.prune.start == 0 and cfg.prune.schedule == "one_shot":
            self._prune_to(cfg.prune.sparsity)
        if cfg.share is not None and cfg.share.start == 0:
            self._share()

    def after_step(self, student: nn.Module, step: int, total_steps: int) -> None:
        prune, share = self.cfg.prune, self.cfg.share
        if prune is not None:
            self._follow_schedule(step, total_steps)
        if share is not None and not self.shared and step >= share.start * total_steps:
            self._share()  # a resumed run re-reads the codebooks from the already shared weights
        elif self.shared:
            for name, param in self.params.items():
                snap_to_centroids(param, self.clusters[name])

    def _follow_schedule(self, step: int, total_steps: int) -> None:
        prune = self.cfg.prune
        if prune.schedule == "one_shot":
            target = prune.sparsity if step >= prune.start * total_steps else 0.0
        else:  # masks change only every `every` steps: a resumed run recomputes the same ones
            last_update = update_step(step, total_steps, prune.every, prune.end)
            target = cubic_sparsity(last_update, total_steps, prune.sparsity, start=prune.start, end=prune.end)
        if target > self.sparsity or (self.masks is None and target > 0):
            self._prune_to(target)
        elif self.masks is not None:
            apply_masks(self.params, self.masks)

    def final_form(self, step: int, total_steps: int) -> bool:
        prune, share = self.cfg.prune, self.cfg.share
        if prune is not None and step < (prune.end if prune.schedule == "gradual" else prune.start) * total_steps:
            return False
        return share is None or self.shared

    def extra_losses(self, student: nn.Module, batch: dict | None = None, outputs=None) -> dict[str, torch.Tensor]:
        prune = self.cfg.prune
        if prune is None or prune.regularization is None:
            return {}
        return {prune.regularization: prune.regularization_weight * regularization(self.params, prune.regularization)}

    def after_training(self, output_dir: Path) -> None:
        encode_output(output_dir, self.cfg)

    # ----------------------------------------------------------------------------------------------------
    def _prune_to(self, sparsity: float) -> None:
        self.masks = magnitude_masks(self.params, sparsity, self.cfg.prune.scope)
        apply_masks(self.params, self.masks)
        self.sparsity = sparsity

    def _share(self) -> None:
        share = self.cfg.share
        for name, param in self.params.items():
            if param.numel() < 2 ** share.bits:  # (pruned below that, its few values are its codebook)
                raise RecipeError(f"deep_compression.share.bits: {name} has {param.numel()} weights, fewer than "
                                  f"its {2 ** share.bits} clusters; lower bits or add it to skip_modules")
            index = share_weights(param, share.bits, share.init, share.iterations, self.seed)
            self.clusters[name] = Clusters(index, 2 ** share.bits)
            tie_gradients(param, self.clusters[name])
        self.shared = True


def encode_output(out: Path, cfg: DeepCompressionConfig) -> None:
    """In a finished run: encode ``out/model`` into ``out/model`` and keep the float one as ``out/model-float``.

    Idempotent: a resumed run whose ``model`` is already encoded (a crash before ``metrics.json``) keeps it.
    """
    config = read_json(out / "model" / "config.json")
    if (config.get("quantization_config") or {}).get("quant_method") == QUANT_METHOD and (out / "model-float").is_dir():
        return
    model, _ = load_saved(out / "model", tokenizer=False)
    params = target_parameters(model, cfg.skip_modules, cfg.embeddings)
    if cfg.huffman and cfg.prune is None and cfg.share is None:
        # small tensors (a 2x64 classifier) have few distinct values without being shared: not evidence
        codable = [n for n, p in params.items()
                   if (p == 0).float().mean() >= 0.05 or (p.numel() > 1024 and p.unique().numel() <= 256)]
        if not codable:
            raise RecipeError("deep_compression.huffman: the model has neither sparse nor shared weights to code; "
                              "add a prune or share stage before it")
    modules: dict[str, list[str]] = {}
    for full in params:
        module, _, pname = full.rpartition(".")
        modules.setdefault(module, []).append(pname)
    staged = out / "model-encoded"
    with atomic_directory(staged) as tmp:
        encode_modules(model, modules, cfg.huffman)
        model.save_pretrained(tmp)
        for path in (out / "model").iterdir():  # tokenizer, recipe: everything but the weights and config
            if path.is_file() and path.suffix not in (".safetensors", ".bin") and path.name != "config.json":
                shutil.copy2(path, tmp / path.name)
    fault_point("deep_compression.encoded")
    shutil.rmtree(out / "model-float", ignore_errors=True)
    os.replace(out / "model", out / "model-float")
    os.replace(staged, out / "model")


def from_recipe(recipe) -> DeepCompressionHooks | None:
    """Active when the recipe has a ``deep_compression`` section."""
    dc = recipe.deep_compression
    return DeepCompressionHooks(dc, recipe.train.seed) if dc is not None else None


def metrics(recipe, student, output_dir, rescore) -> dict:
    """``metrics.json``: the encoded model's scores as reloaded (the float ones kept beside them) and
    ``student.deep_compression``: the section, the reached sparsity and the most distinct values of a weight."""
    dc = recipe.deep_compression
    if dc is None:
        return {}
    weights = target_parameters(student, dc.skip_modules, dc.embeddings)
    return {**rescore(), "deep_compression": {
        **dc.model_dump(), "sparsity": round(sparsity_of(weights), 4),
        "max_distinct_values": max(int(p.unique().numel()) for p in weights.values())}}
