"""Tensor-train and block-term factorisation (issue 26): TT-SVD exactness and its error bound, the contraction
against the rebuilt matrix, parameter counts, the budget rule, save/reload/retrain through from_pretrained, the
recipe section end to end, ONNX export, and the named errors."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import distilkit  # noqa: F401  (registers quant_method distilkit-low-rank with transformers)
from distilkit.core.errors import RecipeError
from distilkit.methods.low_rank.block_term import BlockTermLinear, bt_parameters
from distilkit.methods.low_rank.factorize import factorize_model
from distilkit.methods.low_rank.tensor_train import TTLinear, tt_parameters, tt_svd, unfolding_bounds
from distilkit.methods.low_rank.tensorize import balanced_factors
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .conftest import FIXTURES, copy_student_recipe
from .test_low_rank import bert_inputs, logits, tiny_bert


def random_linear(out_features: int, in_features: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features)


def unfolding(weight: torch.Tensor, out_factors: list[int], in_factors: list[int], k: int) -> torch.Tensor:
    """The ``k``-th unfolding of the TT-matrix tensor, built entry by entry from the index arithmetic of Novikov
    et al. 2015 (row: the digits ``(i_1, j_1, ..., i_k, j_k)``, column: the rest), not from the module's reshape."""
    d = len(out_factors)
    modes = [m * n for m, n in zip(out_factors, in_factors, strict=True)]
    matrix = torch.zeros(math.prod(modes[:k]), math.prod(modes[k:]), dtype=torch.float64)
    for i_digits in itertools.product(*map(range, out_factors)):
        row_i = sum(i * math.prod(out_factors[p + 1:]) for p, i in enumerate(i_digits))
        for j_digits in itertools.product(*map(range, in_factors)):
            col_j = sum(j * math.prod(in_factors[p + 1:]) for p, j in enumerate(j_digits))
            mode_index = [i_digits[p] * in_factors[p] + j_digits[p] for p in range(d)]
            row = sum(mode_index[p] * math.prod(modes[p + 1:k]) for p in range(k))
            col = sum(mode_index[p] * math.prod(modes[p + 1:]) for p in range(k, d))
            matrix[row, col] = weight[row_i, col_j]
    return matrix


# --------------------------------------------------------------------------------------------- tensor train
@pytest.mark.parametrize(("out_factors", "in_factors"), [([2, 3, 4], [4, 4, 3]), ([4, 6], [3, 8]),
                                                         ([2, 2, 3, 2], [3, 2, 2, 2])])
