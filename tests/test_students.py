"""Students: Tang et al. BiLSTM and the small transformer, built, run, saved and reloaded."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from distilkit.core.errors import RecipeError
from distilkit.core.plugins import resolve
from distilkit.models.bilstm import BiLSTMForSequenceClassification, encode_bilstm
from distilkit.models.bilstm_build import build_bilstm_student
from distilkit.models.transformer import (
    bottom_layers,
    build_transformer_student,
    encode_transformer,
    uniform_layers,
)
from distilkit.run.students import STUDENTS, encode_for_student, get_student_kind

from .conftest import assert_loads_without_distilkit


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(tiny_tokenizer_dir)


def bilstm(tokenizer, is_pair=False, **kw):
    torch.manual_seed(0)
    kw = {"embedding_dim": 16, "hidden_size": 8, "mlp_hidden_size": 8, **kw}
    model = build_bilstm_student(tokenizer=tokenizer, num_labels=2, problem_type="single_label_classification",
                                 is_pair=is_pair, **kw)
    return model.eval()


# ----------------------------------------------------------------------------------------------- BiLSTM


def test_bilstm_encoding_is_separate_and_without_special_tokens(tokenizer):
    batch = encode_bilstm(tokenizer, ["a good movie", "bad"], ["it is fine", ""], 32)
    assert set(batch) == {"input_ids", "attention_mask", "input_ids_b", "attention_mask_b"}
    assert batch["input_ids"][0].tolist() == tokenizer("a good movie", add_special_tokens=False)["input_ids"]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["attention_mask_b"].sum(dim=1).tolist() == [3, 0]
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    assert not specials & set(batch["input_ids"].flatten().tolist() + batch["input_ids_b"].flatten().tolist())
    assert encode_bilstm(tokenizer, ["a good movie about the year"], None, 2)["input_ids"].shape == (1, 2)
    assert encode_for_student("bilstm", tokenizer, ["good"], None, 8).keys() == {"input_ids", "attention_mask"}


def test_bilstm_padding_invariance(tokenizer):
    model = bilstm(tokenizer)
    alone = encode_bilstm(tokenizer, ["a good movie"], None, 32)
    batch = encode_bilstm(tokenizer, ["a good movie", "one of the worst films of the year , truly awful"], None, 32)
    assert batch["input_ids"].shape[1] > alone["input_ids"].shape[1]  # the first row really is padded
    with torch.no_grad():
        expected = model(**alone).logits
        torch.testing.assert_close(model(**batch).logits[:1], expected, atol=1e-6, rtol=0)
        # Left padding (some tokenizers' default) must not change anything either.
        n = alone["input_ids"].shape[1]
        left_ids = torch.cat([torch.zeros(1, 4, dtype=torch.long), alone["input_ids"]], dim=1)
        left_mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, n, dtype=torch.long)], dim=1)
        torch.testing.assert_close(model(input_ids=left_ids, attention_mask=left_mask).logits, expected,
                                   atol=1e-6, rtol=0)


def test_bilstm_max_pooling_is_the_max_over_real_tokens(tokenizer, tmp_path):
    """``pooling: max`` (Conneau et al. 2017): the element-wise max of the top layer's [forward, backward]
    outputs over the sentence's tokens, unchanged by padding on either side, kept through save/reload."""
    model = bilstm(tokenizer, pooling="max")
    alone = encode_bilstm(tokenizer, ["a good movie"], None, 32)
    batch = encode_bilstm(tokenizer, ["a good movie", "one of the worst films of the year , truly awful"], None, 32)
    with torch.no_grad():
        outputs, (hidden, _) = model.lstm(model.embeddings(alone["input_ids"]))
        expected = outputs[0].max(dim=0).values  # by hand: max over the 3 positions
        vector = model.encode(alone["input_ids"], alone["attention_mask"])[0]
        torch.testing.assert_close(vector, expected)
        assert not torch.allclose(vector, torch.cat([hidden[-2], hidden[-1]], dim=-1)[0])  # not the last states
        torch.testing.assert_close(model.encode(batch["input_ids"], batch["attention_mask"])[0], expected,
                                   atol=1e-6, rtol=0)  # right padding never wins the max
        n = alone["input_ids"].shape[1]
        left_ids = torch.cat([torch.zeros(1, 4, dtype=torch.long), alone["input_ids"]], dim=1)
        left_mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, n, dtype=torch.long)], dim=1)
        torch.testing.assert_close(model.encode(left_ids, left_mask)[0], expected, atol=1e-6, rtol=0)
        model.save_pretrained(tmp_path / "m")
        again = type(model).from_pretrained(tmp_path / "m").eval()
        assert again.config.pooling == "max"
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits)
    from distilkit.run.recipe_io import load_recipe

    recipes = Path(__file__).resolve().parent.parent / "recipes" / "glue" / "stsb"
    assert load_recipe(recipes / "bert-large-to-bilstm.yaml", ["student.pooling=max"]).student.pooling == "max"
    with pytest.raises(RecipeError, match="pooling"):
        load_recipe(recipes / "bert-large-to-bilstm.yaml", ["student.pooling=mean"])
    with pytest.raises(RecipeError, match="pooling"):  # a BiLSTM option: a transformer student has no such key
        load_recipe(recipes / "bert-large-to-small-transformer.yaml", ["student.pooling=max"])


