"""Running students: an exported ONNX folder through ONNX Runtime, or a PyTorch folder, behind one interface.

Both :class:`OnnxClassifier` and :class:`TorchClassifier` take raw sentences (and second sentences for pair
tasks) and return logits as a NumPy array, tokenizing exactly as training did (the BiLSTM reads each sentence
without special tokens; transformers read the pair). :func:`predict` adds length bucketing for files: rows are
batched by length, so a batch pads to similar lengths, and answers come back in the input order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoTokenizer

from distilkit.core.errors import ExportError
from distilkit.core.saved_files import read_json
from distilkit.models.bilstm import encode_bilstm
from distilkit.models.inference import load_saved
from distilkit.models.transformer import encode_transformer


def encoder_for_type(model_type: str):
    """How a model of ``model_type`` reads its input (the BiLSTM: sentences separately, no special tokens)."""
    return encode_bilstm if model_type == "distilkit-bilstm" else encode_transformer


class OnnxClassifier:
    """An exported folder (``model.onnx``, tokenizer, ``config.json``, ``export.json``) in ONNX Runtime.

    Args:
        folder: The exported folder.
        threads: The session's ``intra_op_num_threads`` (``None``: ONNX Runtime's default, every core). Small
            models at batch 1 often run fastest on one thread; this never touches torch's thread setting.
        max_length: Tokens per sentence (default: the export's).
    """

    def __init__(self, folder: str | Path, *, threads: int | None = None, max_length: int | None = None):
        import onnxruntime as ort

        folder = Path(folder)
        if not (folder / "model.onnx").is_file():
            raise ExportError(f"{folder}: no model.onnx (export one with: distilkit export MODEL_DIR --onnx {folder})")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.config = AutoConfig.from_pretrained(folder).to_dict()  # labels filled in as PyTorch sees them
        report = read_json(folder / "export.json") if (folder / "export.json").is_file() else {}
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.max_length = max_length or report.get("max_length", 128)
        self.encode = encoder_for_type(self.config.get("model_type", ""))
        self.is_pair = bool(self.config.get("is_pair", report.get("is_pair", "input_ids_b" in self.inputs)))
        self.source, self.precision = report.get("source"), report.get("precision", "fp32")

    def feeds(self, texts: list[str], pairs: list[str] | None = None) -> dict:
        """One batch encoded as the graph's inputs (int64 arrays)."""
        batch = self.encode(self.tokenizer, texts, pairs, self.max_length)
        return {k: at_least_one_column(v).numpy().astype(np.int64) for k, v in batch.items() if k in self.inputs}

    def runner(self, texts: list[str], pairs: list[str] | None = None):
        """A call that runs one forward on this batch, encoded once (what latency timing repeats)."""
        feeds = self.feeds(texts, pairs)
        return lambda: self.session.run(["logits"], feeds)

    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            feeds = self.feeds(texts[i:i + batch_size], None if pairs is None else pairs[i:i + batch_size])
            out.append(self.session.run(["logits"], feeds)[0])
        return np.concatenate(out).astype(np.float32)


class TorchClassifier:
    """A ``save_pretrained`` folder in PyTorch (any distilkit student, quantized ones included).

    It runs on torch's process-wide threads as the caller set them (``torch.set_num_threads``): a library
    object must not change a setting the whole process shares.
    """

    def __init__(self, folder: str | Path, *, max_length: int = 128):
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ExportError(f"{folder}: not a saved model folder (no config.json, no model.onnx)")
        self.source = str(folder)
        self.model, self.tokenizer = load_saved(folder)
        self.config = self.model.config.to_dict()
        self.max_length = max_length
        self.encode = encoder_for_type(self.config.get("model_type", ""))
        self.is_pair = bool(self.config.get("is_pair", False))

    def runner(self, texts: list[str], pairs: list[str] | None = None):
        """A call that runs one forward on this batch, encoded once (what latency timing repeats)."""
        batch = self.encode(self.tokenizer, texts, pairs, self.max_length)

        def call():
            with torch.inference_mode():
                return self.model(**batch)
        return call

    def logits(self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = self.encode(self.tokenizer, texts[i:i + batch_size],
                                    None if pairs is None else pairs[i:i + batch_size], self.max_length)
                out.append(self.model(**batch).logits.float().numpy())
        return np.concatenate(out)


def at_least_one_column(ids: torch.Tensor) -> torch.Tensor:
    """``ids``, or one padding column when a batch of empty sentences encoded to zero columns (as PyTorch reads it)."""
    return ids if ids.shape[1] else torch.zeros((ids.shape[0], 1), dtype=ids.dtype)


def load_classifier(folder: str | Path, *, threads: int | None = None) -> OnnxClassifier | TorchClassifier:
    """An ONNX folder (it holds ``model.onnx``; ``threads``: its session's intra-op threads) or a PyTorch one."""
    folder = Path(folder)
    if (folder / "model.onnx").is_file():
        return OnnxClassifier(folder, threads=threads)
    return TorchClassifier(folder)


def predict(classifier, texts: list[str], pairs: list[str] | None = None, batch_size: int = 32) -> list[dict]:
    """Label and probabilities (or a score, for regression) per input, batched by length, in input order."""
    lengths = [len(a) + len(b or "") for a, b in zip(texts, pairs or [None] * len(texts))]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    logits = classifier.logits([texts[i] for i in order], None if pairs is None else [pairs[i] for i in order],
                               batch_size=batch_size)
    restored = np.empty_like(logits)
    restored[order] = logits
    names = classifier.config.get("id2label") or {}
    results = []
    for row in restored:
        if row.shape[0] == 1:
            results.append({"score": float(row[0])})
            continue
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        results.append({"label": str(names.get(str(best), names.get(best, best))),
                        "probabilities": {str(names.get(str(k), names.get(k, k))): round(float(p), 4)
                                          for k, p in enumerate(probs)}})
    return results
