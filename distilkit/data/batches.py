"""Batching shared by the fine-tuning and distillation loops: sampling, collation and prediction.

Shuffling uses :class:`EpochShuffleSampler`, whose order depends only on ``(seed, epoch)``. That is what
makes resuming exact: after a restart the same epoch yields the same order and we skip the batches already
seen, instead of relying on a data-loader RNG that a checkpoint may not capture.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(n)`` seeded by ``seed + epoch`` (Accelerate calls :meth:`set_epoch`)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


class LengthGroupedSampler(EpochShuffleSampler):
    """Shuffled like :class:`EpochShuffleSampler`, but consecutive ``batch_size`` indices have similar lengths.

    Each epoch's permutation is cut into mega-batches of ``batch_size * group_batches`` examples, each sorted by
    length and cut into batches, and the batches are shuffled (the ``group_by_length`` of HF's Trainer). Padding
    shrinks to a few tokens per batch: on SST-2 (batch 32, max_length 64) 2.7x fewer tokens per example, 1.9x
    the fine-tuning throughput. The order is still a pure function of ``(seed, epoch)``, so resuming stays exact.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_batches: int = 50):
        super().__init__(len(lengths), seed)
        self.lengths, self.batch_size, self.group_batches = lengths, batch_size, group_batches

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=generator).tolist()
        size = self.batch_size * self.group_batches
        batches = []
        for start in range(0, self.n, size):
            group = sorted(order[start:start + size], key=self.lengths.__getitem__)
            batches += [group[i:i + self.batch_size] for i in range(0, len(group), self.batch_size)]
        # A short last batch would land in the middle; keep it last, as a plain shuffle does.
        tail = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()] + tail
        return iter([i for batch in shuffled for i in batch])


def text_lengths(rows: list[dict]) -> list[int]:
    """Characters per example (sentence a + b): a tokenizer-free length for :class:`LengthGroupedSampler`."""
    return [len(row["text_a"] or "") + len(row.get("text_b") or "") for row in rows]


def missing_label(problem_type: str) -> float | int:
    """The value that marks an unlabelled row in a label tensor (ignored by the hard-label loss)."""
    return float("nan") if problem_type == "regression" else -100


def make_collate(encode: Callable, tokenizer, max_length: int, problem_type: str) -> Callable[[list[dict]], dict]:
    """Build a collate function: tokenize a batch of normalized rows for one model.

    The batch keeps ``ids`` (for audits) and the raw ``texts``/``text_pairs`` so an online teacher can
    label the very same examples; ``teacher_logits`` is included when the rows carry it.
    """
    regression = problem_type == "regression"
    empty = missing_label(problem_type)

    def collate(rows: list[dict]) -> dict:
        texts = [row["text_a"] for row in rows]
        pairs = None if rows[0]["text_b"] is None else [row["text_b"] for row in rows]
        batch = dict(encode(tokenizer, texts, pairs, max_length))
        labels = [empty if row.get("label") is None else row["label"] for row in rows]
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if regression else torch.long)
        if "teacher_logits" in rows[0]:
            batch["teacher_logits"] = torch.tensor([row["teacher_logits"] for row in rows], dtype=torch.float32)
        batch["ids"] = [row["id"] for row in rows]
        batch["texts"], batch["text_pairs"] = texts, pairs
        return batch

    return collate


def model_inputs(batch: dict) -> dict:
    """Only the tensors a model's forward takes (drop labels, logits, ids and raw texts)."""
    skip = {"labels", "teacher_logits", "ids", "texts", "text_pairs"}
    return {key: value for key, value in batch.items() if key not in skip}


def train_loader(rows: list[dict], collate: Callable, batch_size: int, seed: int,
                 group_by_length: bool = False) -> DataLoader:
    """A shuffling loader whose order is a pure function of ``(seed, epoch)``; with ``group_by_length``,
    batches hold examples of similar length (:class:`LengthGroupedSampler`).

    The loader gets a private generator: otherwise creating an iterator draws a base seed from the global
    torch RNG, and a resumed run (which creates one more iterator than the original did at that point)
    would see different dropout masks from then on.
    """
    sampler = (LengthGroupedSampler(text_lengths(rows), batch_size, seed) if group_by_length
               else EpochShuffleSampler(len(rows), seed))
    return DataLoader(rows, batch_size=batch_size, sampler=sampler,
                      collate_fn=collate, generator=torch.Generator().manual_seed(seed))


def eval_loader(rows: list[dict], collate: Callable, batch_size: int) -> DataLoader:
    """An in-order loader for evaluation."""
    return DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=collate)


def optimizer_steps_per_epoch(num_batches: int, grad_accum: int) -> int:
    """Optimizer steps in an epoch of ``num_batches`` batches with gradient accumulation."""
    return math.ceil(num_batches / grad_accum)


def predict(accelerator, model, loader) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a prepared eval loader, gathered from all processes without duplicates."""
    model.eval()
    all_logits, all_labels = [], []
    with torch.inference_mode():
        for batch in loader:
            logits = model(**model_inputs(batch)).logits.float()
            logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
            all_logits.append(logits.cpu().numpy())
            all_labels.append(labels.cpu().numpy())
    model.train()
    return np.concatenate(all_logits), np.concatenate(all_labels)
