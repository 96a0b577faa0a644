"""Vocabulary trimming: keep only the WordPiece tokens a transfer set uses (``student.vocab``).

A student distilled from BERT usually inherits its 30,522-token vocabulary, and the word-embedding table is
then most of the student (a 30,522 x 384 float table alone is 47 MB). The transfer set uses a small part of
it, so, as TextPruner's ``VocabularyPruner`` does, we keep the rows of the tokens the transfer set uses plus
a safety net, and rebuild the tokenizer over exactly those tokens, in their original order.

The safety net is every special token and every printable-ASCII character, alone and as a ``##``
continuation: greedy WordPiece can then still spell any ASCII word, so a word missing from the kept
vocabulary is read as pieces rather than ``[UNK]``. Non-ASCII words whose pieces were all dropped become
``[UNK]``.

Why tokenization is unchanged on text whose tokens were all kept: WordPiece takes the longest vocabulary
prefix at each step. The token it took in the full vocabulary is still there, and every longer candidate
was already absent, so the trimmed vocabulary makes the same choice at every step.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn
from transformers import BertTokenizer

from distilkit.core.errors import RecipeError

# Config attributes that hold token ids and must follow the new numbering.
_TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


def count_tokens(tokenizer, texts_a: Sequence[str | None], texts_b: Sequence[str | None] | None = None,
                 batch_size: int = 1024) -> Counter:
    """How often each token id occurs in the transfer set (special tokens not added).

    Args:
        tokenizer: The student's tokenizer.
        texts_a: First sentences (``None`` or empty entries are skipped).
        texts_b: Second sentences of pair tasks, or ``None``.
        batch_size: Texts per tokenizer call (fast tokenizers parallelise within a batch).

    Returns:
        A :class:`collections.Counter` of token id -> occurrences. Texts are not truncated: tokens past
        ``max_length`` are cheap to keep and make the tokenizer useful on longer inputs.
    """
    counts: Counter = Counter()
    texts = [t for t in [*texts_a, *(texts_b or [])] if t]
    for start in range(0, len(texts), batch_size):
        # verbose=False: long texts would otherwise warn that they exceed model_max_length.
        ids = tokenizer(texts[start:start + batch_size], add_special_tokens=False, verbose=False,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        for row in ids:
            counts.update(row)
    return counts


def _safety_net(tokenizer) -> set[int]:
    """Ids of special tokens, ``[UNK]`` and printable-ASCII characters alone or as ``##`` continuations."""
    vocab = tokenizer.get_vocab()
    keep = set(tokenizer.all_special_ids)
    if tokenizer.unk_token_id is not None:
        keep.add(tokenizer.unk_token_id)
    for char in map(chr, range(33, 127)):  # printable ASCII without the space, which never is a token
        for token in (char, "##" + char):
            if token in vocab:
                keep.add(vocab[token])
    return keep


def kept_tokens(tokenizer, counts: Counter, max_tokens: int | None = None, min_count: int = 1) -> list[int]:
    """Original ids to keep, in original id order.

    Always kept: special tokens, ``[UNK]``, and printable-ASCII characters alone and as ``##`` pieces (see
    the module docstring). Then the most frequent transfer-set tokens with at least ``min_count``
    occurrences, ties broken by id so the choice is deterministic on every process.

    Args:
        tokenizer: The tokenizer the counts were made with.
        counts: Token id -> occurrences (:func:`count_tokens`).
        max_tokens: Total size of the kept vocabulary, safety net included; ``None`` keeps every token with
            ``min_count`` occurrences.
        min_count: Fewest occurrences for a seen token to be kept.

    Returns:
        Sorted original ids.

    Raises:
        RecipeError: ``max_tokens`` is smaller than the safety net (naming ``student.vocab.max_tokens``).
    """
    keep = _safety_net(tokenizer)
    if max_tokens is not None and max_tokens < len(keep):
        raise RecipeError(f"student.vocab.max_tokens: {max_tokens} is smaller than the {len(keep)} special and "
                          f"ASCII-character tokens that are always kept; use at least {len(keep)}")
    ranked = sorted((-n, i) for i, n in counts.items() if n >= min_count and i not in keep)
    room = len(ranked) if max_tokens is None else max_tokens - len(keep)
    keep.update(i for _, i in ranked[:room])
    return sorted(keep)