def test_bilstm_pairs_are_siamese_and_use_both_sentences(tokenizer):
    model = bilstm(tokenizer, is_pair=True)
    assert model.mlp.in_features == 4 * 2 * 8  # [h1, h2, h1*h2, |h1-h2|]
    a = encode_bilstm(tokenizer, ["the film is good", "the film is good"], ["it is great", "it is bad"], 32)
    with torch.no_grad():
        logits = model(**a).logits
        h1 = model.encode(a["input_ids"], a["attention_mask"])
        h2 = model.encode(a["input_ids_b"], a["attention_mask_b"])
        swapped = model(input_ids=a["input_ids_b"], attention_mask=a["attention_mask_b"],
                        input_ids_b=a["input_ids"], attention_mask_b=a["attention_mask"]).logits
    assert logits.shape == swapped.shape == (2, 2)
    assert not torch.allclose(logits[0], logits[1]), "sentence b must change the prediction"
    torch.testing.assert_close(h1[0], h1[1])  # the same encoder reads both sides
    assert not torch.allclose(h2[0], h2[1])
    # Swapping a and b swaps h1/h2 but leaves the symmetric features h1*h2 and |h1-h2| unchanged.
    torch.testing.assert_close(h1 * h2, h2 * h1)
    torch.testing.assert_close((h1 - h2).abs(), (h2 - h1).abs())
    with pytest.raises(ValueError, match="input_ids_b"):
        model(input_ids=a["input_ids"], attention_mask=a["attention_mask"])
    with pytest.raises(ValueError, match="is_pair=False"):
        bilstm(tokenizer)(**a)


def test_bilstm_empty_sentences_loss_and_tuple_output(tokenizer):
    model = bilstm(tokenizer)
    batch = encode_bilstm(tokenizer, ["", "fine"], None, 32)
    out = model(**batch, labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 2) and torch.isfinite(out.loss)
    out.loss.backward()
    empty = encode_bilstm(tokenizer, ["", ""], None, 32)
    assert empty["input_ids"].shape == (2, 0)  # a batch of only empty sentences has no columns at all
    with torch.no_grad():
        torch.testing.assert_close(model(**empty).logits[0], model(**batch).logits[0])
    loss, logits = model(**batch, labels=torch.tensor([1, -100]), return_dict=False)
    assert logits.shape == (2, 2) and torch.isfinite(loss)