def test_full_rank_tt_reproduces_the_layer(out_factors, in_factors):
    linear = random_linear(math.prod(out_factors), math.prod(in_factors))
    ranks = unfolding_bounds(out_factors, in_factors)
    factored = TTLinear.from_linear(linear, in_factors, out_factors, ranks)
    torch.testing.assert_close(factored.weight, linear.weight, atol=1e-5, rtol=1e-5)
    x = torch.randn(2, 5, linear.in_features)
    torch.testing.assert_close(factored(x), linear(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ranks", [[3, 4], [1, 1], [6, 2], [8, 11]])
def test_tt_svd_error_is_within_the_sum_of_discarded_unfolding_energies(ranks):
    """Oseledets 2011, Theorem 2.2: ``||W - TT||_F^2 <= sum_k sum_{j > r_k} sigma_j(W_k)^2``; the algorithm's own
    discarded energies add up to the error exactly (its left cores are orthonormal)."""
    out_factors, in_factors = [2, 3, 4], [4, 4, 3]
    weight = random_linear(24, 48, seed=3).weight.detach()
    cores, discarded = tt_svd(weight, out_factors, in_factors, ranks)
    layer = TTLinear(48, 24, in_factors, out_factors, ranks)
    with torch.no_grad():
        for param, core in zip(layer.cores, cores, strict=True):
            param.copy_(core)
    error = float((layer.weight.detach().double() - weight.double()).pow(2).sum())
    bound = 0.0
    for k, rank in enumerate(ranks, start=1):
        squares = torch.linalg.svdvals(unfolding(weight.double(), out_factors, in_factors, k)).pow(2)
        bound += float(squares[rank:].sum())
    assert error <= bound * (1 + 1e-5) + 1e-9
    assert error == pytest.approx(sum(discarded), rel=1e-4)
    if ranks == [8, 11]:  # one short of full rank at bond 2 only: the bound is attained
        assert error == pytest.approx(bound, rel=1e-4)


def test_contracting_the_cores_equals_rebuilding_the_matrix():
    torch.manual_seed(0)
    layer = TTLinear(48, 24, [4, 4, 3], [2, 3, 4], [3, 5])
    x = torch.randn(3, 7, 48)
    dense = x @ layer.weight.T + layer.bias
    torch.testing.assert_close(layer._contract(x), dense, atol=1e-5, rtol=1e-5)
    small = TTLinear(4096, 4096, [16, 16, 16], [16, 16, 16], [1, 1])  # rank 1: the contraction is cheaper
    assert small._contract_cost < 4096 * 4096
    x = torch.randn(2, 4096)
    torch.testing.assert_close(small(x), x @ small.weight.T + small.bias, atol=1e-4, rtol=1e-4)


def test_inference_reuses_the_rebuilt_matrix_until_a_core_changes():
    layer = TTLinear.from_linear(random_linear(24, 48), [4, 4, 3], [2, 3, 4], [3, 4])
    x = torch.randn(64, 48)  # enough tokens that rebuilding W beats contracting the cores (5760 + 64 * 1152 <
    assert layer._rebuild_cost + 64 * 48 * 24 < 64 * layer._contract_cost  # 64 * 1440 multiply-adds)
    with torch.no_grad():
        first = layer(x)
        assert torch.equal(layer(x), first) and "_cached_weight" in layer.__dict__
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).pow(2).sum().backward()
    optimizer.step()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(layer(x), first)


def test_block_term_inference_reuses_the_rebuilt_matrix_until_a_parameter_changes(monkeypatch):
    layer = BlockTermLinear.from_linear(random_linear(24, 48), [4, 4, 3], [2, 3, 4], blocks=2, rank=3)
    x = torch.randn(5, 48)
    rebuilds = []
    build = BlockTermLinear.weight.fget
    monkeypatch.setattr(BlockTermLinear, "weight", property(lambda self: rebuilds.append(1) or build(self)))
    with torch.no_grad():
        first = layer(x)
        assert torch.equal(layer(x), first) and len(rebuilds) == 1  # the second call reused W
        torch.testing.assert_close(first, x @ build(layer).T + layer.bias, atol=1e-6, rtol=1e-6)
    layer(x).pow(2).sum().backward()  # with autograd: rebuilt every call, so gradients reach the blocks
    assert len(rebuilds) == 2 and layer.core.grad is not None
    torch.optim.SGD(layer.parameters(), lr=0.1).step()
    with torch.no_grad():
        after = layer(x)
    assert len(rebuilds) == 3 and not torch.allclose(after, first)  # a changed parameter: rebuilt again
    torch.testing.assert_close(after, x @ build(layer).T + layer.bias, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("out_factors", "in_factors", "ranks"), [([2, 3, 4], [4, 4, 3], [3, 5]),
                                                                   ([4, 6], [3, 8], [7]),
                                                                   ([2, 2, 3, 2], [3, 2, 2, 2], [2, 5, 3])])
def test_parameter_counts_are_exact(out_factors, in_factors, ranks):
    layer = TTLinear(math.prod(in_factors), math.prod(out_factors), in_factors, out_factors, ranks, bias=False)
    assert sum(p.numel() for p in layer.parameters()) == tt_parameters(out_factors, in_factors, ranks)
    for blocks, rank in ((1, 2), (3, 5), (2, 50)):
        bt = BlockTermLinear(layer.in_features, layer.out_features, in_factors, out_factors, blocks, rank, False)
        modes = [m * n for m, n in zip(out_factors, in_factors, strict=True)]
        assert sum(p.numel() for p in bt.parameters()) == bt_parameters(modes, blocks, rank)


def test_balanced_factors():
    assert balanced_factors(384, 3) == [8, 8, 6] and balanced_factors(1536, 3) == [16, 12, 8]
    assert balanced_factors(32, 3) == [4, 4, 2] and balanced_factors(7, 2) == [7, 1]
    for n, d in ((768, 4), (3072, 3), (30, 2)):
        assert math.prod(balanced_factors(n, d)) == n and len(balanced_factors(n, d)) == d


# --------------------------------------------------------------------------------------------- block term
def test_one_full_rank_block_reproduces_and_more_blocks_fit_better():
    linear = random_linear(24, 48)
    full = BlockTermLinear.from_linear(linear, [4, 4, 3], [2, 3, 4], blocks=1, rank=12)
    torch.testing.assert_close(full.weight, linear.weight, atol=1e-5, rtol=1e-5)
    x = torch.randn(4, 48)
    torch.testing.assert_close(full(x), linear(x), atol=1e-5, rtol=1e-5)
    errors = [float((BlockTermLinear.from_linear(linear, [4, 4, 3], [2, 3, 4], blocks=n, rank=4).weight.detach()
                     - linear.weight).pow(2).sum()) for n in (1, 2, 4)]
    assert errors[0] > errors[1] > errors[2] > 0  # each block fits what the others leave


# ---------------------------------------------------------------------------------------------- whole model
@pytest.mark.parametrize("kind", ["tt", "block_term"])
def test_budget_is_respected_and_full_rank_reproduces_the_model(kind):
    model = tiny_bert()
    expected = logits(model, bert_inputs())
    total = sum(m.weight.numel() for n, m in model.named_modules() if type(m) is nn.Linear and "encoder" in n)
    report = factorize_model(model, kind=kind, keep=0.5)
    assert len(report["layers"]) == 12
    layers = [m for m in model.modules() if isinstance(m, TTLinear | BlockTermLinear)]
    stored = sum(p.numel() for m in layers for n, p in m.named_parameters() if n != "bias")
    assert stored <= 0.5 * total
    assert report["params_after"] == sum(p.numel() for m in layers for p in m.parameters())
    if kind == "tt":  # the greedy stops only when no bond below its cap fits one more rank
        costs = []
        for layer in report["layers"].values():
            modes = [m * n for m, n in zip(layer["out_factors"], layer["in_factors"], strict=True)]
            bonds = [1, *layer["rank"], 1]
            costs += [bonds[k] * modes[k] + modes[k + 1] * bonds[k + 2] for k in range(len(layer["rank"]))
                      if bonds[k + 1] < min(bonds[k] * modes[k], math.prod(modes[k + 1:]))]
        assert costs and stored + min(costs) > 0.5 * total
        assert all(0 < layer["energy"] <= 1 and layer["energy"] >= layer["energy_bound"] - 1e-6
                   for layer in report["layers"].values())
    assert not torch.allclose(logits(model, bert_inputs()), expected)

    model = tiny_bert()
    full = {"tt_ranks": [16, 4]} if kind == "tt" else {"bt_rank": 16, "bt_blocks": 1}
    report = factorize_model(model, kind=kind, in_factors=[4, 4, 2], out_factors={32: [4, 4, 2]},
                             modules=["query", "key", "value", "attention.output.dense"], **full)
    assert len(report["layers"]) == 8 and all(layer["energy"] == pytest.approx(1, abs=1e-6)
                                              for layer in report["layers"].values())
    torch.testing.assert_close(logits(model, bert_inputs()), expected, atol=1e-5, rtol=1e-5)


def test_budget_gives_more_rank_to_the_layer_that_needs_it():
    model = tiny_bert()
    with torch.no_grad():  # the query becomes an exact TT of ranks [2, 2]: rank 2 holds it
        query = model.bert.encoder.layer[0].attention.self.query
        query.weight.copy_(TTLinear(32, 32, [4, 4, 2], [4, 4, 2], [2, 2]).weight)
    report = factorize_model(model, kind="tt", keep=0.3)
    ranks = {name: layer["rank"] for name, layer in report["layers"].items()}
    assert max(ranks["bert.encoder.layer.0.attention.self.query"]) <= 2
    assert report["layers"]["bert.encoder.layer.0.attention.self.query"]["energy"] == pytest.approx(1, abs=1e-5)
    assert sum(ranks["bert.encoder.layer.0.attention.self.key"]) > 4


@pytest.mark.parametrize("kind", ["tt", "block_term"])
def test_saves_reloads_retrains_and_saves_again(tmp_path, kind):
    model = tiny_bert()
    factorize_model(model, kind=kind, keep=0.5, embedding=12)
    expected = logits(model, bert_inputs())
    model.save_pretrained(tmp_path / "model")
    record = json.loads((tmp_path / "model" / "config.json").read_text())["quantization_config"]
    spec = record["modules"]["bert.encoder.layer.0.intermediate.dense"]
    assert spec["kind"] == kind and spec["in_factors"] == [4, 4, 2] and spec["out_factors"] == [4, 4, 4]
    assert ("ranks" in spec) == (kind == "tt") and ("blocks" in spec) == (kind == "block_term")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    layer_type = TTLinear if kind == "tt" else BlockTermLinear
    assert isinstance(reloaded.bert.encoder.layer[1].output.dense, layer_type)
    torch.testing.assert_close(logits(reloaded, bert_inputs()), expected, atol=0, rtol=0)

    reloaded.train()  # a reloaded model trains: one step moves the cores, and saving again keeps them
    optimizer = torch.optim.SGD(reloaded.parameters(), lr=0.1)
    reloaded(**bert_inputs(), labels=torch.tensor([0, 1, 1])).loss.backward()
    optimizer.step()
    reloaded.eval()
    trained = logits(reloaded, bert_inputs())
    assert not torch.allclose(trained, expected)
    reloaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["quantization_config"] == record
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "again").eval()
    torch.testing.assert_close(logits(again, bert_inputs()), trained, atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["tt", "block_term"])
