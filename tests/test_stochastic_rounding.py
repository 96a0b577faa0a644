"""``quantize.rounding: stochastic``: unbiased rounding onto the int8/int4/ternary/binary grids, in PTQ and QAT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

import distilkit  # noqa: F401  (registers quant_method "distilkit" with transformers)
from distilkit.cli import main as cli_main
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.convert import (
    conversion_rounding,
    prepare_qat,
    quantize_directory,
    quantize_in_place,
)
from distilkit.methods.quantization.fake_quant import (
    FakeQuantLinear,
    Grid,
    dequantize_weight,
    fake_quantize,
    prepare_fake_quant,
    quantize_weight,
)
from distilkit.methods.quantization.layers import QuantLinear, pack, unpack
from distilkit.methods.quantization.rounding import round_to_int
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe
from .test_quantize import IDS, logits, tiny_bert

UNIFORM = {"int8": Grid(8), "int4": Grid(4), "int3": Grid(3), "asym8": Grid(8, symmetric=False),
           "asym4": Grid(4, symmetric=False), "per-tensor-int8": Grid(8, per_channel=False)}
GRIDS = {**UNIFORM, "ternary": Grid(2, "ternary"), "binary": Grid(2, "binary")}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def offset_rows(grid: Grid, rows: int = 64, cols: int = 1024, offset: float = 0.3):
    """Rows whose grid scale is a known ``s`` (per row) and whose other weights all sit ``offset`` steps above
    an integer level; returns ``(w, s, mask of the offset weights)``."""
    s = torch.linspace(0.01, 0.05, rows)[:, None]
    if grid.symmetric:  # max|w| = qmax * s  ->  scale = s
        anchors = [grid.qmax]
        lowest = -grid.qmax
    else:  # max - min = qmax * s, min < 0 < max  ->  scale = s, integer zero point
        anchors = [-(grid.qmax // 2), grid.qmax - grid.qmax // 2]
        lowest = anchors[0]
    # Levels strictly inside the range, so level + offset stays on the grid.
    levels = torch.randint(lowest + 1, max(anchors) - 1, (rows, cols - len(anchors)), generator=gen(0)).float()
    anchors = torch.tensor(anchors, dtype=torch.float32)
    w = torch.cat([anchors.expand(rows, -1), levels + offset], dim=1) * s
    mask = torch.ones_like(w, dtype=torch.bool)
    mask[:, :len(anchors)] = False
    return w, s, mask


def test_round_to_int_is_unbiased_where_nearest_is_not():
    n = 400_000
    x = torch.randint(-100, 100, (n,), generator=gen(0)).float() + 0.3
    nearest = round_to_int(x, "nearest") - x
    stochastic = round_to_int(x, "stochastic", gen(1)) - x
    assert torch.allclose(nearest.mean(), torch.tensor(-0.3), atol=1e-4)  # every value loses 0.3
    # One Bernoulli(0.3) per value: the mean error has std sqrt(0.3 * 0.7 / n); allow 5 of them.
    assert stochastic.mean().abs() < 5 * math.sqrt(0.3 * 0.7 / n)
    assert ((stochastic + 0.3).abs() < 1e-4).float().mean().item() == pytest.approx(0.7, abs=0.01)  # rounded down
    assert torch.equal(round_to_int(x.round(), "stochastic", gen(2)), x.round())  # integers never move


@pytest.mark.parametrize("name", [name for name, grid in UNIFORM.items() if grid.per_channel])
def test_uniform_grids_remove_the_bias_of_a_constant_offset(name):
    grid = UNIFORM[name]  # offset_rows sets one scale per row
    w, s, mask = offset_rows(grid)
    errors = {}
    for rounding in ("nearest", "stochastic"):
        q, scale, zero = quantize_weight(w, grid, rounding, gen(3))
        torch.testing.assert_close(scale[:, None], s)  # the grid is the one offset_rows built
        errors[rounding] = ((dequantize_weight(q, scale, zero) - w) / s)[mask]  # in steps
    n = errors["stochastic"].numel()
    assert errors["nearest"].mean().item() == pytest.approx(-0.3, abs=1e-3)
    assert errors["stochastic"].mean().abs() < 5 * math.sqrt(0.3 * 0.7 / n)


@pytest.mark.parametrize("name", list(GRIDS))
def test_mean_of_many_stochastic_roundings_is_the_weight(name):
    """E[dequant(q)] = w on uniform grids; clip(w, -a, a) for binary; sign(w) min(|w|, a) for ternary."""
    grid, draws = GRIDS[name], 1024
    w = torch.randn(32, 128, generator=gen(4)) * torch.linspace(0.2, 2, 32)[:, None]
    g = gen(5)
    total = torch.zeros_like(w)
    kept_sign = torch.ones_like(w, dtype=torch.bool)
    for _ in range(draws):
        q, scale, zero = quantize_weight(w, grid, "stochastic", g)
        total += dequantize_weight(q, scale, zero)
        kept_sign &= q == torch.sign(w)
    mean, alpha = total / draws, scale[:, None]
    if grid.mode == "binary":
        expected, spread = w.clamp(-alpha, alpha), 1.0  # q in {-1, 1}: std <= 1
    elif grid.mode == "ternary":
        expected, spread = torch.sign(w) * torch.minimum(w.abs(), alpha), 0.5  # q in {0, s}: std <= 1/2
    else:  # floor or floor + 1: std <= 1/2. Unbiased inside the grid's range; both roundings saturate outside
        # it (an asymmetric grid's rounded zero point can leave its extreme weight half a step beyond).
        zp = zero[:, None] if zero is not None else 0
        lowest = -grid.qmax if grid.symmetric else 0
        expected = torch.minimum(torch.maximum(w, (lowest - zp) * alpha), (grid.qmax - zp) * alpha)
        spread = 0.5
    # Each element's mean has std <= spread * scale / sqrt(draws); 6 of them over 4096 elements.
    bound = 6 * spread * alpha / math.sqrt(draws)
    assert ((mean - expected).abs() <= bound).all()
    q_near, scale_near, zero_near = quantize_weight(w, grid)
    assert torch.equal(scale, scale_near)  # rounding changes integers only, never the scales
    nearest_error = (dequantize_weight(q_near, scale_near, zero_near) - expected).abs()
    assert (nearest_error > bound).any(), "nearest rounding should be off by more than the stochastic mean"
    if grid.mode == "binary":  # beyond alpha the sign is certain: no draw ever flipped it
        outside = w.abs() > alpha
        assert outside.any() and kept_sign[outside].all()
        assert not kept_sign[w.abs() < alpha / 2].any()  # P(flip) >= 1/4 there: 1024 draws flip each


@pytest.mark.parametrize("name", list(GRIDS))
def test_stochastic_integers_are_on_the_grid_and_next_to_nearest(name):
    grid = GRIDS[name]
    w = torch.randn(48, 96, generator=gen(6)) * 3
    q, scale, zero = quantize_weight(w, grid, "stochastic", gen(7))
    q_near, _, _ = quantize_weight(w, grid)
    assert q.dtype == torch.int16 and q.min() >= grid.qmin and q.max() <= grid.qmax
    levels = set(q.unique().tolist())
    if grid.mode == "binary":
        assert levels == {-1, 1}
    elif grid.mode == "ternary":
        assert levels == {-1, 0, 1}
        assert ((q == 0) | (q == torch.sign(w))).all()  # never the opposite sign
    else:
        # floor or ceil of w / scale, one of which is nearest's choice; so at most one step from w.
        assert ((q - q_near).abs() <= 1).all()
        assert ((dequantize_weight(q, scale, zero) - w).abs() <= scale[:, None] * (1 + 1e-5)).all()
        # Nearest has the smaller error at every single weight; stochastic trades it for no bias.
        near_err = (dequantize_weight(q_near, scale, zero) - w).abs()
        assert (near_err <= (dequantize_weight(q, scale, zero) - w).abs() + 1e-6).all()
    assert torch.equal(unpack(pack(q, grid), grid, w.shape[1]).to(torch.int16), q)


def test_the_same_seed_gives_the_same_integers():
    w = torch.randn(16, 64, generator=gen(8))
    first = quantize_weight(w, Grid(4), "stochastic", gen(9))[0]
    assert torch.equal(first, quantize_weight(w, Grid(4), "stochastic", gen(9))[0])
    assert not torch.equal(first, quantize_weight(w, Grid(4), "stochastic", gen(10))[0])

    def converted(rounding: str, seed: int) -> dict:
        model = tiny_bert()
        table = quantize_in_place(model, QuantizeConfig(linear="int4", embedding="int4", rounding=rounding),
                                  seed=seed)
        assert table["rounding"] == rounding and model.config.quantization_config["rounding"] == rounding
        return {k: v for k, v in model.state_dict().items() if k.endswith("qweight")}

    a, b, other, nearest = (converted("stochastic", 0), converted("stochastic", 0), converted("stochastic", 1),
                            converted("nearest", 0))
    assert a.keys() == nearest.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)
    assert not all(torch.equal(a[k], nearest[k]) for k in a)


def test_ptq_directory_reproduces_and_reloads(tmp_path, tiny_teacher_dir):
    cfg = QuantizeConfig(linear="ternary", rounding="stochastic")
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        quantize_directory(tiny_teacher_dir, tmp_path / name, cfg, seed=seed)
    saved = {name: load_file(tmp_path / name / "model.safetensors") for name in "abc"}
    keys = [k for k in saved["a"] if k.endswith("qweight")]
    assert keys and all(torch.equal(saved["a"][k], saved["b"][k]) for k in keys)
    assert not all(torch.equal(saved["a"][k], saved["c"][k]) for k in keys)
    config = json.loads((tmp_path / "a" / "config.json").read_text())["quantization_config"]
    assert config["rounding"] == "stochastic"
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "a").eval()
    layer = reloaded.bert.encoder.layer[0].attention.self.query
    assert isinstance(layer, QuantLinear) and set(layer.int_weight().unique().tolist()) <= {-1, 0, 1}


def test_fake_quant_rounds_stochastically_only_while_training():
    torch.manual_seed(0)
    float_layer = torch.nn.Linear(16, 8)
    layer = torch.nn.Linear(16, 8)
    layer.load_state_dict(float_layer.state_dict())
    prepare_fake_quant(torch.nn.ModuleDict({"fc": layer}), Grid(4), None, activation_bits=None,
                       rounding="stochastic")
    assert isinstance(layer, FakeQuantLinear) and layer.rounding == "stochastic"
    x = torch.randn(5, 16)
    layer.train()
    outputs = [layer(x) for _ in range(4)]
    assert any(not torch.equal(outputs[0], out) for out in outputs[1:]), "training forwards should differ"
    # Straight-through: the weight gradient is the float layer's, whatever the rounding drew.
    outputs[0].sum().backward()
    float_layer(x).sum().backward()
    torch.testing.assert_close(layer.weight.grad, float_layer.weight.grad)
    # Eval mode: deterministic, nearest: what the conversion after QAT stores.
    layer.eval()
    nearest = torch.nn.functional.linear(x, fake_quantize(layer.weight, Grid(4)), layer.bias)
    assert torch.equal(layer(x), nearest) and torch.equal(layer(x), layer(x))


def test_qat_converts_with_nearest_rounding():
    cfg = QuantizeConfig(linear="int4", embedding="int8", qat=True, rounding="stochastic")
    assert conversion_rounding(cfg) == "nearest"
    assert conversion_rounding(cfg.model_copy(update={"qat": False})) == "stochastic"
    model = tiny_bert()
    prepare_qat(model, cfg)
    model.train()
    model(input_ids=IDS).logits.sum().backward()  # one stochastic training forward and backward
    model.eval()
    evaluated = logits(model)
    table = quantize_in_place(model, cfg.model_copy(update={"backend": "int_mm"}), seed=0)
    assert table["rounding"] == "nearest"
    # int_mm computes what QAT's eval-mode fake quantization simulated (test_quantize's tolerance).
    assert (logits(model) - evaluated).abs().max() < 1e-3


def test_qat_recipe_with_stochastic_rounding_trains_saves_and_reloads(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, student={"kind": "copy", "max_length": 32},
                       train={"epochs": 1, "lr": 1e-3}, measure={"latency": False},
                       quantize={"linear": "int4", "qat": True, "rounding": "stochastic", "backend": "int_mm"})
    tree["student"] = {"kind": "copy", "max_length": 32}
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    losses = [rec["train/loss"] for rec in map(json.loads, (out / "logs" / "train_log.jsonl").read_text().splitlines())
              if "train/loss" in rec]
    assert losses and all(math.isfinite(v) for v in losses)
    assert metrics["student"]["quantization"]["rounding"] == "stochastic"
    config = json.loads((out / "model" / "config.json").read_text())["quantization_config"]
    assert config["rounding"] == "nearest"  # QAT converts deterministically
    model = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    assert isinstance(model.bert.encoder.layer[0].intermediate.dense, QuantLinear)
    assert model.bert.encoder.layer[0].intermediate.dense.int_weight().abs().max() <= Grid(4).qmax
    # Evaluation during training rounded to nearest, as the conversion did: the reloaded model scores the same.
    assert metrics["student"]["metrics"] == metrics["student"]["float_metrics"]
    # The float latent weights moved away from the teacher's: training happened.
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    trained = AutoModelForSequenceClassification.from_pretrained(out / "model-float")
    name = "bert.encoder.layer.0.intermediate.dense.weight"
    assert not torch.equal(trained.state_dict()[name], teacher.state_dict()[name])


def test_stochastic_rounding_with_bitsandbytes_is_a_named_error(tmp_path, tiny_teacher_dir, capsys):
    with pytest.raises(ValidationError, match="rounding: stochastic"):
        QuantizeConfig(linear="bnb8", rounding="stochastic")
    QuantizeConfig(linear="bnb8", rounding="nearest")  # the default stays valid
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe(tmp_path, tiny_teacher_dir,
                                               quantize={"linear": "bnb4-nf4", "rounding": "stochastic"})))
    assert cli_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "quantize" in err and "bitsandbytes" in err and "rounding" in err and str(path) in err
    with pytest.raises(ValidationError, match="rounding"):
        QuantizeConfig(rounding="up")
