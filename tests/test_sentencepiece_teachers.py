"""Teachers whose tokenizer is SentencePiece -- ALBERT, XLM-R, DeBERTa-v3 (tiny random configs, a SentencePiece
model trained in a temporary folder): distillation into a BiLSTM and a small transformer, the logit cache,
quantization; pruning and linear attention where supported (XLM-R), named preflight errors elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import distilkit  # noqa: F401  (registers the distilkit classes with transformers)
from distilkit.core.errors import RecipeError
from distilkit.data.logit_cache import label_with_teacher
from distilkit.methods.linear_attention import config as linear_config
from distilkit.methods.linear_attention.linear import LINEAR_CLASSES
from distilkit.methods.pruning import config as pruning_config
from distilkit.methods.pruning import pruned
from distilkit.models.teachers import load_hf_teacher
from distilkit.run.distill import run
from distilkit.run.preflight import preflight
from distilkit.run.recipe_io import validate_recipe

from .sentencepiece_teachers import FAMILIES, make_sentencepiece_teacher
from .test_distill import tiny_recipe, train_losses

TEXTS = ["a gorgeous , witty film", "dull and lifeless", "the best movie of the year"]


@pytest.fixture(scope="module", params=list(FAMILIES))
def sp_teacher(request, tmp_path_factory) -> tuple[str, Path]:
    family = request.param
    return family, make_sentencepiece_teacher(tmp_path_factory.mktemp(f"teacher-{family}"), family)


def recipe(tmp_path: Path, teacher: Path, student: dict, **sections) -> dict:
    tree = tiny_recipe(tmp_path, teacher, train={"epochs": 1}, measure={"latency": False})
    tree["data"].update(max_train_examples=96, max_eval_examples=48)
    tree["student"] = {"max_length": 32, **student}
    tree.update(sections)
    return tree


def teacher_logits(teacher: Path, texts=TEXTS) -> torch.Tensor:
    model = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    enc = AutoTokenizer.from_pretrained(teacher)(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


def test_teacher_reads_sentencepiece_pieces(sp_teacher):
    family, teacher = sp_teacher
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    pieces = tokenizer.tokenize(TEXTS[0])
    assert pieces[0].startswith("▁") and tokenizer.unk_token not in pieces, pieces
    assert AutoModelForSequenceClassification.from_pretrained(teacher).config.model_type == family


def test_logit_cache_keys_and_reuses_sentencepiece_teachers(sp_teacher, tmp_path):
    _, teacher = sp_teacher
    ds = Dataset.from_dict({"id": ["a", "b", "c"], "text_a": TEXTS, "text_b": [None] * 3, "label": [0, 1, 0]})
    hf = load_hf_teacher(str(teacher), num_labels=2, problem_type="single_label_classification")
    first = label_with_teacher(hf, ds, cache_dir=tmp_path)
    assert not first.hit
    np.testing.assert_allclose(first.aligned(ds["id"]), teacher_logits(teacher).numpy(), atol=1e-5)
    again = load_hf_teacher(str(teacher), num_labels=2, problem_type="single_label_classification")
    assert label_with_teacher(again, ds, cache_dir=tmp_path).hit


def test_distils_into_bilstm_and_transformer(sp_teacher, tmp_path):
    family, teacher = sp_teacher
    cache = tmp_path / "cache"
    bilstm = recipe(tmp_path / "bilstm", teacher, {"kind": "bilstm", "hidden_size": 24, "mlp_hidden_size": 24},
                    cache={"dir": str(cache)})
    metrics = run(validate_recipe(bilstm))
    tokenizer = AutoTokenizer.from_pretrained(Path(bilstm["output_dir"]) / "model")
    model = AutoModelForSequenceClassification.from_pretrained(Path(bilstm["output_dir"]) / "model")
    # The BiLSTM reads the teacher's pieces, its rows start from the teacher's (ALBERT: 16-d factorised table).
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert tokenizer.tokenize(TEXTS[1]) == AutoTokenizer.from_pretrained(teacher).tokenize(TEXTS[1])
    losses = train_losses(Path(bilstm["output_dir"]))
    assert metrics["student"]["params"] > 0 and losses[-1] < losses[0]  # it learns from the teacher's logits
    entries = sorted((cache / "teacher_logits").iterdir())
    transformer = recipe(tmp_path / "transformer", teacher, {"kind": "transformer", "num_layers": 1},
                         cache={"dir": str(cache)})
    run(validate_recipe(transformer))
    assert sorted((cache / "teacher_logits").iterdir()) == entries  # same teacher and data: cache hits
    student = AutoModelForSequenceClassification.from_pretrained(Path(transformer["output_dir"]) / "model").eval()
    assert student.config.model_type == family and student.config.num_hidden_layers == 1
    enc = AutoTokenizer.from_pretrained(Path(transformer["output_dir"]) / "model")(TEXTS, padding=True,
                                                                                  return_tensors="pt")
    with torch.no_grad():
        assert student(**enc).logits.shape == (3, 2)


def test_quantized_copy_tracks_the_teacher(sp_teacher, tmp_path):
    _, teacher = sp_teacher
    tree = recipe(tmp_path, teacher, {"kind": "copy"}, quantize={"linear": "int8", "embedding": "int8"})
    tree["train"] = {**tree["train"], "epochs": 0}
    metrics = run(validate_recipe(tree))
    assert metrics["student"]["quantization"]["linear"] == "int8"
    quantized = teacher_logits(Path(tree["output_dir"]) / "model")
    reference = teacher_logits(teacher)
    assert not torch.equal(quantized, reference)  # the weights really are on the int8 grid
    torch.testing.assert_close(quantized, reference, atol=0.1 * reference.abs().max().item(), rtol=0)


def test_low_rank_factorisation_of_sentencepiece_teachers(sp_teacher, tmp_path):
    family, teacher = sp_teacher
    tree = recipe(tmp_path, teacher, {"kind": "copy"}, factorize={"rank": 4})
    metrics = run(validate_recipe(tree))
    assert metrics["student"]["factorize"]["ranks"] and set(metrics["student"]["factorize"]["ranks"].values()) == {4}
    student = AutoModelForSequenceClassification.from_pretrained(Path(tree["output_dir"]) / "model")
    assert student.config.model_type == family
    assert metrics["student"]["params"] < metrics["teacher"]["params"]


@pytest.mark.parametrize("family", ["albert", "deberta-v2"])
@pytest.mark.parametrize(("student", "method"), [
    ({"kind": "pruned", "heads": 0.5}, "pruning"),
    ({"kind": "pruned", "blocks": {"granularity": "rows", "sparsity": 0.5}}, "block pruning"),
    ({"kind": "linear_attention", "variant": "elu"}, "linear attention"),
])
def test_unsupported_architectures_are_named_in_preflight(tmp_path, family, student, method):
    teacher = make_sentencepiece_teacher(tmp_path / "teacher", family)
    tree = recipe(tmp_path, teacher, student)
    with pytest.raises(RecipeError) as err:
        preflight(validate_recipe(tree), "r.yaml")
    message = str(err.value)
    assert message.startswith(f"r.yaml: student.kind: {student['kind']} ({method}) supports model types ")
    reason = {"albert": "ALBERT shares one set of layer weights", "deberta-v2": "DeBERTa-v2/v3's disentangled"}
    assert f"is model type '{family}': {reason[family]}" in message, message
    assert not Path(tree["output_dir"]).exists()


@pytest.mark.parametrize("student", [{"kind": "pruned", "heads": 0.5, "ffn": 0.25, "importance_examples": 32},
                                     {"kind": "pruned", "blocks": {"granularity": "rows", "sparsity": 0.5}},
                                     {"kind": "linear_attention", "variant": "elu"}],
                         ids=["structural", "blocks", "linear"])
def test_xlm_roberta_is_pruned_and_swapped_as_roberta(tmp_path_factory, tmp_path, student):
    teacher = make_sentencepiece_teacher(tmp_path_factory.mktemp("xlmr"), "xlm-roberta")
    tree = recipe(tmp_path, teacher, student)
    preflight(validate_recipe(tree), "r.yaml")  # supported: no error
    run(validate_recipe(tree))
    out = Path(tree["output_dir"]) / "model"
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.model_type.endswith("-roberta")
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.tokenize(TEXTS[0]) == AutoTokenizer.from_pretrained(teacher).tokenize(TEXTS[0])
    saved = teacher_logits(out)
    assert not torch.allclose(saved, teacher_logits(teacher))  # pruned / linear: a different network
    if student["kind"] == "pruned" and "heads" in student:
        shapes = model.config.distilkit_pruning
        assert sum(shapes["heads"]) < 4 and sum(shapes["intermediate_sizes"]) < 128, shapes


def test_supported_model_types_agree_with_the_remote_code():
    """The light preflight lists and the self-contained saved-model modules name the same architectures."""
    assert pruning_config.MODEL_TYPE_TWINS == pruned.TWINS
    assert set(pruning_config.PRUNABLE_MODEL_TYPES) == set(pruned.FAMILIES) | set(pruned.TWINS)
    assert set(linear_config.LINEAR_ATTENTION_MODEL_TYPES) == set(LINEAR_CLASSES) | set(linear_config.MODEL_TYPE_TWINS)
