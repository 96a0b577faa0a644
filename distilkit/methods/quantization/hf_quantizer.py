"""transformers integration of :mod:`distilkit.methods.quantization`: the quantizer that reloads ``quant_method:
distilkit`` checkpoints with ``from_pretrained``, and bitsandbytes quantization through transformers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification
from transformers.quantizers import HfQuantizer, register_quantization_config, register_quantizer
from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING
from transformers.utils.quantization_config import QuantizationConfigMixin

from distilkit.methods.quantization.layers import QUANT_METHOD, build_quantized_modules

BNB_SCHEMES = ("bnb8", "bnb4-nf4", "bnb4-fp4")


class DistilkitQuantizationConfig(QuantizationConfigMixin):
    """``quantization_config`` of a distilkit-quantized checkpoint (``quant_method: distilkit``)."""

    def __init__(self, modules: dict | None = None, backend: str = "fbgemm", rounding: str = "nearest", **kwargs):
        self.quant_method = QUANT_METHOD
        self.modules = modules or {}
        self.backend = backend
        self.rounding = rounding  # how the stored integers were rounded (provenance; loading ignores it)


class DistilkitQuantizer(HfQuantizer):
    """Loads distilkit-quantized checkpoints: rebuilds the quantized modules, then weights load as usual."""

    requires_calibration = True  # only pre-quantized checkpoints: quantize with quantize_model()

    def _process_model_before_weight_loading(self, model, **kwargs):
        build_quantized_modules(model, self.quantization_config.to_dict())
        return model

    def _process_model_after_weight_loading(self, model, **kwargs):
        return model

    def is_serializable(self, *args, **kwargs) -> bool:
        return True

    @property
    def is_trainable(self) -> bool:
        return False


def register() -> None:
    """Make ``quant_method: distilkit`` loadable by transformers (idempotent; run on ``import distilkit``)."""
    if QUANT_METHOD not in AUTO_QUANTIZATION_CONFIG_MAPPING:
        register_quantization_config(QUANT_METHOD)(DistilkitQuantizationConfig)
    if QUANT_METHOD not in AUTO_QUANTIZER_MAPPING:
        register_quantizer(QUANT_METHOD)(DistilkitQuantizer)


def quantize_bnb(src: str | Path, dst: str | Path, scheme: str, skip_modules=("classifier",)) -> nn.Module:
    """bitsandbytes 8-bit (LLM.int8(), Dettmers et al. 2022) or 4-bit nf4/fp4 (QLoRA, Dettmers et al. 2023)
    linear layers, via transformers; saves to ``dst`` and returns the quantized model.

    Embeddings stay float: bitsandbytes' quantized embeddings cannot be saved.
    """
    from transformers import BitsAndBytesConfig

    if scheme not in BNB_SCHEMES:
        raise ValueError(f"unknown bitsandbytes scheme {scheme!r}; valid: {', '.join(BNB_SCHEMES)}")
    if scheme == "bnb8":
        cfg = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(skip_modules))
    else:
        cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=scheme.split("-")[1],
                                 bnb_4bit_compute_dtype=torch.float32, llm_int8_skip_modules=list(skip_modules))
    model = AutoModelForSequenceClassification.from_pretrained(src, quantization_config=cfg)
    model.save_pretrained(dst)
    return model.eval()
