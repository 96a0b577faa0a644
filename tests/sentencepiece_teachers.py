"""Tiny random teachers whose tokenizer is SentencePiece (ALBERT, XLM-R, DeBERTa-v3), built offline: a
SentencePiece model trained on the SST-2 fixture in a temporary folder and 32-wide, 2-layer configs."""

from __future__ import annotations

import io
from pathlib import Path

from .conftest import FIXTURES

#: family -> (tokenizer class, SentencePiece file it reads, meta pieces in id order, user-defined pieces).
FAMILIES = {
    "albert": ("AlbertTokenizer", "spiece.model", ("<pad>", "<unk>", "[CLS]", "[SEP]"), ("[MASK]",)),
    "xlm-roberta": ("XLMRobertaTokenizer", "sentencepiece.bpe.model", ("<s>", "<pad>", "</s>", "<unk>"), ()),
    "deberta-v2": ("DebertaV2Tokenizer", "spm.model", ("[PAD]", "[CLS]", "[SEP]", "[UNK]"), ("[MASK]",)),
}


def sentencepiece_model(pieces: tuple[str, ...], extra: tuple[str, ...], vocab_size: int = 400) -> bytes:
    """A unigram SentencePiece model of the SST-2 fixture with the family's special pieces first (``extra``:
    user-defined pieces such as ``[MASK]``)."""
    import sentencepiece as spm

    lines = (FIXTURES / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    # SentencePiece's four meta pieces (pad, unk, bos, eos), each at the family's id, under the family's name.
    roles = {"<pad>": "pad", "[PAD]": "pad", "<unk>": "unk", "[UNK]": "unk", "<s>": "bos", "[CLS]": "bos",
             "</s>": "eos", "[SEP]": "eos"}
    meta = {}
    for i, piece in enumerate(pieces):
        meta.update({f"{roles[piece]}_id": i, f"{roles[piece]}_piece": piece})
    buffer = io.BytesIO()
    spm.set_random_generator_seed(0)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(line.split("\t")[0] for line in lines), model_writer=buffer, vocab_size=vocab_size,
        character_coverage=1.0, num_threads=1, minloglevel=2, user_defined_symbols=list(extra),
        **meta)
    return buffer.getvalue()


def make_sentencepiece_teacher(path: Path, family: str, seed: int = 0) -> Path:
    """Save a random 32-wide, 2-layer ``family`` classifier with its SentencePiece tokenizer in ``path``."""
    import torch
    import transformers

    class_name, file_name, pieces, extra = FAMILIES[family]
    path.mkdir(parents=True, exist_ok=True)
    (path / file_name).write_bytes(sentencepiece_model(pieces, extra))
    tokenizer = getattr(transformers, class_name).from_pretrained(path)
    torch.manual_seed(seed)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=128, num_labels=2, pad_token_id=tokenizer.pad_token_id)
    if family == "albert":
        config = transformers.AlbertConfig(embedding_size=16, **common)
        model = transformers.AlbertForSequenceClassification(config)
    elif family == "xlm-roberta":
        config = transformers.XLMRobertaConfig(**{**common, "max_position_embeddings": 130},
                                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        model = transformers.XLMRobertaForSequenceClassification(config)
    else:
        config = transformers.DebertaV2Config(**common, relative_attention=True, position_buckets=16,
                                              pos_att_type=["p2c", "c2p"], max_relative_positions=-1)
        model = transformers.DebertaV2ForSequenceClassification(config)
    head = model.classifier if hasattr(model.classifier, "weight") else model.classifier.out_proj
    with torch.no_grad():  # confident, input-dependent logits: something for a student to learn
        head.weight.mul_(40)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
