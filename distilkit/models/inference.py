"""Running a saved student: how to tokenize for it and how to score it on a task split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.core.errors import DamagedFileError
from distilkit.data.metrics import compute_metrics
from distilkit.models.bilstm import encode_bilstm
from distilkit.models.lora_layers import ADAPTER_DIR, apply_saved_adapter
from distilkit.models.transformer import encode_transformer


def encoder_for(model: torch.nn.Module):
    """How to tokenize texts for ``model``: the BiLSTM reads the two sentences separately."""
    return encode_bilstm if getattr(model.config, "model_type", "") == "distilkit-bilstm" else encode_transformer



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


def load_saved(path: str | Path, *, tokenizer: bool = True, adapter: bool = True):
    """``(model, tokenizer)`` from a folder distilkit saved, in eval mode; a missing or damaged folder (a
    truncated ``model.safetensors``, a zeroed ``config.json``) is a :class:`DamagedFileError` naming it.

    A LoRA adapter kept beside integer weights (``path/adapter/``, written by ``train.lora`` on a quantized
    student) is attached unless ``adapter=False`` (what the quantization conversion reads: the base alone)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise DamagedFileError(f"{path}: not a saved model folder (no config.json)")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        if adapter and (path / ADAPTER_DIR / "adapter_config.json").is_file():
            apply_saved_adapter(model, path / ADAPTER_DIR)
        return model, (AutoTokenizer.from_pretrained(path) if tokenizer else None)
    except Exception as exc:  # safetensors, JSON, tokenizers and transformers each raise their own types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise DamagedFileError(f"{path}: the saved model cannot be loaded ({type(exc).__name__}: {first}); it is "
                               "damaged or incomplete: rerun the step that wrote it") from None

