"""LoRA recovery in the recipe program (``train.lora``): a compressed student keeps its compressed weights
frozen and recovers by training low-rank adapters against the teacher.

LoRA: Hu et al. 2021, eq. 3, ``h = W0 x + (alpha / r) B A x`` with ``W0`` frozen. Anchor: PEFT's LoftQ
(Li et al. 2023) recovers a 2-bit DeBERTa-v3-base to 88.0 MNLI accuracy with rank-32 adapters on the frozen
quantized weights.

What trains: the adapters on ``target_modules`` and every parameter of ``modules_to_save`` (by default the
classification head, which the quantization leaves in float). Everything else -- embeddings, LayerNorms,
the pooler's own weight, every pruned or (fake-)quantized weight -- is frozen.

Order (``distilkit.run.methods.METHODS`` lists ``lora`` last): ``prepare_student`` runs after pruning built
the smaller student and after QAT turned its linears into fake-quantized ones, so the adapters sit beside the
compressed weights (and are themselves never quantized); ``after_training`` runs after the quantization
converted ``model/`` to integers.

After training (:meth:`LoraHooks.after_training`):

* float students (pruned, copies, linear attention): the adapters are merged, ``W = W0 + alpha / r * B A``,
  and ``model/`` is an ordinary model of the same architecture (no extra latency, no peft needed to load);
* quantized students (``quantize: {qat: true}`` on a distilkit grid): merging would move the weights off the
  integer grid (re-quantizing them would undo the recovery), so the adapters are kept beside the integer
  weights as a PEFT adapter folder ``model/adapter/``; :func:`distilkit.models.inference.load_saved` attaches
  it when it loads ``model/`` (the same forward as in training, so the reloaded logits equal the in-memory
  ones). ``peft.PeftModel.from_pretrained(model-float, model/adapter)`` reads it too.

``model/lora.json`` records which modules have adapters, what trained and the parameter counts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from distilkit.core.atomic import atomic_directory, write_json_atomic
from distilkit.core.method_hooks import MethodHooks
from distilkit.core.saved_files import read_json
from distilkit.methods.lora.config import LoraRecoveryConfig
from distilkit.models.lora_layers import (
    ADAPTER_DIR,
    attach_lora,
    freeze_for_lora,
    merge_state,
    save_adapter,
    split_lora_state,
)

WEIGHTS = "model.safetensors"


def prepare_lora_student(student: nn.Module, cfg: LoraRecoveryConfig) -> dict:
    """Attach adapters to ``student`` (in place), freeze everything but them and ``cfg.modules_to_save``.

    Returns:
        ``{"modules": [...], "trainable_parameters": n, "total_parameters": N, "trains": [...]}``.
    """
    names = attach_lora(student, list(cfg.target_modules), cfg.r, cfg.alpha, cfg.dropout)
    counts = freeze_for_lora(student, list(cfg.modules_to_save))
    trains = ["LoRA adapters (lora_A, lora_B)", *(f"{m} (all weights)" for m in cfg.modules_to_save)]
    return {"modules": names, **counts, "trains": trains, "r": cfg.r, "alpha": cfg.alpha}


def finish_lora_output(out: Path, cfg: LoraRecoveryConfig, report: dict | None = None) -> str:
    """Turn ``out/model`` (saved with adapter keys beside its weights) into its final form.

    Float ``model/``: adapters merged into the weights. Quantized ``model/`` (the quantization conversion
    already ran, keeping the float weights and adapters in ``model-float/``): the adapters go to
    ``model/adapter/`` as a PEFT adapter folder. Idempotent (a resumed run that crashed after this keeps it).

    Returns:
        ``"merged"``, ``"adapter"`` or ``"done"`` (nothing left to do).
    """
    out = Path(out)
    model_dir = out / "model"
    if not model_dir.is_dir() and (out / "model-merged").is_dir():  # a crash between the two renames below
        os.replace(out / "model-merged", model_dir)
        return "done"
    config = read_json(model_dir / "config.json")
    quantized = bool((config.get("quantization_config") or {}).get("quant_method"))
    source = out / "model-float" if quantized else model_dir
    if quantized and (model_dir / ADAPTER_DIR / "adapter_config.json").is_file():
        return "done"
    state = load_file(str(source / WEIGHTS))
    base, pairs = split_lora_state(state)
    if not pairs:
        return "done"
    scaling = cfg.alpha / cfg.r
    if quantized:
        save_adapter(model_dir / ADAPTER_DIR, pairs, r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout,
                     base_model=str(model_dir))
        kept = "adapter"
    else:
        with atomic_directory(out / "model-merged") as tmp:
            for path in model_dir.iterdir():
                if path.is_file() and path.name != WEIGHTS:
                    shutil.copy2(path, tmp / path.name)
            save_file(merge_state(base, pairs, scaling), str(tmp / WEIGHTS), metadata={"format": "pt"})
        shutil.rmtree(out / "model-lora", ignore_errors=True)
        os.replace(model_dir, out / "model-lora")  # the unmerged student, for inspection
        os.replace(out / "model-merged", model_dir)
        kept = "merged"
    write_json_atomic(model_dir / "lora.json", {**(report or {}), "adapters": kept,
                                                 "modules": sorted(pairs), "scaling": scaling})
    return kept


class LoraHooks(MethodHooks):
    """``train.lora`` in a recipe: frozen compressed student, trained LoRA adapters (see the module docstring)."""

    name = "lora"

    def __init__(self, cfg: LoraRecoveryConfig):
        self.cfg = cfg
        self.report: dict | None = None

    def prepare_student(self, student: nn.Module) -> None:
        self.report = prepare_lora_student(student, self.cfg)

    def after_training(self, output_dir: Path) -> None:
        finish_lora_output(Path(output_dir), self.cfg, self.report)


def from_recipe(recipe) -> LoraHooks | None:
    """Active when the recipe has a ``train.lora`` section."""
    cfg = getattr(recipe.train, "lora", None)
    return LoraHooks(cfg) if cfg is not None else None