def test_exports_to_onnx_with_the_same_logits(tmp_path, tiny_teacher_dir, kind):
    pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")
    import onnx

    from distilkit.deploy.onnx_export import export_onnx

    model = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir).eval()
    dense = sum(p.numel() for p in model.parameters())
    factorize_model(model, kind=kind, keep=0.5)
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_teacher_dir).save_pretrained(tmp_path / "model")
    report = export_onnx(tmp_path / "model", tmp_path / "onnx", task="sst2", data_dir=str(FIXTURES / "glue"),
                         max_examples=32)
    assert report["precision"] == "fp32" and report["checked_rows"] == 32
    assert report["max_abs_logit_diff"] < 1e-4, report
    assert report["dev_metrics_onnx"] == report["dev_metrics_pytorch"]
    # The file holds the factors, not the dense W: neither PyTorch's inference reuse of W nor ORT's constant
    # folding (the optimizer is capped at its fusions) is written into it.
    stored = sum(math.prod(t.dims) for t in onnx.load(tmp_path / "onnx" / "model.onnx").graph.initializer)
    assert stored <= sum(p.numel() for p in model.parameters()) < dense
    assert report["optimizer"]["opt_level"] == 0 and "basic -> fusion" in report["optimizer"]["capped"]


# ------------------------------------------------------------------------------------------------ recipes
def test_recipe_factorises_into_tensor_trains_and_saves_a_reloadable_model(tmp_path, tiny_teacher_dir):
    tree = copy_student_recipe(tmp_path, tiny_teacher_dir, "factorize", {"kind": "tt", "keep": 0.5})
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    report = json.loads((out / "factorize.json").read_text())
    assert all(layer["kind"] == "tt" and len(layer["rank"]) == 2 for layer in report["layers"].values())
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    assert metrics["student"]["params"] == sum(p.numel() for p in teacher.parameters()) \
        - report["params_before"] + report["params_after"]
    student = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert sum(isinstance(m, TTLinear) for m in student.modules()) == len(report["layers"])