def test_bilstm_regression_loss_skips_nan(tokenizer):
    torch.manual_seed(0)
    model = build_bilstm_student(tokenizer=tokenizer, num_labels=1, problem_type="regression", is_pair=True,
                                 embedding_dim=8, hidden_size=4, mlp_hidden_size=4).eval()
    batch = encode_bilstm(tokenizer, ["good", "bad"], ["fine", "awful"], 8)
    out = model(**batch, labels=torch.tensor([0.5, float("nan")]))
    expected = (out.logits[0, 0] - 0.5) ** 2
    torch.testing.assert_close(out.loss, expected)


def test_bilstm_init_is_sensible(tokenizer):
    model = bilstm(tokenizer)
    assert torch.count_nonzero(model.embeddings.weight[tokenizer.pad_token_id]) == 0
    hidden = model.config.hidden_size
    assert torch.all(model.lstm.bias_ih_l0[hidden:2 * hidden] == 1), "forget-gate bias starts at 1"
    gate = model.lstm.weight_hh_l0[:hidden]
    torch.testing.assert_close(gate @ gate.T, torch.eye(hidden), atol=1e-5, rtol=0)  # orthogonal recurrence


def test_bilstm_save_reload_with_and_without_remote_code(tokenizer, tmp_path):
    # Teacher embeddings give the padding row a non-zero vector: reloading must keep it (empty sentences read it).
    model = bilstm(tokenizer, is_pair=True, teacher_embeddings=torch.randn(len(tokenizer), 12))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "distilkit-bilstm" and config["is_pair"] is True
    assert config["auto_map"]["AutoConfig"] == "bilstm.BiLSTMConfig"
    assert config["auto_map"]["AutoModelForSequenceClassification"] == "bilstm.BiLSTMForSequenceClassification"
    # The copied modeling file imports torch, transformers, the standard library and siblings copied beside it.
    files, seen = ["bilstm.py"], set()
    while files:
        name = files.pop()
        seen.add(name)
        tree = ast.parse((tmp_path / name).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.level == 0}
        assert imported <= {"__future__", "torch", "transformers", "warnings"}, f"{name} must be self-contained"
        siblings = {f"{node.module}.py" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
        assert all((tmp_path / sibling).is_file() for sibling in siblings), f"{name}'s relative imports not copied"
        files += sorted(siblings - seen)
    assert seen == {"bilstm.py", "bilstm_recurrence.py"}
    batch = encode_bilstm(tokenizer, ["good", "", "a bad one"], ["yes", "no", ""], 16)
    with torch.no_grad():
        expected = model(**batch).logits
        # distilkit is imported here, so the Auto classes know the BiLSTM: no remote code needed.
        again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
        assert type(again) is BiLSTMForSequenceClassification
        torch.testing.assert_close(again(**batch).logits, expected, atol=0, rtol=0)

    # A machine without distilkit: a fresh interpreter that never imports it loads the copied bilstm.py.
    assert_loads_without_distilkit(tmp_path, batch, expected, timeout=120)


def test_bilstm_embeddings_from_teacher(tokenizer):
    table = torch.randn(len(tokenizer), 12)
    model = bilstm(tokenizer, teacher_embeddings=table, freeze_embeddings=True)
    assert model.config.embedding_dim == 12 and model.config.vocab_size == len(tokenizer)
    assert torch.equal(model.embeddings.weight, table)
    assert not model.embeddings.weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("embeddings"))
    padded = torch.randn(len(tokenizer) + 3, 12)  # vocabularies padded to a multiple of 8 are fine
    assert torch.equal(bilstm(tokenizer, teacher_embeddings=padded).embeddings.weight, padded)
    with pytest.raises(ValueError, match="use the teacher's tokenizer"):
        bilstm(tokenizer, teacher_embeddings=torch.randn(5, 12))