def _check_wordpiece(tokenizer) -> dict:
    """The backend pipeline of a BERT WordPiece tokenizer as JSON, or a :class:`RecipeError`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    parts = {key: (spec.get(key) or {}).get("type") for key in ("model", "normalizer", "pre_tokenizer")}
    if parts != {"model": "WordPiece", "normalizer": "BertNormalizer", "pre_tokenizer": "BertPreTokenizer"}:
        raise RecipeError(f"student.vocab: trimming supports BERT WordPiece tokenizers; {type(tokenizer).__name__} "
                          f"has {parts}")
    if spec["model"].get("continuing_subword_prefix") != "##":
        raise RecipeError("student.vocab: trimming supports WordPiece with the '##' continuation prefix")
    return spec


def trimmed_tokenizer(tokenizer, keep_ids: Sequence[int]):
    """A BERT WordPiece tokenizer over exactly ``keep_ids`` (new id = position in ``keep_ids``).

    The original's normalizer settings (lowercasing, accents, Chinese characters), special tokens and
    ``model_max_length`` carry over; the rebuilt pipeline (normalizer, pre-tokenizer, decoder, WordPiece
    settings) is compared with the original and any difference is an error rather than a silently different
    tokenization.

    Raises:
        RecipeError: the tokenizer is not a BERT WordPiece one, or its pipeline cannot be reproduced.
    """
    spec = _check_wordpiece(tokenizer)
    old_vocab = {i: token for token, i in tokenizer.get_vocab().items()}
    vocab = {old_vocab[i]: new for new, i in enumerate(keep_ids)}
    norm = spec["normalizer"]
    names = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
    special = {name: str(getattr(tokenizer, name)) for name in names if getattr(tokenizer, name, None)}
    # transformers 5 ignores ``vocab_file`` (silently building a 5-token vocabulary): pass the dict itself.
    new = BertTokenizer(vocab=vocab, do_lower_case=norm["lowercase"],
                        tokenize_chinese_chars=norm["handle_chinese_chars"], strip_accents=norm["strip_accents"],
                        model_max_length=tokenizer.model_max_length, padding_side=tokenizer.padding_side,
                        truncation_side=tokenizer.truncation_side, **special)
    extra = [t for t in tokenizer.all_special_tokens if t not in new.all_special_tokens and t in vocab]
    if extra:
        new.add_special_tokens({"additional_special_tokens": extra})
    rebuilt = json.loads(new.backend_tokenizer.to_str())
    # Settings BertTokenizer cannot take are compared, not patched in: a reloaded BertTokenizer rebuilds its
    # pipeline from the constructor arguments, so a patch would not survive save_pretrained.
    for key in ("normalizer", "pre_tokenizer", "decoder", "model"):
        ours, theirs = rebuilt.get(key) or {}, spec.get(key) or {}
        if key == "model":
            ours, theirs = ({k: v for k, v in d.items() if k != "vocab"} for d in (ours, theirs))
        if ours != theirs:
            raise RecipeError(f"student.vocab: cannot reproduce the {key} of {type(tokenizer).__name__} "
                              f"({theirs}) in a trimmed BERT tokenizer")
    return new


def trim_vocabulary(model: nn.Module, tokenizer, keep_ids: Sequence[int]):
    """Shrink ``model``'s input embedding to the rows ``keep_ids`` and return the matching tokenizer.

    Position and token-type embeddings are untouched. ``config.vocab_size`` and the config's special token
    ids follow the new numbering, so the saved model reloads with ``from_pretrained``.

    Args:
        model: A classifier (no output embedding: a tied LM head would need the same rows trimmed).
        tokenizer: The tokenizer the model reads (a BERT WordPiece one).
        keep_ids: Sorted original ids to keep (:func:`kept_tokens`).

    Returns:
        The trimmed tokenizer (see :func:`trimmed_tokenizer`).

    Raises:
        RecipeError: the model has an output embedding, its input embedding is not an ``nn.Embedding``, or
            the tokenizer cannot be trimmed.
    """
    if model.get_output_embeddings() is not None:
        raise RecipeError(f"student.vocab: {type(model).__name__} has an output embedding (LM head); trimming "
                          "supports classifiers, whose only vocabulary-sized table is the input embedding")
    old = model.get_input_embeddings()
    if type(old) is not nn.Embedding:
        raise RecipeError(f"student.vocab: the input embedding of {type(model).__name__} is a "
                          f"{type(old).__name__}, not an nn.Embedding (trim before quantizing)")
    keep_ids = list(keep_ids)
    new_tokenizer = trimmed_tokenizer(tokenizer, keep_ids)  # fails before the model is touched
    remap = {old_id: new_id for new_id, old_id in enumerate(keep_ids)}
    index = torch.tensor(keep_ids, dtype=torch.long, device=old.weight.device)
    padding = remap.get(old.padding_idx) if old.padding_idx is not None else None
    new = nn.Embedding(len(keep_ids), old.embedding_dim, padding_idx=padding, max_norm=old.max_norm,
                       norm_type=old.norm_type, scale_grad_by_freq=old.scale_grad_by_freq, sparse=old.sparse,
                       device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight.index_select(0, index))
    new.weight.requires_grad_(old.weight.requires_grad)
    model.set_input_embeddings(new)
    config = model.config
    config.distilkit_vocab = {"kept": len(keep_ids), "original": old.num_embeddings}
    config.vocab_size = len(keep_ids)
    for field in _TOKEN_ID_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, int):
            # A special id the tokenizer does not know (rare) has no row left: drop it rather than point
            # at an unrelated token.
            setattr(config, field, remap.get(value))
    return new_tokenizer


def apply_vocab(spec, model: nn.Module, tokenizer, rows: Sequence[dict]):
    """``student.vocab``: count the transfer set's tokens, keep the frequent ones, trim model and tokenizer.

    Args:
        spec: The recipe's :class:`distilkit.models.config.VocabConfig`.
        model: The freshly built student (embeddings already initialised, e.g. from the teacher).
        tokenizer: The student's tokenizer.
        rows: Transfer-set rows with ``text_a`` and ``text_b``.

    Returns:
        The trimmed tokenizer; ``model`` is trimmed in place.
    """
    counts = count_tokens(tokenizer, [r["text_a"] for r in rows], [r.get("text_b") for r in rows])
    keep = kept_tokens(tokenizer, counts, max_tokens=spec.max_tokens, min_count=spec.min_count)
    return trim_vocabulary(model, tokenizer, keep)
