"""Checks on the texts a student SentencePiece vocabulary is trained on (``student.tokenizer: {train:
sentencepiece}``), cheap enough for preflight: no torch, transformers or sentencepiece import.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from distilkit.core.errors import RecipeError

#: SentencePiece's meta pieces, in id order: padding first, so the BiLSTM's padding row is row 0.
PAD_PIECE, UNK_PIECE = "<pad>", "<unk>"
META_PIECES = (PAD_PIECE, UNK_PIECE)


def transfer_texts(rows: Iterable[dict]) -> list[str]:
    """The non-empty first and second sentences of transfer-set rows, in row order (the training corpus)."""
    texts = []
    for row in rows:
        for key in ("text_a", "text_b"):
            text = row.get(key)
            if text and text.strip():
                texts.append(text)
    return texts


def required_pieces(texts: Iterable[str]) -> int:
    """Fewest pieces SentencePiece accepts for ``texts``: one per distinct character plus the meta pieces.

    SentencePiece refuses a ``vocab_size`` below ``required_chars + meta_pieces`` (trainer_interface.cc) with
    ``character_coverage: 1.0``. Its default normalizer (``nmt_nfkc``) applies NFKC and turns whitespace into
    the ``▁`` marker, which the dummy prefix always adds; we count the same characters, cheaply, before
    anything trains.
    """
    chars: set[str] = set()
    for text in texts:
        chars.update(unicodedata.normalize("NFKC", text))
    chars = {c for c in chars if not c.isspace()} | {"▁"}
    return len(chars) + len(META_PIECES)


def check_texts(texts: Sequence[str], spec, where: str = "the transfer set") -> None:
    """Named errors for a SentencePiece vocabulary that cannot be trained on ``texts``.

    Raises:
        RecipeError: the texts are empty, or ``spec.vocab_size`` is below :func:`required_pieces`.
    """
    if not any(t.strip() for t in texts):
        raise RecipeError(f"student.tokenizer: the texts of {where} are empty; there is nothing to train a "
                          "SentencePiece vocabulary on")
    need = required_pieces(texts)
    if spec.vocab_size < need:
        raise RecipeError(f"student.tokenizer.vocab_size: {spec.vocab_size} is smaller than the {need} pieces "
                          f"SentencePiece needs for {where} (one per distinct character, plus "
                          f"{', '.join(META_PIECES)}); use at least {need}")