def test_bilstm_pca_embeddings_keep_the_teachers_main_directions(tokenizer):
    from distilkit.models.bilstm_build import pca_project

    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(12, 12))[0][:3]  # the table varies along 3 directions, plus noise
    table = torch.randn(len(tokenizer), 3) * torch.tensor([9.0, 5.0, 3.0]) @ basis
    table = table + 0.01 * torch.randn_like(table) + 4.0
    model = bilstm(tokenizer, teacher_embeddings=table, embedding_dim=3, project_embeddings=True)
    rows = model.embeddings.weight
    assert rows.shape == (len(tokenizer), 3) and model.config.embedding_dim == 3
    # Three components keep the distances between word vectors (up to the noise) ...
    torch.testing.assert_close(torch.cdist(rows, rows), torch.cdist(table, table), atol=0.1, rtol=0.01)
    # ... and come out ordered by variance.
    variances = rows.var(dim=0)
    assert variances[0] > variances[1] > variances[2]
    with pytest.raises(ValueError, match="cannot project"):
        pca_project(table, 13)


# ------------------------------------------------------------------------------------------ transformer


def tiny(config_cls, model_cls, **kw):
    torch.manual_seed(0)
    config = config_cls(vocab_size=100, max_position_embeddings=64, num_labels=2, **kw)
    return model_cls(config).eval()


BERT = {"hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 32}
TEACHERS = [
    (BertConfig, BertForSequenceClassification, BERT, "bert"),
    (RobertaConfig, RobertaForSequenceClassification, {**BERT, "pad_token_id": 1}, "roberta"),
    (DistilBertConfig, DistilBertForSequenceClassification,
     {"dim": 16, "n_layers": 4, "n_heads": 2, "hidden_dim": 32}, "distilbert"),
    (ElectraConfig, ElectraForSequenceClassification, {**BERT, "embedding_size": 8}, "electra"),
]


@pytest.mark.parametrize("config_cls,model_cls,kw,prefix", TEACHERS, ids=[t[3] for t in TEACHERS])
def test_transformer_student_copies_chosen_layers(config_cls, model_cls, kw, prefix, tmp_path):
    teacher = tiny(config_cls, model_cls, **kw)
    student = build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=2,
                                        init_from_teacher_layers=[1, 3], teacher_model=teacher)
    assert type(student) is model_cls and student.base_model_prefix == prefix
    assert student.config.to_dict()["n_layers" if prefix == "distilbert" else "num_hidden_layers"] == 2
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for student_layer, teacher_layer in ((0, 1), (1, 3)):
        keys = [k for k in s_state if f".layer.{student_layer}." in k]
        assert keys
        for key in keys:
            torch.testing.assert_close(s_state[key], t_state[key.replace(f".layer.{student_layer}.",
                                                                         f".layer.{teacher_layer}.")])
    for key in [k for k in s_state if "embeddings" in k] + [k for k in s_state if not k.startswith(prefix)]:
        torch.testing.assert_close(s_state[key], t_state[key])  # embeddings, and the same-shaped head
    student.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(again) is model_cls and "auto_map" not in json.loads((tmp_path / "config.json").read_text())
    ids = torch.tensor([[2, 5, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(input_ids=ids).logits, student.eval()(input_ids=ids).logits)


def test_one_layer_student_reproduces_teacher_first_layer():
    teacher = tiny(BertConfig, BertForSequenceClassification, **{**BERT, "num_hidden_layers": 3})
    student = build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=1,
                                        init_from_teacher_layers=[0], teacher_model=teacher).eval()
    ids = torch.tensor([[2, 5, 7, 9, 11]])
    with torch.no_grad():
        t_hidden = teacher.bert(input_ids=ids, output_hidden_states=True).hidden_states[1]
        s_hidden = student.bert(input_ids=ids).last_hidden_state
    torch.testing.assert_close(s_hidden, t_hidden)


def test_student_from_bare_encoder_keeps_fresh_head_and_labels():
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=100, max_position_embeddings=64, **BERT)).eval()
    student = build_transformer_student(teacher_config=encoder.config, num_labels=3,
                                        problem_type="single_label_classification", num_layers=2,
                                        init_from_teacher_layers="uniform", teacher_model=encoder,
                                        id2label={0: "neg", 1: "neu", 2: "pos"})
    assert student.config.id2label == {0: "neg", 1: "neu", 2: "pos"} and student.config.label2id["pos"] == 2
    assert student.classifier.out_features == 3
    # "uniform" over 4 layers for 2: [1, 3] (ends with the top layer).
    torch.testing.assert_close(student.bert.encoder.layer[1].output.dense.weight,
                               encoder.encoder.layer[3].output.dense.weight)
    torch.testing.assert_close(student.bert.pooler.dense.weight, encoder.pooler.dense.weight)


