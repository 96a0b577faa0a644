"""Vocabulary trimming (``student.vocab``): kept ids, identical tokenization and logits, round trips, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertTokenizer,
    PreTrainedTokenizerFast,
)

import distilkit  # noqa: F401  (registers the BiLSTM and quant_method "distilkit" with transformers)
from distilkit.core.errors import RecipeError
from distilkit.data.tasks import load_split, load_task
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.convert import quantize_directory
from distilkit.methods.quantization.layers import QuantEmbedding
from distilkit.models.bilstm import encode_bilstm
from distilkit.models.bilstm_build import build_bilstm_student
from distilkit.models.transformer import encode_transformer
from distilkit.models.vocab import count_tokens, kept_tokens, trim_vocabulary
from distilkit.run.distill import run
from distilkit.run.pipeline import run_recipe
from distilkit.run.recipe_io import validate_recipe

from .conftest import FIXTURES
from .test_distill import tiny_recipe

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = [chr(c) for c in range(33, 127)]
# Whole words and ## pieces, so greedy WordPiece has real choices to make (the SST-2 tiny tokenizer of
# conftest holds whole words only).
PIECES = ["the", "film", "movie", "play", "##ing", "##ed", "##s", "good", "bad", "act", "##or", "un", "##fun",
          "##ny", "story", "dull", "a", "is", "it", "not", "##ly", "great"]


@pytest.fixture(scope="module")
def piece_tokenizer() -> BertTokenizer:
    vocab = SPECIALS + PIECES + [t for c in CHARS for t in (c, "##" + c) if t not in PIECES]
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)


def sst2_texts(n: int = 200) -> list[str]:
    lines = (FIXTURES / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:n + 1]
    return [line.split("\t")[0] for line in lines]


def tokens(tokenizer, texts, pairs=None, special=False) -> list[list[str]]:
    ids = tokenizer(texts, pairs, add_special_tokens=special)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(row) for row in ids]


def test_kept_ids_hold_specials_and_ascii_and_respect_max_tokens(piece_tokenizer):
    tok = piece_tokenizer
    counts = count_tokens(tok, ["the film is playing", "the movie"], ["the story", None])
    assert counts[tok.convert_tokens_to_ids("the")] == 3 and counts[tok.convert_tokens_to_ids("##ing")] == 1
    full = kept_tokens(tok, counts)
    net = kept_tokens(tok, {}, max_tokens=None)
    assert full == sorted(full) and set(net) < set(full)
    assert set(tok.all_special_ids) <= set(net)
    assert {tok.convert_tokens_to_ids(t) for t in ("a", "##a", "Z", "##Z", "!", "##~")} <= set(net)
    assert set(full) - set(net) == {tok.convert_tokens_to_ids(t) for t in ("the", "film", "is", "play", "##ing",
                                                                             "movie", "story")}
    # max_tokens counts everything kept; the most frequent seen token wins the last place.
    one_more = kept_tokens(tok, counts, max_tokens=len(net) + 1)
    assert len(one_more) == len(net) + 1 and set(one_more) - set(net) == {tok.convert_tokens_to_ids("the")}
    assert set(kept_tokens(tok, counts, min_count=2)) - set(net) == {tok.convert_tokens_to_ids("the")}
    with pytest.raises(RecipeError, match=r"student\.vocab\.max_tokens: 10 is smaller"):
        kept_tokens(tok, counts, max_tokens=10)


def assert_same_tokens(old, new, texts, pairs=None):
    for special in (False, True):
        assert tokens(old, texts, pairs, special) == tokens(new, texts, pairs, special)


def test_tokenization_is_identical_when_every_token_is_kept(piece_tokenizer, tiny_tokenizer_dir):
    texts = sst2_texts()
    pair_rows = list(load_split(load_task("mrpc"), "train", data_dir=str(FIXTURES / "glue"), max_examples=60))
    a, b = [r["text_a"] for r in pair_rows], [r["text_b"] for r in pair_rows]
    for tok in (piece_tokenizer, AutoTokenizer.from_pretrained(tiny_tokenizer_dir)):
        model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=1,
                                           num_attention_heads=2, intermediate_size=8)).bert
        keep = kept_tokens(tok, count_tokens(tok, texts + a, b))
        new = trim_vocabulary(model, tok, keep)
        assert len(new) == len(keep) < len(tok)
        assert_same_tokens(tok, new, texts)
        assert_same_tokens(tok, new, a, b)
        assert (new.pad_token_id, new.model_max_length) == (keep.index(tok.pad_token_id), tok.model_max_length)

    # Trimmed below what the texts use: words whose tokens were dropped are spelled in kept pieces, not [UNK].
    tok = piece_tokenizer
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=8)).bert
    counts = count_tokens(tok, texts)
    keep = kept_tokens(tok, counts, max_tokens=len(kept_tokens(tok, {})) + 3)
    new = trim_vocabulary(model, tok, keep)
    for old_row, new_row in zip(tokens(tok, texts), tokens(new, texts)):
        if set(tok.convert_tokens_to_ids(old_row)) <= set(keep):
            assert old_row == new_row
        assert new_row.count("[UNK]") == old_row.count("[UNK]")


def test_extra_special_tokens_stay_special(tmp_path):
    vocab = SPECIALS + ["<ent>", "hello"] + CHARS + ["##" + c for c in CHARS]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    tok.add_special_tokens({"additional_special_tokens": ["<ent>"]})
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=8)).bert
    new = trim_vocabulary(model, tok, kept_tokens(tok, {}))
    new.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert "hello" not in reloaded.get_vocab() and "<ent>" in reloaded.all_special_tokens
    assert reloaded.tokenize("hello <ent>") == ["h", "##e", "##l", "##l", "##o", "<ent>"]


def test_minilm_tokenizer_trims_exactly(minilm):
    tok = AutoTokenizer.from_pretrained(minilm)
    texts = sst2_texts(400)
    model = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2)
    keep = kept_tokens(tok, count_tokens(tok, texts))
    new = trim_vocabulary(model, tok, keep)
    assert_same_tokens(tok, new, texts)
    assert model.get_input_embeddings().num_embeddings == len(keep) < 3000


def bert_logits(model, tokenizer, texts):
    with torch.no_grad():
        return model(**encode_transformer(tokenizer, texts, None, 64)).logits


def test_trimmed_models_give_identical_logits_and_round_trip(tmp_path, tiny_teacher_dir):
    texts = sst2_texts(64)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    before = bert_logits(model, tok, texts)
    teacher_rows = model.get_input_embeddings().weight.detach().clone()
    keep = kept_tokens(tok, count_tokens(tok, texts))
    new = trim_vocabulary(model, tok, keep)
    emb = model.get_input_embeddings()
    assert emb.num_embeddings == model.config.vocab_size == len(keep) and emb.weight.requires_grad
    assert model.config.pad_token_id == emb.padding_idx == keep.index(tok.pad_token_id)
    assert model.config.distilkit_vocab == {"kept": len(keep), "original": len(tok)}
    assert torch.equal(bert_logits(model, new, texts), before)

    model.save_pretrained(tmp_path / "bert")
    new.save_pretrained(tmp_path / "bert")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "bert").eval()
    reloaded_tok = AutoTokenizer.from_pretrained(tmp_path / "bert")
    assert len(reloaded_tok) == len(keep) and reloaded.config.distilkit_vocab["kept"] == len(keep)
    assert torch.equal(bert_logits(reloaded, reloaded_tok, texts), before)

    # int8 (embedding included) of a trimmed model: a smaller QuantEmbedding, still reloadable.
    quantize_directory(tmp_path / "bert", tmp_path / "int8", QuantizeConfig(linear="int8", embedding="int8"))
    quantized = AutoModelForSequenceClassification.from_pretrained(tmp_path / "int8").eval()
    q_emb = quantized.get_input_embeddings()
    assert isinstance(q_emb, QuantEmbedding) and q_emb.num_embeddings == len(keep)
    q_tok = AutoTokenizer.from_pretrained(tmp_path / "int8")
    assert (bert_logits(quantized, q_tok, texts) - before).abs().max() < 0.5

    # A BiLSTM with teacher-initialised, frozen embeddings: rows copied before trimming, still frozen.
    torch.manual_seed(0)
    bilstm = build_bilstm_student(tokenizer=tok, num_labels=2, problem_type="single_label_classification",
                                  is_pair=False, hidden_size=8, mlp_hidden_size=8, teacher_embeddings=teacher_rows,
                                  freeze_embeddings=True).eval()
    with torch.no_grad():
        before = bilstm(**encode_bilstm(tok, texts, None, 64)).logits
    new = trim_vocabulary(bilstm, tok, keep)
    assert not bilstm.embeddings.weight.requires_grad
    assert bilstm.embeddings.padding_idx == bilstm.config.pad_token_id == new.pad_token_id
    bilstm.save_pretrained(tmp_path / "bilstm")
    new.save_pretrained(tmp_path / "bilstm")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "bilstm").eval()
    reloaded_tok = AutoTokenizer.from_pretrained(tmp_path / "bilstm")
    with torch.no_grad():
        assert torch.equal(reloaded(**encode_bilstm(reloaded_tok, texts, None, 64)).logits, before)


def test_unsupported_models_and_tokenizers_fail_clearly(piece_tokenizer):
    tok = piece_tokenizer
    config = BertConfig(vocab_size=len(tok), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=8)
    with pytest.raises(RecipeError, match=r"student\.vocab: BertForMaskedLM has an output embedding"):
        trim_vocabulary(BertForMaskedLM(config), tok, kept_tokens(tok, {}))
    vocab = {"[UNK]": 0, "[PAD]": 1, "hello": 2}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = Whitespace()
    word_level = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    model = BertForMaskedLM(BertConfig(vocab_size=3, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=8)).bert
    with pytest.raises(RecipeError, match=r"student\.vocab: trimming supports BERT WordPiece"):
        trim_vocabulary(model, word_level, [0, 1])
    assert model.get_input_embeddings().num_embeddings == 3  # untouched on failure


def test_unknown_vocab_key_names_it(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, student={"vocab": {"max_tokns": 100}})
    with pytest.raises(RecipeError, match=r"student\.vocab\.max_tokns: unknown key 'max_tokns' "
                                          r"\(did you mean 'max_tokens'\?\); valid keys here: max_tokens, min_count"):
        validate_recipe(tree)
    tree["student"] = {"kind": "linear_attention", "vocab": {"max_tokens": 100}}
    with pytest.raises(RecipeError, match=r"student\.vocab: unknown key 'vocab'"):
        validate_recipe(tree)


def test_bilstm_recipe_saves_a_trimmed_student(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, student={"vocab": {"max_tokens": 300}}, train={"epochs": 1})
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) == 300
    assert metrics["student"]["vocab"] == {"kept": 300, "original": 1505}
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["vocab_size"] == 300 and saved["distilkit_vocab"]["kept"] == 300
    with torch.no_grad():
        assert model(**encode_bilstm(tokenizer, ["a gorgeous film", "dull"], None, 32)).logits.shape == (2, 2)


def test_copy_recipe_trims_the_teacher_without_changing_it(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 0}, measure={"latency": False},
                       quantize={"linear": "int8", "embedding": "int8"})
    tree["student"] = {"kind": "copy", "max_length": 32, "vocab": {}}
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    kept = metrics["student"]["vocab"]["kept"]
    assert kept < 1505 and metrics["student"]["quantization"]["embedding"] == "int8"
    # The float copy reads every transfer-set text exactly as the teacher does.
    rows = list(load_split(load_task("sst2"), "train", data_dir=str(FIXTURES / "glue"), max_examples=160, seed=42))
    texts = [r["text_a"] for r in rows]
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).eval()
    student = AutoModelForSequenceClassification.from_pretrained(out / "model-float").eval()
    assert student.get_input_embeddings().num_embeddings == kept
    assert torch.allclose(bert_logits(student, AutoTokenizer.from_pretrained(out / "model-float"), texts),
                          bert_logits(teacher, AutoTokenizer.from_pretrained(tiny_teacher_dir), texts), atol=1e-5)


def test_iterative_pruning_trims_only_the_final_round(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 1}, measure={"latency": False})
    tree["student"] = {"kind": "pruned", "max_length": 32, "importance_examples": 32, "heads": 0.5, "rounds": 2,
                       "vocab": {"max_tokens": 400}}
    metrics = run_recipe(validate_recipe(tree))  # the rounds are pipeline stages
    out = Path(tree["output_dir"])
    first = json.loads((out / "rounds" / "1" / "model" / "config.json").read_text())
    final = json.loads((out / "model" / "config.json").read_text())
    # Round 2 re-scores round 1's model with the teacher's tokenizer, so round 1 keeps the full vocabulary.
    assert first["vocab_size"] == 1505 and "distilkit_vocab" not in first
    assert final["vocab_size"] == 400 and len(AutoTokenizer.from_pretrained(out / "model")) == 400
    assert final["model_type"] == "distilkit-pruned-bert" and metrics["student"]["vocab"]["kept"] == 400
