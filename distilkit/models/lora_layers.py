"""LoRA adapters beside a model's own layers, saved and loaded as PEFT adapter folders.

LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3): a frozen linear ``W0``
computes ``h = W0 x + (alpha / r) B A x`` with ``A`` (``r x in``, Kaiming-uniform) and ``B`` (``out x r``,
zero, so training starts from the unchanged model).

Why not peft's ``LoraModel`` here: peft wraps each target in a ``lora.Linear`` whose state-dict keys become
``<name>.base_layer.weight``, so the student saved mid-run by ``save_pretrained`` would no longer reload as
the model it is, and a quantized student's integer ``QuantLinear`` (not an ``nn.Linear``) has no peft layer.
:func:`attach_lora` instead hangs ``lora_A``/``lora_B`` *under* the target module and adds their term with a
forward hook: the base keys stay exactly as they were (``from_pretrained`` and the quantization conversion
read them unchanged; the extra ``<name>.lora_A.weight`` keys are ignored there), and the same hook works on
any module with ``in_features``/``out_features`` -- a float ``nn.Linear``, a QAT ``FakeQuantLinear`` or an
integer ``QuantLinear``. The files on disk are peft's own adapter format (``adapter_config.json`` +
``adapter_model.safetensors`` with ``base_model.model.<name>.lora_A.weight`` keys), so
``peft.PeftModel.from_pretrained(float_model, folder)`` reads them too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from distilkit.core.atomic import atomic_directory
from distilkit.core.errors import DamagedFileError, RecipeError

ADAPTER_DIR = "adapter"
"""Where a saved model keeps adapters that are not merged (a quantized student's): ``model/adapter/``."""

_PEFT_PREFIX = "base_model.model."


def matches(name: str, targets: list[str]) -> bool:
    """Whether module ``name`` is one of ``targets`` (a full name, or its last dotted parts), as peft's list
    form of ``target_modules`` matches."""
    return any(name == t or name.endswith("." + t) for t in targets)


def _lora_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """``W0 x`` (the module's own output) ``+ scaling * B A dropout(x)``; a module-level function so models
    with adapters deep-copy and pickle."""
    x = args[0]
    update = module.lora_B(module.lora_A(module.lora_dropout(x.to(module.lora_A.weight.dtype))))
    return output + (module.lora_scaling * update).to(output.dtype)


def attach_lora(model: nn.Module, targets: list[str], r: int, alpha: float, dropout: float = 0.0,
                init: bool = True) -> list[str]:
    """Give every module of ``model`` named by ``targets`` a LoRA adapter (in place).

    Args:
        model: Any model; a target must have ``in_features`` and ``out_features`` (a linear layer).
        targets: Module names or their last dotted parts.
        r: Rank; alpha: scale numerator (the update is ``alpha / r * B A``); dropout: on the adapter input.
        init: ``A`` Kaiming-uniform and ``B`` zero (peft's default); ``False`` leaves them to be loaded.

    Returns:
        The names of the modules that got an adapter.

    Raises:
        RecipeError: no module matches, or a match is not a linear layer (the key is ``train.lora``'s).
    """
    names = [name for name, module in model.named_modules() if name and matches(name, targets)
             and not name.split(".")[-1].startswith("lora_")]
    if not names:
        raise RecipeError(f"train.lora.target_modules: {targets} match no module of {type(model).__name__}")
    for name in names:
        module = model.get_submodule(name)
        if not (hasattr(module, "in_features") and hasattr(module, "out_features")):
            raise RecipeError(f"train.lora.target_modules: '{name}' is a {type(module).__name__}, not a linear layer")
        if hasattr(module, "lora_A"):
            raise RecipeError(f"train.lora: '{name}' already has a LoRA adapter")
        device = next((p.device for p in module.parameters(recurse=False)), torch.device("cpu"))
        module.lora_A = nn.Linear(module.in_features, r, bias=False, device=device)
        module.lora_B = nn.Linear(r, module.out_features, bias=False, device=device)
        module.lora_dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        module.lora_scaling = alpha / r
        if init:
            nn.init.kaiming_uniform_(module.lora_A.weight, a=math.sqrt(5))
            nn.init.zeros_(module.lora_B.weight)
        module.register_forward_hook(_lora_hook)
    return names


def lora_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Modules of ``model`` that carry an adapter, by name."""
    return {name: m for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "lora_scaling")}


def freeze_for_lora(model: nn.Module, modules_to_save: list[str]) -> dict[str, int]:
    """Freeze every parameter except the adapters and ``modules_to_save``; return the trainable and total
    parameter counts (adapters included)."""
    for name, param in model.named_parameters():
        owner = f".{name.rsplit('.', 1)[0]}."  # a module_to_save is any dotted run of the owner's name parts
        param.requires_grad = ".lora_A." in name or ".lora_B." in name or any(
            f".{m}." in owner for m in modules_to_save)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "total_parameters": sum(p.numel() for p in model.parameters())}


def split_lora_state(state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """A saved state dict -> ``(base keys, {module name: (A, B)})``."""
    base = {k: v for k, v in state.items() if ".lora_A." not in k and ".lora_B." not in k}
    pairs = {k[: -len(".lora_A.weight")]: (v, state[k.replace(".lora_A.", ".lora_B.")])
             for k, v in state.items() if k.endswith(".lora_A.weight")}
    return base, pairs


def merge_state(base: dict[str, torch.Tensor], pairs: dict, scaling: float) -> dict[str, torch.Tensor]:
    """``W = W0 + scaling * B A`` for every adapter (Hu et al. eq. 3 folded into the weight: no extra latency)."""
    merged = dict(base)
    for name, (a, b) in pairs.items():
        key = f"{name}.weight"
        merged[key] = (base[key].float() + scaling * (b.float() @ a.float())).to(base[key].dtype).contiguous()
    return merged


def save_adapter(folder: str | Path, pairs: dict, *, r: int, alpha: float, dropout: float,
                 base_model: str = "") -> None:
    """Write ``pairs`` (``{module: (A, B)}``) as a PEFT LoRA adapter folder, atomically."""
    from peft import LoraConfig

    targets = sorted(pairs)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        base_model_name_or_path=base_model or None)
    tensors = {}
    for name, (a, b) in pairs.items():
        tensors[f"{_PEFT_PREFIX}{name}.lora_A.weight"] = a.detach().cpu().contiguous()
        tensors[f"{_PEFT_PREFIX}{name}.lora_B.weight"] = b.detach().cpu().contiguous()
    with atomic_directory(folder) as tmp:
        config.save_pretrained(str(tmp))
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})


def apply_saved_adapter(model: nn.Module, folder: str | Path) -> list[str]:
    """Attach the LoRA adapter saved in ``folder`` (PEFT format, :func:`save_adapter`) to ``model`` in place:
    the reloaded model computes ``base(x) + alpha / r * B A x`` as the trained one did.

    Raises:
        DamagedFileError: the folder's config or weights cannot be read, or do not fit the model.
    """
    folder = Path(folder)
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "adapter_model.safetensors"))
    except Exception as exc:  # JSON and safetensors raise their own types
        raise DamagedFileError(f"{folder}: the LoRA adapter cannot be read ({type(exc).__name__}: {exc})") from None
    if config.get("peft_type") != "LORA":
        raise DamagedFileError(f"{folder}: adapter_config.json peft_type {config.get('peft_type')!r} is not LORA")
    pairs = {k[len(_PEFT_PREFIX): -len(".lora_A.weight")]: k for k in tensors if k.endswith(".lora_A.weight")}
    try:
        attach_lora(model, list(pairs), int(config["r"]), float(config["lora_alpha"]), 0.0, init=False)
        with torch.no_grad():
            for name, key in pairs.items():
                module = model.get_submodule(name)
                module.lora_A.weight.copy_(tensors[key])
                module.lora_B.weight.copy_(tensors[key.replace(".lora_A.", ".lora_B.")])
    except (RecipeError, RuntimeError, AttributeError, KeyError) as exc:
        raise DamagedFileError(f"{folder}: the LoRA adapter does not fit the model beside it ({exc})") from None
    return sorted(pairs)
