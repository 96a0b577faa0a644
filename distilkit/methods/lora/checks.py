"""LoRA recovery's recipe rules and preflight (torch-free). Other methods' sections are read with ``getattr``."""

from __future__ import annotations

from distilkit.core import plugins
from distilkit.core.recipe_rules import Rule
from distilkit.models.architectures import lora_target_problem


def _lora(recipe) -> bool:
    return recipe.train.lora is not None


def _quantize(recipe):
    return getattr(recipe, "quantize", None)


CONFLICTS = (
    Rule("train.lora", "student.kind",
         lambda r, t: _lora(r) and r.student.kind == "bilstm",
         "LoRA adapts the linear layers of a transformer student (query, key, value, dense); the BiLSTM has none"),
    Rule("train.lora", "quantize.qat",
         lambda r, t: _lora(r) and _quantize(r) is not None and not r.quantize.qat
         and not (r.quantize.linear or "").startswith("bnb"),
         "adapters trained on float weights that are quantized afterwards never see the quantization error they "
         "should recover; use qat: true (frozen weights trained through the integer grid)"),
    Rule("train.lora", "quantize.linear",
         lambda r, t: _lora(r) and _quantize(r) is not None and (r.quantize.linear or "").startswith("bnb"),
         "LoRA recovery keeps adapters beside distilkit's integer layers; bitsandbytes layers are not supported"),
    Rule("train.lora", "deep_compression",
         lambda r, t: _lora(r) and getattr(r, "deep_compression", None) is not None,
         "merging adapters would refill pruned weights and break the shared codebooks; recover in a later stage"),
    Rule("train.lora", "student.blocks",
         lambda r, t: _lora(r) and getattr(r.student, "blocks", None) is not None,
         "block pruning prunes the weights while they train; LoRA freezes them; prune first, recover after"),
    Rule("train.lora", "factorize",
         lambda r, t: _lora(r) and getattr(r, "factorize", None) is not None,
         "the factors are what distillation recovers here; adapters beside LowRankLinear are not supported"),
)


def preflight(recipe, teacher_exists: bool = True) -> list[str]:
    """``train.lora`` needs peft, and its ``target_modules`` must name modules of the (first) teacher's
    architecture: every student LoRA adapts (copy, pruned, linear_attention, transformer) is that network or
    its architecture (the run would otherwise stop after the teacher has labelled everything)."""
    cfg = recipe.train.lora
    if cfg is None:
        return []
    problems = [] if plugins.importable("peft") else ['train.lora: needs peft; pip install -e ".[peft]"']
    if recipe.student.kind != "bilstm" and teacher_exists:
        problem = lora_target_problem("train.lora.target_modules", cfg.target_modules, recipe.primary_teacher.model)
        problems += [problem] if problem else []
    return problems