def test_ranks_too_large_for_the_student_stop_the_run_before_training(tmp_path, tiny_teacher_dir):
    tree = copy_student_recipe(tmp_path, tiny_teacher_dir, "factorize", {"kind": "tt", "tt_ranks": 500})
    with pytest.raises(RecipeError, match=r"factorize.tt_ranks: r_1 = 500 of .* is above what its unfolding allows"):
        run(validate_recipe(tree))
    assert not (Path(tree["output_dir"]) / "model").exists()


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "tt", "keep": 0.5, "in_factors": [4, 4, 4]},
     r"factorize.in_factors: \[4, 4, 4\] multiply to 64, but bert.encoder.layer.0.attention.self.query has 32 "
     r"inputs"),
    ({"kind": "tt", "keep": 0.5, "out_factors": {64: [4, 4, 2]}},
     r"factorize.out_factors: \[4, 4, 2\] multiply to 32, but bert.encoder.layer.0.intermediate.dense has 64 "
     r"outputs"),
    ({"kind": "tt", "keep": 0.5, "in_factors": [8, 4], "out_factors": [4, 4, 2]},
     r"factorize.in_factors: \[8, 4\] and factorize.out_factors: \[4, 4, 2\] .* different lengths"),
    ({"kind": "tt", "keep": 0.5, "tt_cores": 1}, r"factorize.tt_cores: 1 must be at least 2"),
    ({"kind": "tt", "tt_ranks": [17, 4]}, r"factorize.tt_ranks: r_1 = 17 of bert.encoder.layer.0.attention.self"
                                          r".query .* is above what its unfolding allows: .* = 16"),
    ({"kind": "tt", "tt_ranks": [16, 5]}, r"factorize.tt_ranks: r_2 = 5 .* = 4"),
    ({"kind": "tt", "tt_ranks": [2, 2, 2]}, r"factorize.tt_ranks: \[2, 2, 2\] has 3 ranks, but .* has 3 cores"),
    ({"kind": "tt", "tt_ranks": 0}, r"factorize.tt_ranks: 0 must be at least 1"),
    ({"kind": "tt", "tt_ranks": []}, r"factorize.tt_ranks: \[\] gives no bond ranks"),
    ({"kind": "tt", "tt_ranks": [3, 0]}, r"factorize.tt_ranks: 0 must be at least 1"),
    ({"kind": "tt", "keep": 0.01}, r"factorize.keep: 0.01 is too small: TT rank 1 for each of the 12 layers"),
    ({"kind": "tt", "keep": 0.5, "rank": 4}, r"factorize.rank: an SVD key; with kind: tt set tt_ranks or keep"),
    ({"kind": "tt", "tt_ranks": 2, "keep": 0.5}, r"factorize: tt_ranks and keep each set the ranks"),
    ({"kind": "block_term", "bt_rank": 17}, r"factorize.bt_rank: 17 is above what every mode of .* allows: 16"),
    ({"kind": "block_term", "keep": 0.02}, r"factorize.keep: 0.02 is too small: 2 block\(s\) of rank 1"),
    ({"kind": "block_term", "keep": 0.5, "bt_blocks": 0}, r"factorize.bt_blocks: 0 must be at least 1"),
    ({"kind": "cp", "keep": 0.5}, r"factorize.kind: 'cp' is not one of svd, tt, block_term"),
])
def test_named_errors_leave_the_model_untouched(kwargs, message):
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RecipeError, match=message):
        factorize_model(model, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(("section", "message"), [
    ({"tt_ranks": 4, "rank": 4}, r"tt_ranks: not a key of kind: svd"),
    ({"kind": "tt", "rank": 4}, r"rank: SVD keys; with kind: tt set tt_ranks or keep"),
    ({"kind": "tt", "keep": 0.5, "bt_rank": 4}, r"bt_rank: not a key of kind: tt"),
    ({"kind": "tt"}, r"kind: tt needs tt_ranks or keep"),
    ({"kind": "block_term", "bt_rank": 4, "keep": 0.5}, r"bt_rank and keep each set the ranks"),
    ({"kind": "tt", "keep": 0.5, "tt_cores": 1}, r"factorize.tt_cores"),
    ({"kind": "tucker", "keep": 0.5}, r"factorize.kind"),
])
def test_bad_sections_are_named_before_anything_runs(tmp_path, section, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(copy_student_recipe(tmp_path, tmp_path / "teacher", "factorize", section))


def test_shipped_recipe_validates():
    from distilkit.run.recipe_io import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "sst2-tensor-train.yaml")
    assert recipe.factorize.kind == "tt" and recipe.factorize.keep == 0.5 and recipe.student.kind == "copy"
