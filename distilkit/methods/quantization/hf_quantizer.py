"""transformers integration of :mod:`distilkit.methods.quantization`: reloading ``quant_method: distilkit``
checkpoints with ``from_pretrained`` (:mod:`distilkit.core.hf_quantizers`), and bitsandbytes quantization through
transformers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from distilkit.core.hf_quantizers import register_weight_format
from distilkit.methods.quantization.layers import QUANT_METHOD, build_quantized_modules

BNB_SCHEMES = ("bnb8", "bnb4-nf4", "bnb4-fp4")


def register() -> None:
    """Make ``quant_method: distilkit`` loadable by transformers (idempotent; run on ``import distilkit``): the
    quantized modules are rebuilt empty, then the stored integers and scales load into them as usual."""
    register_weight_format(QUANT_METHOD, name="DistilkitQuantization", before_weights=build_quantized_modules,
                           fields={"backend": "fbgemm", "rounding": "nearest"},  # rounding: provenance only
                           serializable=True, trainable=False)


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
