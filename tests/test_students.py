"""Students: Tang et al. BiLSTM and the small transformer, built, run, saved and reloaded."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from distilkit.errors import RecipeError
from distilkit.students import STUDENTS, get_student_kind
from distilkit.students.bilstm import build_bilstm_student, encode_bilstm
from distilkit.students.transformer import build_transformer_student, encode_transformer, uniform_layers


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def bilstm(tokenizer, is_pair=False, **kw):
    torch.manual_seed(0)
    model = build_bilstm_student(tokenizer=tokenizer, num_labels=2, problem_type="single_label_classification",
                                 is_pair=is_pair, embedding_dim=16, hidden_size=8, mlp_hidden_size=8, **kw)
    return model.eval()


def test_bilstm_padding_invariance(tokenizer):
    model = bilstm(tokenizer)
    alone = encode_bilstm(tokenizer, ["a good movie"], None, 32)
    batch = encode_bilstm(tokenizer, ["a good movie", "one of the worst films of the year , truly awful"], None, 32)
    assert batch["input_ids"].shape[1] > alone["input_ids"].shape[1]  # the first row really is padded
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits[:1], model(**alone).logits, atol=1e-6, rtol=0)
    assert tokenizer.cls_token_id not in batch["input_ids"].tolist()[0], "BiLSTM inputs carry no special tokens"


def test_bilstm_pairs_are_siamese_and_use_both_sentences(tokenizer):
    model = bilstm(tokenizer, is_pair=True)
    assert model.mlp.in_features == 4 * 2 * 8  # [h1, h2, h1*h2, |h1-h2|]
    a = encode_bilstm(tokenizer, ["the film is good", "the film is good"], ["it is great", "it is bad"], 32)
    with torch.no_grad():
        logits = model(**a).logits
        h1 = model.encode(a["input_ids"], a["attention_mask"])
        h2 = model.encode(a["input_ids_b"], a["attention_mask_b"])
    assert not torch.allclose(logits[0], logits[1]), "sentence b must change the prediction"
    torch.testing.assert_close(h1[0], h1[1])  # the same encoder reads both sides
    assert not torch.allclose(h2[0], h2[1])
    with pytest.raises(ValueError, match="input_ids_b"):
        model(input_ids=a["input_ids"], attention_mask=a["attention_mask"])


def test_bilstm_empty_sentence_and_loss(tokenizer):
    model = bilstm(tokenizer)
    batch = encode_bilstm(tokenizer, ["", "fine"], None, 32)
    out = model(**batch, labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 2) and torch.isfinite(out.loss)


def test_bilstm_save_reload_with_and_without_remote_code(tokenizer, tmp_path):
    model = bilstm(tokenizer, is_pair=True)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith("BiLSTMForSequenceClassification")
    assert (tmp_path / "bilstm.py").is_file(), "the modeling file travels with the weights"
    batch = encode_bilstm(tokenizer, ["good", "a bad one"], ["yes", "no"], 16)
    with torch.no_grad():
        expected = model(**batch).logits
        for kwargs in ({"trust_remote_code": True}, {}):
            again = AutoModelForSequenceClassification.from_pretrained(tmp_path, **kwargs).eval()
            torch.testing.assert_close(again(**batch).logits, expected)


def test_bilstm_embeddings_from_teacher(tokenizer):
    table = torch.randn(len(tokenizer) + 3, 12)
    model = bilstm(tokenizer, teacher_embeddings=table, freeze_embeddings=True)
    assert model.config.embedding_dim == 12 and torch.equal(model.embeddings.weight, table)
    assert not model.embeddings.weight.requires_grad
    with pytest.raises(ValueError, match="use the teacher's tokenizer"):
        bilstm(tokenizer, teacher_embeddings=torch.randn(5, 12))


def tiny(config_cls, model_cls, **kw):
    torch.manual_seed(0)
    config = config_cls(vocab_size=100, max_position_embeddings=64, num_labels=2, **kw)
    return model_cls(config).eval()


TEACHERS = [
    (BertConfig, BertForSequenceClassification,
     {"hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 32}, "bert"),
    (RobertaConfig, RobertaForSequenceClassification,
     {"hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 32,
      "pad_token_id": 1}, "roberta"),
    (DistilBertConfig, DistilBertForSequenceClassification,
     {"dim": 16, "n_layers": 4, "n_heads": 2, "hidden_dim": 32}, "distilbert"),
]


@pytest.mark.parametrize("config_cls,model_cls,kw,prefix", TEACHERS, ids=[t[3] for t in TEACHERS])
def test_transformer_student_copies_chosen_layers(config_cls, model_cls, kw, prefix, tmp_path):
    teacher = tiny(config_cls, model_cls, **kw)
    student = build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=2,
                                        init_from_teacher_layers=[1, 3], teacher_model=teacher)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    layer_keys = [k for k in s_state if ".layer.1." in k]
    assert layer_keys
    for key in layer_keys:
        torch.testing.assert_close(s_state[key], t_state[key.replace(".layer.1.", ".layer.3.")])
    emb = next(k for k in s_state if "word_embeddings" in k)
    torch.testing.assert_close(s_state[emb], t_state[emb])
    student.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(again) is model_cls
    ids = torch.tensor([[2, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(input_ids=ids).logits, student.eval()(input_ids=ids).logits)


def test_one_layer_student_reproduces_teacher_first_layer():
    teacher = tiny(BertConfig, BertForSequenceClassification, hidden_size=16, num_hidden_layers=3,
                   num_attention_heads=2, intermediate_size=32)
    student = build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=1,
                                        init_from_teacher_layers=[0], teacher_model=teacher).eval()
    ids = torch.tensor([[2, 5, 7, 9, 11]])
    with torch.no_grad():
        t_hidden = teacher.bert(input_ids=ids, output_hidden_states=True).hidden_states[1]
        s_hidden = student.bert(input_ids=ids).last_hidden_state
    torch.testing.assert_close(s_hidden, t_hidden)


def test_transformer_student_errors_and_uniform():
    assert uniform_layers(12, 4) == [2, 5, 8, 11] and uniform_layers(6, 2) == [2, 5] and uniform_layers(6, 6) == list(range(6))
    teacher = tiny(BertConfig, BertForSequenceClassification, hidden_size=16, num_hidden_layers=4,
                   num_attention_heads=2, intermediate_size=32)
    common = {"teacher_config": teacher.config, "num_labels": 2, "problem_type": "single_label_classification",
              "teacher_model": teacher}
    with pytest.raises(ValueError, match="out of range"):
        build_transformer_student(num_layers=2, init_from_teacher_layers=[0, 4], **common)
    with pytest.raises(ValueError, match="has 1 indices for 2"):
        build_transformer_student(num_layers=2, init_from_teacher_layers=[0], **common)
    with pytest.raises(ValueError, match="hidden and FFN sizes"):
        build_transformer_student(num_layers=2, hidden_size=8, num_attention_heads=2,
                                  init_from_teacher_layers="uniform", **common)
    narrow = build_transformer_student(num_layers=2, hidden_size=8, num_attention_heads=2, intermediate_size=16,
                                       init_from_teacher_layers=None, **common)
    assert narrow.config.hidden_size == 8 and narrow.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 4, "the teacher's config must not be modified"


def test_regression_student_and_pair_encoding(tokenizer):
    teacher = tiny(BertConfig, BertForSequenceClassification, hidden_size=16, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=32)
    student = build_transformer_student(teacher_config=teacher.config, num_labels=1, problem_type="regression",
                                        num_layers=1, init_from_teacher_layers="uniform", teacher_model=teacher)
    assert student.config.num_labels == 1 and student.config.problem_type == "regression"
    enc = encode_transformer(tokenizer, ["a good movie"], ["fine"], 16)
    assert enc["token_type_ids"].tolist()[0].count(1) == 2  # "fine" + [SEP]


def test_minilm_student_from_real_encoder(minilm):
    encoder = AutoModel.from_pretrained(minilm)
    student = build_transformer_student(teacher_config=encoder.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=2,
                                        init_from_teacher_layers=[0, 5], teacher_model=encoder)
    torch.testing.assert_close(student.bert.encoder.layer[1].attention.self.query.weight,
                               encoder.encoder.layer[5].attention.self.query.weight)
    torch.testing.assert_close(student.bert.embeddings.word_embeddings.weight,
                               encoder.embeddings.word_embeddings.weight)


def test_student_registry():
    assert set(STUDENTS) == {"bilstm", "transformer"}
    with pytest.raises(RecipeError, match="available: bilstm, transformer"):
        get_student_kind("cnn")