def test_student_is_float32_and_layers_may_repeat():
    teacher = tiny(BertConfig, BertForSequenceClassification, **{**BERT, "num_hidden_layers": 2}).half()
    teacher.config.dtype = torch.float16
    student = build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=4,
                                        init_from_teacher_layers="uniform", teacher_model=teacher)
    assert {p.dtype for p in student.parameters()} == {torch.float32}
    assert teacher.config.dtype == torch.float16, "the teacher's config must not be modified"
    for j, i in enumerate([0, 0, 1, 1]):
        torch.testing.assert_close(student.bert.encoder.layer[j].attention.self.query.weight,
                                   teacher.bert.encoder.layer[i].attention.self.query.weight.float())


@pytest.mark.parametrize("config_cls,model_cls,kw,prefix", TEACHERS[:1] + TEACHERS[2:3], ids=["bert", "distilbert"])
def test_bottom_init_is_the_teacher_truncated(config_cls, model_cls, kw, prefix):
    teacher = tiny(config_cls, model_cls, **kw)
    student = build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=3,
                                        init_from_teacher_layers="bottom", teacher_model=teacher)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for j in range(3):  # student layer j is teacher layer j, every weight of it
        keys = [k for k in s_state if f".layer.{j}." in k]
        assert keys
        for key in keys:
            torch.testing.assert_close(s_state[key], t_state[key])
    assert not any(".layer.3." in k for k in s_state)
    # The truncated teacher computes the teacher's own first three layers.
    ids = torch.tensor([[2, 5, 7, 9, 11]])
    with torch.no_grad():
        t_hidden = getattr(teacher.eval(), prefix)(input_ids=ids, output_hidden_states=True).hidden_states[3]
        s_hidden = getattr(student.eval(), prefix)(input_ids=ids).last_hidden_state
    torch.testing.assert_close(s_hidden, t_hidden)
    assert bottom_layers(24, 6) == [0, 1, 2, 3, 4, 5] and bottom_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="'bottom' truncates the teacher, but the student has 5 layers"):
        build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                  problem_type="single_label_classification", num_layers=5,
                                  init_from_teacher_layers="bottom", teacher_model=teacher)


