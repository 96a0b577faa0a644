"""Quantization: grids, integer kernels, save/reload round trips, QAT, recipes and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)

import distilkit  # noqa: F401  (registers quant_method "distilkit" with transformers)
from distilkit.cli import main as cli_main
from distilkit.core.measure import count_parameters, size_on_disk
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.convert import grids, prepare_qat, quantize_directory
from distilkit.methods.quantization.fake_quant import (
    Grid,
    dequantize_weight,
    fake_quantize,
    prepare_fake_quant,
    quantize_weight,
)
from distilkit.methods.quantization.layers import (
    QuantEmbedding,
    QuantLinear,
    QuantLSTM,
    pack,
    quantize_model,
    unpack,
)
from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=64, num_labels=3)
    return BertForSequenceClassification(config).eval()


def tiny_bilstm(seed: int = 0) -> BiLSTMForSequenceClassification:
    torch.manual_seed(seed)
    config = BiLSTMConfig(vocab_size=300, embedding_dim=32, hidden_size=24, mlp_hidden_size=16, num_labels=2,
                          pad_token_id=0)
    return BiLSTMForSequenceClassification(config).eval()


IDS = torch.randint(1, 300, (4, 16), generator=torch.Generator().manual_seed(1))


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


SCHEMES = {  # linear grid, embedding grid, backend
    "int8": (Grid(8), None, "fbgemm"),
    "int8+emb8": (Grid(8), Grid(8), "fbgemm"),
    "int8-int_mm": (Grid(8), Grid(8), "int_mm"),
    "int8-torchao": (Grid(8), Grid(8), "torchao"),
    "int4+emb4": (Grid(4), Grid(4), "fbgemm"),
    "asym8": (Grid(8, symmetric=False), None, "fbgemm"),
    "asym8+asym-emb4": (Grid(8, symmetric=False), Grid(4, symmetric=False), "fbgemm"),
    "per-tensor-int8": (Grid(8, per_channel=False), None, "fbgemm"),
    "ternary": (Grid(2, "ternary"), None, "fbgemm"),
    "binary": (Grid(2, "binary"), None, "fbgemm"),
}


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_round_trip_transformer(tmp_path, scheme):
    linear, embedding, backend = SCHEMES[scheme]
    if backend == "torchao":
        pytest.importorskip("torchao")
    float_model = tiny_bert()
    reference = logits(float_model)
    model = tiny_bert()
    table = quantize_model(model, linear, embedding, backend=backend)
    quantized = logits(model)
    model.save_pretrained(tmp_path / "q")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "q").eval()
    assert isinstance(reloaded.bert.encoder.layer[0].attention.self.query, QuantLinear)
    assert isinstance(reloaded.classifier, torch.nn.Linear) and "classifier" not in table["modules"]
    assert (embedding is not None) == isinstance(reloaded.bert.embeddings.word_embeddings, QuantEmbedding)
    torch.testing.assert_close(logits(reloaded), quantized, rtol=0, atol=1e-5)
    # Quantized but close to float: error grows as the grid gets coarser.
    tolerance = {8: 0.05, 4: 0.5, 2: 2.0}[min(linear.bits, embedding.bits if embedding else 8)]
    assert (quantized - reference).abs().max() < tolerance
    assert not torch.equal(quantized, reference)
    # Same logical parameter count; on disk smaller by roughly the bit width.
    assert count_parameters(reloaded) == count_parameters(float_model)
    float_model.save_pretrained(tmp_path / "float")
    assert size_on_disk(tmp_path / "q") < size_on_disk(tmp_path / "float") * (0.75 if embedding else 0.9)


@pytest.mark.parametrize("emb_bits", [8, 4])
def test_bilstm_student_embedding_and_lstm_round_trip(tmp_path, emb_bits):
    float_model = tiny_bilstm()
    model = tiny_bilstm()
    table = quantize_model(model, Grid(8), Grid(emb_bits))
    kinds = {spec["kind"] for spec in table["modules"].values()}
    assert kinds == {"linear", "lstm", "embedding"}
    assert isinstance(model.embeddings, QuantEmbedding) and isinstance(model.lstm, QuantLSTM)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded.embeddings, QuantEmbedding)
    torch.testing.assert_close(logits(reloaded), logits(model), rtol=0, atol=1e-5)
    assert (logits(model) - logits(float_model)).abs().max() < (0.05 if emb_bits == 8 else 0.3)
    # The FBGEMM int8 LSTM kernel computes what the dequantized float LSTM computes, up to activation rounding.
    dequantized = tiny_bilstm()
    quantize_model(dequantized, Grid(8), Grid(emb_bits), backend="int_mm")
    assert 0 < (logits(model) - logits(dequantized)).abs().max() < 0.02
    # Only integers are stored for the LSTM, not a float shadow copy.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any("_float" in key for key in keys)
    assert "lstm.weights.weight_ih_l0.qweight" in keys and "embeddings.qweight" in keys


def test_quantized_lstm_runs_the_float_kernel_at_batch_one():
    """Batch 1 takes the fused float LSTM on the dequantized weights (faster there); larger batches FBGEMM."""
    model, dequantized = tiny_bilstm(), tiny_bilstm()
    quantize_model(model, Grid(8), Grid(8))
    quantize_model(dequantized, Grid(8), Grid(8), backend="int_mm")  # always the float kernel
    with torch.no_grad():  # sentence vectors: the LSTM's output (the linear layers' kernels differ by backend)
        rows = [model.encode(IDS[i:i + 1]) for i in range(IDS.shape[0])]
        assert model.lstm._cells_cache is None, "batch 1 must not build the int8 cells"
        for i, row in enumerate(rows):
            torch.testing.assert_close(row, dequantized.encode(IDS[i:i + 1]), rtol=0, atol=1e-6)
        batched = model.encode(IDS)  # FBGEMM, activations rounded to int8 too: close, not equal
    assert model.lstm._cells_cache, "batches must use the int8 kernel"
    assert 0 < (torch.cat(rows) - batched).abs().max() < 0.02


@pytest.mark.parametrize("grid", [Grid(8), Grid(4), Grid(3), Grid(8, symmetric=False), Grid(4, symmetric=False),
                                  Grid(8, per_channel=False)])
def test_uniform_error_is_at_most_half_a_step(grid):
    w = torch.randn(32, 48) * torch.linspace(0.1, 3, 32)[:, None]
    q, scale, zero = quantize_weight(w, grid)
    assert q.min() >= grid.qmin and q.max() <= grid.qmax
    error = (dequantize_weight(q, scale, zero) - w).abs()
    assert (error <= scale[:, None] / 2 + 1e-6).all()
    # Packing to 2 or 4 bits per value and back is lossless.
    assert torch.equal(unpack(pack(q, grid), grid, w.shape[1]).to(torch.int16), q)


@pytest.mark.parametrize("mode,levels", [("ternary", 3), ("binary", 2)])
def test_ternary_and_binary_take_their_levels(mode, levels):
    w = torch.randn(64, 80)
    q, scale, _ = quantize_weight(w, Grid(2, mode))
    values = set(q.unique().tolist())
    assert values == ({-1, 0, 1} if levels == 3 else {-1, 1})
    assert len(fake_quantize(w, Grid(2, mode))[5].unique()) == levels  # one row: levels x its scale
    # The dequantized rows hold exactly +-scale (and 0).
    row = dequantize_weight(q, scale, None)[0]
    assert torch.allclose(row.abs().unique()[-1], scale[0])
    model = tiny_bert()
    quantize_model(model, Grid(2, mode))
    layer = model.bert.encoder.layer[0].output.dense
    assert len(layer.int_weight().unique()) == levels


def test_straight_through_gradient_and_qat_conversion_matches():
    model = tiny_bert()
    names = prepare_fake_quant(model, Grid(4), Grid(8), activation_bits=8)
    assert "bert.embeddings.word_embeddings" in names and "classifier" not in names
    model.train()
    loss = model(input_ids=IDS).logits.sum()
    loss.backward()
    grad = model.bert.encoder.layer[0].intermediate.dense.weight.grad
    assert grad is not None and grad.abs().sum() > 0  # rounding did not kill the gradient
    model.eval()
    fake = logits(model)
    # Converting the trained float weights on the same grids computes what QAT trained.
    converted = tiny_bert()
    converted.load_state_dict(model.state_dict())
    quantize_model(converted, Grid(4), Grid(8), backend="int_mm")
    assert (logits(converted) - fake).abs().max() < 1e-3
    # The FBGEMM kernel quantizes activations per tensor (7-bit): close to, not exactly, what QAT simulated.
    quantize_model(model, Grid(4), Grid(8), backend="fbgemm")
    assert (logits(model) - fake).abs().max() < 0.05


@pytest.mark.parametrize("scheme", ["bnb8", "bnb4-nf4", "bnb4-fp4"])
def test_bitsandbytes_round_trip(tmp_path, scheme):
    pytest.importorskip("bitsandbytes")
    src = tmp_path / "float"
    tiny_bert().save_pretrained(src)
    model = quantize_directory(src, tmp_path / "q", QuantizeConfig(linear=scheme))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "q").eval()
    assert "Linear" in type(reloaded.bert.encoder.layer[0].attention.self.query).__name__
    assert type(reloaded.bert.encoder.layer[0].attention.self.query) is not torch.nn.Linear
    assert type(reloaded.classifier) is torch.nn.Linear  # llm_int8_skip_modules keeps the head float
    torch.testing.assert_close(logits(reloaded), logits(model), rtol=0, atol=1e-4)
    assert (logits(model) - logits(tiny_bert())).abs().max() < 0.1
    assert count_parameters(reloaded) == count_parameters(tiny_bert())  # 4-bit packing is not fewer weights


@pytest.mark.parametrize("fields,message", [
    ({"linear": "bnb8", "embedding": "int8"}, "bitsandbytes embeddings cannot be saved"),
    ({"linear": "bnb4-nf4", "qat": True}, "not bitsandbytes"),
    ({"linear": "ternary", "symmetric": False}, "symmetric by definition"),
    ({"linear": "int4", "backend": "torchao"}, "torchao runs symmetric int8"),
    ({"linear": None, "embedding": None}, "nothing to quantize"),
    ({"linear": "int3"}, "linear"),
])
def test_unsupported_combinations_are_clear_errors(tmp_path, tiny_teacher_dir, capsys, fields, message):
    path = tmp_path / "recipe.yaml"
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, quantize=fields)
    import yaml
    path.write_text(yaml.safe_dump(tree))
    assert cli_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "quantize" in err and message in err and str(path) in err


def test_grids_follow_the_config():
    linear, embedding = grids(QuantizeConfig(linear="ternary", embedding="int4"))
    assert linear == Grid(2, "ternary") and embedding == Grid(4)
    assert grids(QuantizeConfig(linear="bnb8")) == (None, None)


def test_ptq_recipe_on_a_copy_of_the_teacher(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, student={"kind": "copy", "max_length": 32},
                       train={"epochs": 0}, quantize={"linear": "int8", "embedding": "int8"})
    tree["student"] = {"kind": "copy", "max_length": 32}
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    student = metrics["student"]
    assert student["quantization"]["linear"] == "int8"
    assert student["size_on_disk_bytes"] < student["float_size_on_disk_bytes"] * 0.5
    assert student["params"] == metrics["teacher"]["params"]
    # int8 of the teacher itself: accuracy within a few examples of the float copy.
    assert abs(student["metrics"]["accuracy"] - student["float_metrics"]["accuracy"]) <= 3 / 64
    assert student["float_metrics"] == metrics["teacher"]["metrics"]
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "distilkit"
    assert not (out / "model-quantized").exists() and (out / "model-float" / "model.safetensors").is_file()
    # Re-running the quantize step (a resumed run) keeps the quantized model instead of re-quantizing it.
    from distilkit.methods.quantization.convert import quantize_output
    before = (out / "model" / "model.safetensors").stat().st_mtime_ns
    quantize_output(out, validate_recipe(tree).quantize)
    assert (out / "model" / "model.safetensors").stat().st_mtime_ns == before
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    enc = tokenizer(["a gorgeous film", "dull"], padding=True, return_tensors="pt")
    quantized = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).eval()
    with torch.no_grad():
        diff = (quantized(**enc).logits - teacher(**enc).logits).abs().max()
    assert 0 < diff < 0.5


def test_qat_recipe_trains_a_bilstm_through_fake_quant(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, quantize={"linear": "int4", "embedding": "int4", "qat": True},
                       train={"epochs": 2})
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert isinstance(model.lstm, QuantLSTM) and model.embeddings.grid.bits == 4
    # The saved QAT model computes what training evaluated: the reloaded accuracy equals the best epoch's.
    assert metrics["student"]["metrics"] == metrics["student"]["float_metrics"]
    assert size_on_disk(out / "model") < size_on_disk(out / "model-float") / 4


def test_prepare_qat_names_the_problem_when_nothing_matches():
    from distilkit.core.errors import RecipeError
    with pytest.raises(RecipeError, match="skip_modules"):
        prepare_qat(tiny_bert(), QuantizeConfig(linear="int8", skip_modules=["bert", "classifier"]))


def test_cli_quantize(tmp_path, tiny_teacher_dir, capsys):
    out = tmp_path / "q"
    code = cli_main(["quantize", str(tiny_teacher_dir), "--out", str(out), "--embedding", "int8", "--task", "sst2",
                     "--data-dir", str(Path(__file__).parent / "fixtures" / "glue"), "--max-examples", "32"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "smaller" in printed and "quantized: {'accuracy'" in printed
    assert (out / "tokenizer.json").is_file()
    assert cli_main(["quantize", str(tiny_teacher_dir), "--out", str(out), "--linear", "bnb8",
                     "--embedding", "int8"]) == 2
    assert "bitsandbytes embeddings cannot be saved" in capsys.readouterr().err
    assert cli_main(["quantize", str(tmp_path), "--out", str(out)]) == 2
    assert "no config.json" in capsys.readouterr().err
