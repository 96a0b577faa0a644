"""Low-rank factorisation (issue 14): truncated-SVD factors, rank rules, block-diagonal and embedding forms,
save/reload through from_pretrained, the recipe section end to end, and the named errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

import distilkit  # noqa: F401  (registers quant_method distilkit-low-rank with transformers)
from distilkit.core.errors import RecipeError
from distilkit.methods.low_rank.factorize import factorize_model
from distilkit.methods.low_rank.factors import FactorizedEmbedding, LowRankLinear
from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .conftest import copy_student_recipe

REPO = Path(__file__).resolve().parent.parent


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64,
                                                    max_position_embeddings=64)).eval()


def tiny_bilstm() -> BiLSTMForSequenceClassification:
    torch.manual_seed(0)
    return BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=200, embedding_dim=16, hidden_size=12,
                                                        mlp_hidden_size=10, num_labels=2)).eval()


def bert_inputs() -> dict:
    generator = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(0, 300, (3, 12), generator=generator),
            "attention_mask": torch.ones(3, 12, dtype=torch.long)}


def bilstm_inputs() -> dict:
    generator = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(1, 200, (2, 9), generator=generator),
            "attention_mask": torch.ones(2, 9, dtype=torch.long)}


def logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def linear_weights(model) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if type(m) is nn.Linear}


# ------------------------------------------------------------------------------------------ factor forms
@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_full_rank_reproduces_the_logits(blocks):
    model = tiny_bert()
    expected = logits(model, bert_inputs())
    report = factorize_model(model, energy=1.0, block_diagonal=blocks, embedding=32)
    # 2 layers x 6 linears (query, key, value, attention output, FFN in, FFN out); head and pooler untouched
    assert len(report["layers"]) == 12 and not any("classifier" in n or "pooler" in n for n in report["layers"])
    for name, layer in report["layers"].items():
        out_features, in_features = layer["shape"]
        assert layer["rank"] == min(out_features, in_features // blocks), name
    assert type(model.classifier) is nn.Linear and type(model.bert.pooler.dense) is nn.Linear
    assert isinstance(model.bert.embeddings.word_embeddings, FactorizedEmbedding)
    torch.testing.assert_close(logits(model, bert_inputs()), expected, atol=1e-5, rtol=1e-5)


def test_energy_threshold_keeps_at_least_that_mass_with_the_smallest_rank():
    model = tiny_bert()
    originals = linear_weights(model)
    report = factorize_model(model, energy=0.9)
    ranks = set()
    for name, layer in report["layers"].items():
        squares = torch.linalg.svdvals(originals[name].double()) ** 2
        kept = torch.cumsum(squares, 0) / squares.sum()
        rank = layer["rank"]
        assert kept[rank - 1] >= 0.9 - 1e-9 and (rank == 1 or kept[rank - 2] < 0.9), name
        assert layer["energy"] == pytest.approx(float(kept[rank - 1]), abs=1e-6)
        ranks.add(rank)
    assert all(r < 32 for r in ranks)  # a random weight's energy is spread, yet 90% needs less than full rank


def test_budget_respects_the_parameter_count_and_ranks_differ_by_sensitivity():
    model = tiny_bert()
    with torch.no_grad():  # make one layer nearly rank 2: it needs little of the budget
        query = model.bert.encoder.layer[0].attention.self.query
        query.weight.copy_(torch.randn(32, 2) @ torch.randn(2, 32) + 1e-4 * torch.randn(32, 32))
    originals = linear_weights(model)
    chosen = [n for n in originals if "encoder" in n]
    report = factorize_model(model, keep=0.5)
    budget = 0.5 * sum(originals[n].numel() for n in chosen)
    factored = sum(m.first.weight.numel() + m.second.weight.numel()
                   for m in model.modules() if isinstance(m, LowRankLinear))
    assert factored <= budget
    largest_step = max(sum(originals[n].shape) for n in chosen)
    assert factored > budget - largest_step  # the greedy stops only when no layer fits another rank
    ranks = {n: layer["rank"] for n, layer in report["layers"].items()}
    assert ranks["bert.encoder.layer.0.attention.self.query"] == min(ranks.values()) <= 3
    before = sum(p["params_before"] for p in report["layers"].values())
    assert report["params_before"] == before and report["params_after"] < before


def test_block_diagonal_factor_shapes():
    model = tiny_bert()
    report = factorize_model(model, rank=4, block_diagonal=4, modules=["intermediate.dense", "*.output.dense"])
    assert sorted(report["layers"]) == sorted(f"bert.encoder.layer.{i}.{p}" for i in range(2)
                                              for p in ("intermediate.dense", "output.dense", "attention.output.dense"))
    ffn_in = model.bert.encoder.layer[0].intermediate.dense  # 64 x 32
    assert isinstance(ffn_in, LowRankLinear)
    assert ffn_in.first.weight.shape == (4, 4, 8) and ffn_in.second.weight.shape == (64, 16)
    assert report["layers"]["bert.encoder.layer.0.intermediate.dense"]["params_after"] == 4 * (4 * 64 + 32) + 64
    assert type(model.bert.encoder.layer[0].attention.self.query) is nn.Linear  # not chosen
    assert logits(model, bert_inputs()).shape == (3, 2)


def test_block_diagonal_blocks_are_independent_svds():
    linear = nn.Linear(12, 10)
    factored = LowRankLinear.from_linear(linear, rank=2, blocks=3)
    x = torch.randn(5, 12)
    for b, w in enumerate(linear.weight.detach().chunk(3, dim=1)):
        u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
        best = (u[:, :2] * s[:2]) @ vh[:2]
        block = factored.second.weight[:, 2 * b:2 * b + 2].double() @ factored.first.weight[b].double()
        torch.testing.assert_close(block, best, atol=1e-6, rtol=1e-5)
    assert factored(x).shape == (5, 10)


def test_embedding_factorisation_of_bert_and_the_bilstm():
    model = tiny_bert()
    report = factorize_model(model, embedding=8)
    assert report["layers"] == {}  # only the embedding
    table = model.get_input_embeddings()
    assert isinstance(table, FactorizedEmbedding)
    assert table.table.weight.shape == (300, 8) and table.project.weight.shape == (32, 8)
    assert report["embedding"]["params_before"] == 300 * 32
    assert report["embedding"]["params_after"] == 300 * 8 + 8 * 32
    assert 0 < report["embedding"]["energy"] < 1

    bilstm = tiny_bilstm()
    expected = logits(bilstm, bilstm_inputs())
    report = factorize_model(bilstm, rank=10, embedding=16)  # full rank: the same logits
    assert list(report["layers"]) == ["mlp"] and report["embedding"]["name"] == "embeddings"
    torch.testing.assert_close(logits(bilstm, bilstm_inputs()), expected, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------- save/reload
def test_bert_saves_and_reloads_with_identical_logits(tmp_path):
    model = tiny_bert()
    factorize_model(model, keep=0.4, block_diagonal=2, embedding=12)
    expected = logits(model, bert_inputs())
    model.save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    record = config["quantization_config"]
    assert record["quant_method"] == "distilkit-low-rank"
    assert record["modules"]["bert.embeddings.word_embeddings"]["rank"] == 12
    assert record["modules"]["bert.encoder.layer.1.output.dense"]["blocks"] == 2
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model").eval()
    assert type(reloaded) is BertForSequenceClassification
    assert isinstance(reloaded.bert.encoder.layer[1].output.dense, LowRankLinear)
    torch.testing.assert_close(logits(reloaded, bert_inputs()), expected, atol=0, rtol=0)
    assert not getattr(reloaded, "is_quantized", False)  # a plain float model: casts, trains, saves
    reloaded.float().train()
    reloaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["quantization_config"] == record
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "again").eval()
    torch.testing.assert_close(logits(again, bert_inputs()), expected, atol=0, rtol=0)


def test_bilstm_saves_and_reloads_with_identical_logits(tmp_path):
    model = tiny_bilstm()
    factorize_model(model, energy=0.8, embedding=6)
    expected = logits(model, bilstm_inputs())
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded.embeddings, FactorizedEmbedding) and isinstance(reloaded.mlp, LowRankLinear)
    torch.testing.assert_close(logits(reloaded, bilstm_inputs()), expected, atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------ recipes
def tiny_recipe(tmp_path: Path, teacher: Path, factorize: dict, **train) -> dict:
    return copy_student_recipe(tmp_path, teacher, "factorize", factorize, **train)


def test_recipe_factorises_recovers_and_saves_a_reloadable_model(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, {"keep": 0.5, "embedding": 16})
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    report = json.loads((out / "factorize.json").read_text())
    assert len(report["layers"]) == 12 and report["embedding"]["rank"] == 16
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    assert metrics["student"]["params"] < sum(p.numel() for p in teacher.parameters())
    assert metrics["student"]["params"] == sum(p.numel() for p in teacher.parameters()) \
        - report["params_before"] + report["params_after"]
    student = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert isinstance(student.bert.embeddings.word_embeddings, FactorizedEmbedding)
    assert json.loads((out / "model" / "config.json").read_text())["quantization_config"]["modules"]


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rank": 33}, r"factorize.rank: 33 is larger than min\(out, in\) = 32 of bert.encoder.layer.0"),
    ({"rank": 17, "block_diagonal": 2}, r"factorize.rank: 17 is larger than min\(out, in / 2\) = 16"),
    ({"rank": 2, "modules": []}, r"factorize.modules: \[\] chooses no layer"),
    ({"rank": 2, "modules": ["query", "nothing.here"]}, r"factorize.modules: 'nothing.here' match no linear"),
    ({"rank": 2, "modules": ["classifier"]}, r"factorize.modules: 'classifier' match no linear"),
    ({"energy": 0.0}, r"factorize.energy: 0.0 is outside \(0, 1\]"),
    ({"energy": 1.5}, r"factorize.energy: 1.5 is outside \(0, 1\]"),
    ({"keep": 1.0}, r"factorize.keep: 1.0 is outside \(0, 1\)"),
    ({"keep": 0.0}, r"factorize.keep: 0.0 is outside \(0, 1\)"),
    ({"keep": 0.01}, r"factorize.keep: 0.01 is too small: rank 1 for each of the 12 layers"),
    ({"rank": 2, "block_diagonal": 3}, r"factorize.block_diagonal: 3 does not divide the 32 inputs"),
    ({"embedding": 33}, r"factorize.embedding: 33 is larger than min\(V, H\) = 32"),
    ({"rank": 2, "energy": 0.9}, r"factorize: rank and energy each set the ranks"),
    ({}, r"factorize: nothing to do"),
])
def test_named_errors_leave_the_model_untouched(kwargs, message):
    model = tiny_bert()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RecipeError, match=message):
        factorize_model(model, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(("section", "message"), [
    ({"energy": 0}, "factorize.energy"),
    ({"energy": 1.01}, "factorize.energy"),
    ({"keep": 1}, "factorize.keep"),
    ({"keep": 0}, "factorize.keep"),
    ({"rank": 0}, "factorize.rank"),
    ({"rank": 4, "modules": []}, r"modules: \[\] chooses no layer"),
    ({"rank": 4, "keep": 0.5}, "rank and keep each set the ranks"),
    ({}, "nothing to do"),
    ({"modules": ["query"], "embedding": 8}, "set rank, energy or keep too"),
    ({"rank": 4, "block_diagonal": 0}, "factorize.block_diagonal"),
])
def test_bad_sections_are_named_before_anything_runs(tmp_path, section, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(tiny_recipe(tmp_path, tmp_path / "teacher", section))


@pytest.mark.parametrize(("extra", "other"), [
    ({"quantize": {"linear": "int8"}}, "quantize"),
    ({"deep_compression": {"prune": {"sparsity": 0.5}}}, "deep_compression"),
    ({"student": {"kind": "pruned", "max_length": 24, "rounds": 2, "heads": 0.25}}, "student.kind"),
])
def test_combinations_that_cannot_reload_are_recipe_errors(tmp_path, extra, other):
    tree = {**tiny_recipe(tmp_path, tmp_path / "teacher", {"energy": 0.9}), **extra}
    with pytest.raises(RecipeError, match=rf"factorize: .* conflicts with {other}: "):
        validate_recipe(tree)


def test_a_rank_too_large_for_the_student_stops_the_run_before_training(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, {"rank": 64})
    with pytest.raises(RecipeError, match=r"factorize.rank: 64 is larger than min\(out, in\) = 32"):
        run(validate_recipe(tree))
    assert not (Path(tree["output_dir"]) / "model").exists()


def test_shipped_recipe_validates():
    from distilkit.run.recipe_io import load_recipe

    recipe = load_recipe(REPO / "recipes" / "sst2-low-rank.yaml")
    assert recipe.factorize.keep == 0.5 and recipe.student.kind == "copy" and recipe.data.dir is None


def test_the_section_switches_on_the_low_rank_method_only(tmp_path):
    from distilkit.run.methods import active_methods

    (method,) = active_methods(validate_recipe(tiny_recipe(tmp_path, tmp_path / "teacher", {"energy": 0.9})))
    assert method.name == "low_rank" and method.parameter_groups(nn.Linear(2, 2)) is None