def test_transformer_student_errors_and_uniform():
    assert uniform_layers(12, 4) == [2, 5, 8, 11] and uniform_layers(6, 2) == [2, 5]
    assert uniform_layers(6, 6) == list(range(6)) and uniform_layers(6, 4) == [1, 2, 4, 5]
    teacher = tiny(BertConfig, BertForSequenceClassification, **BERT)
    common = {"teacher_config": teacher.config, "num_labels": 2, "problem_type": "single_label_classification",
              "teacher_model": teacher}
    with pytest.raises(ValueError, match=r"\[4\] out of range for a 4-layer teacher"):
        build_transformer_student(num_layers=2, init_from_teacher_layers=[0, 4], **common)
    with pytest.raises(ValueError, match="out of range"):
        build_transformer_student(num_layers=1, init_from_teacher_layers=[-1], **common)
    with pytest.raises(ValueError, match="has 1 indices for 2"):
        build_transformer_student(num_layers=2, init_from_teacher_layers=[0], **common)
    with pytest.raises(ValueError, match="hidden size is 8 but the teacher's is 16"):
        build_transformer_student(num_layers=2, hidden_size=8, num_attention_heads=2,
                                  init_from_teacher_layers="uniform", **common)
    with pytest.raises(ValueError, match="attention heads is 4"):
        build_transformer_student(num_layers=2, num_attention_heads=4, init_from_teacher_layers="uniform", **common)
    with pytest.raises(ValueError, match="'uniform' or 'bottom'"):
        build_transformer_student(num_layers=2, init_from_teacher_layers="even", **common)
    with pytest.raises(ValueError, match="needs the teacher model"):
        build_transformer_student(num_layers=2, init_from_teacher_layers="uniform",
                                  **{**common, "teacher_model": None})
    other = tiny(BertConfig, BertForSequenceClassification, **{**BERT, "intermediate_size": 24})
    with pytest.raises(ValueError, match="shape"):  # a teacher model that is not the config's architecture
        build_transformer_student(num_layers=2, init_from_teacher_layers="uniform", **{**common, "teacher_model": other})
    narrow = build_transformer_student(num_layers=2, hidden_size=8, num_attention_heads=2, intermediate_size=16,
                                       init_from_teacher_layers=None, **common)
    assert narrow.config.hidden_size == 8 and narrow.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 4, "the teacher's config must not be modified"


def test_regression_student_and_pair_encoding(tokenizer):
    teacher = tiny(BertConfig, BertForSequenceClassification, **{**BERT, "num_hidden_layers": 2})
    teacher.config.problem_type = "single_label_classification"
    student = build_transformer_student(teacher_config=teacher.config, num_labels=1, problem_type="regression",
                                        num_layers=1, init_from_teacher_layers="uniform", teacher_model=teacher)
    assert student.config.num_labels == 1 and student.config.problem_type == "regression"
    assert student.classifier.out_features == 1  # the teacher's 2-way head did not fit, so it is fresh
    enc = encode_transformer(tokenizer, ["a good movie"], ["fine"], 16)
    assert enc["input_ids"][0, 0].item() == tokenizer.cls_token_id
    assert enc["token_type_ids"].tolist()[0].count(1) == 2  # "fine" + [SEP]


def test_minilm_student_from_real_encoder(minilm):
    encoder = AutoModel.from_pretrained(minilm)
    student = build_transformer_student(teacher_config=encoder.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=2,
                                        init_from_teacher_layers=[0, 5], teacher_model=encoder)
    assert type(student) is BertForSequenceClassification and student.config.num_hidden_layers == 2
    for j, i in ((0, 0), (1, 5)):
        s_layer, t_layer = student.bert.encoder.layer[j].state_dict(), encoder.encoder.layer[i].state_dict()
        assert s_layer.keys() == t_layer.keys()
        for key in s_layer:
            torch.testing.assert_close(s_layer[key], t_layer[key])
    torch.testing.assert_close(student.bert.embeddings.word_embeddings.weight,
                               encoder.embeddings.word_embeddings.weight)
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    with torch.no_grad():
        logits = student.eval()(**encode_transformer(tokenizer, ["a fine film"], None, 16)).logits
    assert logits.shape == (1, 2) and torch.isfinite(logits).all()


def test_student_registry():
    assert set(STUDENTS) == {"bilstm", "transformer", "copy", "pruned", "linear_attention"}
    # builders and encoders are dotted paths (the registry imports no torch), resolved when a student is built
    assert resolve(get_student_kind("bilstm").encode) is encode_bilstm
    assert resolve(get_student_kind("pruned").encode) is encode_transformer
    with pytest.raises(RecipeError, match="available: bilstm, transformer, copy, pruned, linear_attention"):
        get_student_kind("cnn")
