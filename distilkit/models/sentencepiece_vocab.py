"""A student vocabulary of its own: a SentencePiece model trained on the transfer set (``student.tokenizer:
{train: sentencepiece}``), for BiLSTM students.

Vocabulary trimming (:mod:`distilkit.models.vocab`) keeps the teacher's WordPiece tokens the transfer set uses;
here the student gets pieces chosen *for* the transfer set instead: SentencePiece (Kudo & Richardson 2018,
arXiv:1808.06226) with the unigram language model (Kudo 2018, arXiv:1804.10959: pieces chosen to maximise the
corpus likelihood ``sum_s log sum_{x in S(s)} prod_i p(x_i)``, eq. 1-2, pruned by EM) or BPE (Sennrich et al.
2016). Every character of the texts is a piece (``character_coverage: 1.0``), so a word the transfer set
spelled never becomes ``<unk>``.

The trained model is wrapped as a fast tokenizer (transformers' ``SpmConverter.build_tokenizer_from_spm_proto``
reproduces SentencePiece's normalizer, dummy prefix and pieces in a ``tokenizers`` pipeline), so the student's
folder reloads with ``AutoTokenizer.from_pretrained`` and needs neither distilkit nor sentencepiece.

Embedding rows start from the teacher (:func:`piece_embeddings`): each piece gets the mean of the teacher's
input vectors of the tokens the teacher's tokenizer splits the piece's text into.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerFast

from distilkit.core.cache_entries import cache_entry, open_entry, quarantine
from distilkit.models.sentencepiece_checks import PAD_PIECE, UNK_PIECE, check_texts

WHAT = "sentencepiece"
_MODEL_FILE = "spiece.model"


def train_sentencepiece(texts: Sequence[str], spec, seed: int = 0) -> bytes:
    """Train a SentencePiece model on ``texts``; returns the serialized model (``spiece.model`` bytes).

    Deterministic given ``texts``, ``spec`` and ``seed``: one thread, no sampling of the input, SentencePiece's
    generator seeded. ``vocab_size`` is an upper bound (``hard_vocab_limit: false``): a unigram model of a
    small corpus stops where it runs out of candidate pieces instead of failing.

    Raises:
        RecipeError: as :func:`check_texts`.
    """
    import sentencepiece as spm

    check_texts(texts, spec)
    spm.set_random_generator_seed(seed)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buffer, vocab_size=spec.vocab_size,
        model_type=spec.model_type, character_coverage=1.0, input_sentence_size=0,
        shuffle_input_sentence=False, num_threads=1, hard_vocab_limit=False, minloglevel=2,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece=PAD_PIECE, unk_piece=UNK_PIECE,
        # Long sentences are kept whole (the default skips those over 4,192 bytes).
        max_sentence_length=1 << 20)
    return buffer.getvalue()


def sentencepiece_tokenizer(model: bytes, model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A fast tokenizer that encodes exactly as the SentencePiece ``model`` does (on characters it knows).

    ``save_pretrained`` writes ``tokenizer.json``; ``AutoTokenizer.from_pretrained`` reloads it anywhere.
    """
    from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf

    proto = import_protobuf().ModelProto()
    proto.ParseFromString(model)
    if proto.trainer_spec.model_type == 1:  # unigram: pieces with their log-probabilities
        vocab = [(piece.piece, piece.score) for piece in proto.pieces]
    else:  # BPE: ids; the converter ranks merges by piece score, as SentencePiece applies them
        vocab = {piece.piece: i for i, piece in enumerate(proto.pieces)}
    # legacy=True: the dummy prefix goes before every chunk. With legacy=False ("first") Metaspace prefixes only
    # a chunk at offset 0 of the *original* text, so a text with leading spaces (stripped by the normalizer)
    # would lose its prefix; our texts have no added tokens inside, so "every chunk" is the whole text.
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=True)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=UNK_PIECE, pad_token=PAD_PIECE,
                                   model_max_length=model_max_length)


