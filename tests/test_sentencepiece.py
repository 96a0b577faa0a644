"""A student vocabulary of its own (``student.tokenizer: {train: sentencepiece}``): training, determinism and
the cache, the reloaded tokenizer against SentencePiece itself, embedding rows from the teacher, named errors,
and a BiLSTM recipe end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import distilkit  # noqa: F401  (registers the BiLSTM with transformers)
from distilkit.core.errors import RecipeError
from distilkit.deploy.onnx_export import export_onnx
from distilkit.models import sentencepiece_vocab
from distilkit.models.bilstm import encode_bilstm
from distilkit.models.config import SentencePieceConfig
from distilkit.models.sentencepiece_checks import check_texts, required_pieces
from distilkit.models.sentencepiece_vocab import (
    piece_embeddings,
    sentencepiece_tokenizer,
    student_vocabulary,
    train_sentencepiece,
)
from distilkit.run.distill import run
from distilkit.run.preflight import preflight
from distilkit.run.recipe_io import validate_recipe

from .conftest import FIXTURES
from .test_distill import tiny_recipe

spm = pytest.importorskip("sentencepiece", reason="the sentencepiece extra is not installed "
                          "(pip install 'distilkit[sentencepiece]')")
pytest.importorskip("google.protobuf", reason="the sentencepiece extra is not installed (protobuf is part of it)")


def sst2_texts(limit: int = 4000) -> list[str]:
    lines = (FIXTURES / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0] for line in lines[:limit]]


def spec(**kw) -> SentencePieceConfig:
    return SentencePieceConfig(train="sentencepiece", **kw)


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_reloaded_tokenizer_encodes_as_sentencepiece(tmp_path, model_type):
    texts = sst2_texts()
    model = train_sentencepiece(texts, spec(vocab_size=400, model_type=model_type), seed=3)
    processor = spm.SentencePieceProcessor(model_proto=model)
    assert processor.get_piece_size() == 400 and processor.id_to_piece(0) == "<pad>"
    sentencepiece_tokenizer(model).save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert len(reloaded) == 400 and reloaded.pad_token_id == 0
    # Plus spacing the normalizer rewrites and characters the model never saw (<unk>, grouped alike).
    probes = texts + ["  two  spaces   inside ", "Upper Case, punctuation!?", "a", "QQ x \u00f6 y \u65e5\u672c go",
                      "\ufb01ne caf\u00e9\tend"]
    ours = reloaded(probes, add_special_tokens=False)["input_ids"]
    theirs = processor.encode(probes, out_type=int)
    assert ours == theirs
    # Pieces, not just ids: the multi-character pieces SentencePiece chose are used whole.
    assert reloaded.convert_ids_to_tokens(ours[0]) == processor.encode(probes[0], out_type=str)
    assert any(len(p.lstrip("▁")) > 3 for row in ours[:50] for p in reloaded.convert_ids_to_tokens(row))


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    texts = sst2_texts(1500)
    cfg = spec(vocab_size=300)
    assert train_sentencepiece(texts, cfg, seed=1) == train_sentencepiece(texts, cfg, seed=1)
    first = student_vocabulary(texts, cfg, seed=1, cache_dir=tmp_path)
    entries = list((tmp_path / "sentencepiece").iterdir())
    assert len(entries) == 1 and (entries[0] / "spiece.model").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached vocabulary should have been used")

    monkeypatch.setattr(sentencepiece_vocab, "train_sentencepiece", no_training)
    again = student_vocabulary(texts, cfg, seed=1, cache_dir=tmp_path)
    assert again.get_vocab() == first.get_vocab()
    with pytest.raises(AssertionError, match="cached"):  # other texts: another key, trained again
        student_vocabulary(texts[:-1], cfg, seed=1, cache_dir=tmp_path)
    # A damaged entry is moved aside and retrained, not read.
    monkeypatch.undo()
    (entries[0] / "spiece.model").write_bytes(b"\0" * 10)
    healed = student_vocabulary(texts, cfg, seed=1, cache_dir=tmp_path)
    assert healed.get_vocab() == first.get_vocab()
    assert any(".damaged-" in p.name for p in (tmp_path / "sentencepiece").iterdir())


def test_required_pieces_is_sentencepieces_own_limit():
    texts = ["Caf\u00e9 au lait", "na\u00efve r\u00e9sum\u00e9", "plain words here"]
    need = required_pieces(texts)
    assert need == len(set("".join(texts).replace(" ", ""))) + 1 + 2  # chars, the "▁" marker, pad and unk
    train_sentencepiece(texts, spec(vocab_size=need))  # SentencePiece accepts exactly this many
    with pytest.raises(RecipeError, match=rf"student\.tokenizer\.vocab_size: {need - 1} .* use at least {need}"):
        check_texts(texts, spec(vocab_size=need - 1))
    with pytest.raises(RuntimeError, match="Vocabulary size"):  # and refuses one fewer: the check is not too strict
        spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=__import__("io").BytesIO(),
                                       vocab_size=need - 1, character_coverage=1.0, pad_id=0, unk_id=1,
                                       bos_id=-1, eos_id=-1, minloglevel=2, hard_vocab_limit=False)
    with pytest.raises(RecipeError, match="texts of the transfer set are empty"):
        check_texts(["", "   "], spec())


def test_piece_rows_are_means_of_teacher_token_vectors(tiny_tokenizer_dir):
    teacher_tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer = sentencepiece_tokenizer(train_sentencepiece(sst2_texts(), spec(vocab_size=500), seed=0))
    table = torch.randn(len(teacher_tok), 12, generator=torch.Generator().manual_seed(0))
    rows, counts = piece_embeddings(tokenizer, teacher_tok, table, seed=0)
    assert rows.shape == (len(tokenizer), 12) and counts["from_teacher"] > 0.5 * len(tokenizer)
    vocab = tokenizer.get_vocab()
    assert torch.equal(rows[vocab["<pad>"]], torch.zeros(12))
    assert torch.equal(rows[vocab["<unk>"]], table[teacher_tok.unk_token_id])
    checked = 0
    for piece, i in vocab.items():
        text = piece.replace("▁", " ").strip()
        if piece in ("<pad>", "<unk>") or not text:
            continue
        ids = teacher_tok(text, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(rows[i], table[ids].mean(dim=0))
        checked += 1
    assert checked > 400
    random_rows = [rows[i] for piece, i in vocab.items() if piece == "▁"]
    assert all(0 < r.norm() < table.norm(dim=1).mean() for r in random_rows)  # small, random


def test_bilstm_recipe_trains_and_saves_a_sentencepiece_student(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 1}, measure={"latency": False},
                       student={"tokenizer": {"train": "sentencepiece", "vocab_size": 300, "model_type": "bpe"},
                                "init_embeddings_from_teacher": "pca", "embedding_dim": 16})
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert model.get_input_embeddings().weight.shape == (300, 16) and len(tokenizer) == 300
    vocab = metrics["student"]["vocab"]
    assert vocab["trained"] == "sentencepiece" and vocab["pieces"] == 300 and vocab["from_teacher"] > 150
    assert json.loads((out / "model" / "config.json").read_text())["distilkit_vocab"]["model_type"] == "bpe"
    # The saved tokenizer is the cached SentencePiece model's.
    cached = next((Path(tree["cache"]["dir"]) / "sentencepiece").iterdir()) / "spiece.model"
    processor = spm.SentencePieceProcessor(model_file=str(cached))
    texts = ["a gorgeous , witty film", "dull and lifeless"]
    assert tokenizer(texts, add_special_tokens=False)["input_ids"] == processor.encode(texts)
    with torch.no_grad():
        assert model(**encode_bilstm(tokenizer, texts, None, 32)).logits.shape == (2, 2)
    # It deploys like any BiLSTM: ONNX with the SentencePiece tokenizer copied, same logits as PyTorch.
    exported = export_onnx(out / "model", tmp_path / "onnx", task="sst2", data_dir=str(FIXTURES / "glue"),
                           max_examples=32, max_length=32)
    assert exported["checked_rows"] == 32 and exported["max_abs_logit_diff"] < 1e-4
    assert AutoTokenizer.from_pretrained(tmp_path / "onnx").get_vocab() == tokenizer.get_vocab()


def recipe_errors(tree: dict) -> str:
    with pytest.raises(RecipeError) as err:
        preflight(validate_recipe(tree), "r.yaml")
    return str(err.value)


def test_named_errors_before_anything_runs(tmp_path, tiny_teacher_dir):
    small = tiny_recipe(tmp_path, tiny_teacher_dir, student={"tokenizer": {"train": "sentencepiece", "vocab_size": 20}})
    message = recipe_errors(small)
    assert "r.yaml: student.tokenizer.vocab_size: 20 is smaller than the" in message and "split train" in message
    assert not (tmp_path / "run").exists()
    bad_type = tiny_recipe(tmp_path, tiny_teacher_dir,
                           student={"tokenizer": {"train": "sentencepiece", "model_type": "wordpiece"}})
    with pytest.raises(RecipeError, match=r"student\.tokenizer\.model_type: .*'unigram' or 'bpe'"):
        validate_recipe(bad_type)
    bad_train = tiny_recipe(tmp_path, tiny_teacher_dir, student={"tokenizer": {"train": "wordpiece"}})
    with pytest.raises(RecipeError, match=r"student\.tokenizer\.train"):
        validate_recipe(bad_train)
    transformer = tiny_recipe(tmp_path, tiny_teacher_dir)
    transformer["student"] = {"kind": "transformer", "tokenizer": {"train": "sentencepiece"}}
    with pytest.raises(RecipeError, match=r"student\.tokenizer: .*BiLSTM students only"):
        validate_recipe(transformer)


def test_empty_texts_are_named(tmp_path, tiny_teacher_dir):
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    (glue / "train.tsv").write_text("sentence\tlabel\n \t1\n\t0\n")
    (glue / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, student={"tokenizer": {"train": "sentencepiece"}})
    tree["data"] = {"dir": str(tmp_path / "glue")}
    message = recipe_errors(tree)
    assert "student.tokenizer: the texts of task sst2, split train are empty" in message, message


def test_vocabulary_preflight_imports_nothing_heavy(tmp_path):
    """The check reads texts only: no torch, transformers, datasets or sentencepiece before the error."""
    import subprocess
    import sys

    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "sst2", "output_dir": str(tmp_path / "o"), "data": {"dir": str(FIXTURES / "glue")},
        "teacher": {"model": str(tmp_path)}, "student": {"kind": "bilstm", "tokenizer": {"train": "sentencepiece",
                                                                                          "vocab_size": 10}}}))
    probe = ("import sys\nfrom distilkit.cli import main\nrc = main(sys.argv[1:])\n"
             "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'sentencepiece') if m in sys.modules)\n"
             "print('HEAVY', rc, heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe, "validate", str(recipe)], capture_output=True, text=True)
    assert "HEAVY 2 []" in done.stdout, done.stderr[-2000:]
    assert "student.tokenizer.vocab_size: 10 is smaller than the" in done.stderr


def test_pieces_start_from_minilm_word_vectors(minilm):
    """With the real MiniLM teacher, almost every piece of an SST-2 vocabulary gets teacher vectors, and a
    whole-word piece's row is that word's WordPiece vector."""
    from transformers import AutoModel

    teacher_tok = AutoTokenizer.from_pretrained(minilm)
    table = AutoModel.from_pretrained(minilm).get_input_embeddings().weight.detach()
    tokenizer = sentencepiece_tokenizer(train_sentencepiece(sst2_texts(), spec(vocab_size=1000), seed=0))
    rows, counts = piece_embeddings(tokenizer, teacher_tok, table, seed=0)
    assert counts["from_teacher"] >= 0.99 * (len(tokenizer) - 3), counts  # all but <pad>, <unk> and a bare ▁
    film = tokenizer.get_vocab()["▁film"]
    torch.testing.assert_close(rows[film], table[teacher_tok.convert_tokens_to_ids("film")])