def vocabulary_key(texts: Sequence[str], spec, seed: int) -> str:
    """Cache key: the texts in order, every setting, the seed and the sentencepiece version."""
    import sentencepiece as spm

    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{spec.model_dump_json()}\x1f{seed}\x1f{spm.__version__}\x1e".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def student_vocabulary(texts: Sequence[str], spec, seed: int = 0, cache_dir: str | Path | None = None,
                       model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """Train (or read from the cache) the student's SentencePiece vocabulary and return its tokenizer.

    Args:
        texts: The transfer set's sentences (:func:`transfer_texts`).
        spec: :class:`distilkit.models.config.SentencePieceConfig`.
        seed: SentencePiece's random seed (``train.seed``).
        cache_dir: Cache root; the model is stored under ``<cache_dir>/sentencepiece/<key>/spiece.model``.
        model_max_length: Recorded in the tokenizer.
    """
    target = Path(cache_dir).expanduser() / "sentencepiece" / vocabulary_key(texts, spec, seed) if cache_dir else None
    model = None
    if target is not None and open_entry(target, WHAT) is not None:
        model = (target / _MODEL_FILE).read_bytes() if (target / _MODEL_FILE).is_file() else None
        if model is None:
            quarantine(target, f"no {_MODEL_FILE}", WHAT)
    if model is None:
        model = train_sentencepiece(texts, spec, seed)
        if target is not None:
            with cache_entry(target, WHAT) as tmp:
                (tmp / _MODEL_FILE).write_bytes(model)
    return sentencepiece_tokenizer(model, model_max_length)


def piece_texts(tokenizer) -> list[str]:
    """Each piece's text without the ``▁`` word marker (``""`` for meta pieces), in id order."""
    inverse = {i: piece for piece, i in tokenizer.get_vocab().items()}
    special = set(tokenizer.all_special_tokens)
    return ["" if inverse[i] in special else inverse[i].replace("▁", " ").strip() for i in range(len(inverse))]


def piece_embeddings(tokenizer, teacher_tokenizer, teacher_embeddings: torch.Tensor, seed: int = 0,
                     random_scale: float = 0.1) -> tuple[torch.Tensor, dict]:
    """Initial embedding rows for a trained vocabulary, from the teacher's input word vectors.

    Piece ``p`` gets ``mean_{t in T(p)} E_teacher[t]``, where ``T(p)`` are the tokens the teacher's tokenizer
    splits ``p``'s text (``▁`` stripped) into -- the subword analogue of Tang et al.'s word2vec initialisation.
    ``<unk>`` gets the teacher's unknown-token vector; ``<pad>`` zeros; pieces with no teacher tokens (``▁``
    alone) a random normal vector ``random_scale`` times the teacher table's standard deviation.

    Returns:
        ``[len(tokenizer), teacher_dim]`` rows and counts ``{"from_teacher", "random"}``.
    """
    texts = piece_texts(tokenizer)
    ids = teacher_tokenizer(texts, add_special_tokens=False, return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)["input_ids"]
    table = teacher_embeddings.detach().float().cpu()
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(len(texts), table.shape[1], generator=generator) * (random_scale * table.std().item())
    from_teacher = 0
    for i, token_ids in enumerate(ids):
        token_ids = [t for t in token_ids if t < table.shape[0]]
        if texts[i] and token_ids:
            rows[i] = table[token_ids].mean(dim=0)
            from_teacher += 1
    unk, teacher_unk = tokenizer.unk_token_id, teacher_tokenizer.unk_token_id
    if unk is not None and teacher_unk is not None and teacher_unk < table.shape[0]:
        rows[unk] = table[teacher_unk]
    if tokenizer.pad_token_id is not None:
        rows[tokenizer.pad_token_id] = 0.0
    return rows, {"from_teacher": from_teacher, "random": len(texts) - from_teacher}
