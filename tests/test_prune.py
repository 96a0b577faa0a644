"""Structured pruning on tiny random BERT, RoBERTa and DistilBERT classifiers: exactness, scores, reloading."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from distilkit.core.errors import RecipeError
from distilkit.methods.pruning import structural as prune
from distilkit.methods.pruning.pruned import (
    PRUNED_CLASSES,
    attention_parts,
    encoder_layers,
    ffn_parts,
    num_heads,
)

from .conftest import assert_loads_without_distilkit

FAMILIES = ["bert", "roberta", "distilbert"]
PAD = {"bert": 0, "roberta": 1, "distilbert": 0}


def tiny(family: str, seed: int = 0):
    """3 layers, 4 heads of 16, FFN 128. A wide init (0.2) makes every head move the logits visibly."""
    torch.manual_seed(seed)
    if family == "distilbert":
        config = DistilBertConfig(vocab_size=300, dim=64, n_layers=3, n_heads=4, hidden_dim=128,
                                  max_position_embeddings=40, initializer_range=0.2, num_labels=2)
        return DistilBertForSequenceClassification(config).eval()
    common = dict(vocab_size=300, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=40, initializer_range=0.2, num_labels=2)
    if family == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **common)).eval()
    return BertForSequenceClassification(BertConfig(**common)).eval()


def batch(family: str, seed: int = 1, labels: bool = True) -> dict:
    """Three sequences of 9 tokens, two of them padded (so masking matters)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 300, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = PAD[family]
    out = {"input_ids": ids, "attention_mask": mask}
    if labels:
        out["labels"] = torch.tensor([0, 1, 1])
    return out


@torch.no_grad()
def logits(model, inputs: dict) -> torch.Tensor:
    return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits


def gates_off(removed: dict[int, list[int]], layers: int = 3, heads: int = 4) -> torch.Tensor:
    gates = torch.ones(layers, heads)
    for layer, hs in removed.items():
        gates[layer, hs] = 0.0
    return gates


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_heads_equal_gated_heads_uneven(family):
    model = tiny(family)
    inputs = batch(family)
    full = logits(model, inputs)
    removed = {1: [0, 1, 3], 2: [2]}  # keep 4, 1 and 3 heads
    with prune.head_gates(model, gates_off(removed)):
        gated = logits(model, inputs)
    assert model.config._attn_implementation == "sdpa", "the original attention is restored"
    before = prune.count_params(model)
    prune.prune_heads(model, removed)
    assert [num_heads(layer, family) for layer in encoder_layers(model)] == [4, 1, 3]
    holder = attention_parts(encoder_layers(model)[1], family)[0]
    if family == "distilbert":
        assert holder.n_heads == 1
    else:
        assert holder.num_attention_heads == 1 and holder.all_head_size == 16
    assert prune.count_params(model) == before - 4 * 16 * (4 * 64 + 3)
    torch.testing.assert_close(logits(model, inputs), gated, atol=1e-5, rtol=0)
    assert not torch.allclose(gated, full, atol=1e-3), "removing heads must change the output (test is live)"
    # Head indices refer to the current model: removing the first of the 3 heads left in layer 2.
    with prune.head_gates(model, [torch.ones(4), torch.ones(1), torch.tensor([0.0, 1.0, 1.0])]):
        gated_again = logits(model, inputs)
    prune.prune_heads(model, {2: [0]})
    torch.testing.assert_close(logits(model, inputs), gated_again, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_pruned_ffn_equals_zeroed_neurons(family):
    model = tiny(family)
    inputs = batch(family)
    removed = {0: list(range(0, 128, 3)), 2: [5, 7, 100]}
    masks = {layer: torch.ones(128) for layer in removed}
    for layer, neurons in removed.items():
        masks[layer][neurons] = 0.0
    handles = [ffn_parts(encoder_layers(model)[layer], family)[1].register_forward_pre_hook(
        lambda _m, args, mask=mask: (args[0] * mask,)) for layer, mask in masks.items()]
    zeroed = logits(model, inputs)
    for handle in handles:
        handle.remove()
    prune.prune_ffn(model, removed)
    assert [ffn_parts(x, family)[0].out_features for x in encoder_layers(model)] == [85, 128, 125]
    assert model.config.distilkit_pruning["intermediate_sizes"] == [85, 128, 125]
    torch.testing.assert_close(logits(model, inputs), zeroed, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_drop_layers_equals_skipping(family):
    model = tiny(family)
    inputs = batch(family)
    # A forward hook that returns the block's input makes the block an identity: that is "skipping" it.
    handle = encoder_layers(model)[1].register_forward_hook(lambda _m, args, _out: args[0])
    skipped = logits(model, inputs)
    handle.remove()
    prune.drop_layers(model, [1])
    assert len(encoder_layers(model)) == 2 and model.config.num_hidden_layers == 2
    torch.testing.assert_close(logits(model, inputs), skipped, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_combined_pruning_save_reload_identical(family, tmp_path):
    model = tiny(family)
    inputs = batch(family)
    before = prune.count_params(model)
    prune.prune_heads(model, {0: [1], 1: [0, 2, 3], 2: [3]})
    prune.prune_ffn(model, {0: list(range(64)), 2: [1, 2, 3]})
    prune.drop_layers(model, [1])
    assert prune.count_params(model) < before
    config_class, model_class = PRUNED_CLASSES[family]
    assert type(model) is model_class and type(model.config) is config_class
    expected = logits(model, inputs)

    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == f"distilkit-pruned-{family}"
    assert saved["distilkit_pruning"] == {"heads": [3, 3], "intermediate_sizes": [64, 125]}
    assert saved["n_layers" if family == "distilbert" else "num_hidden_layers"] == 2
    assert saved["auto_map"]["AutoModelForSequenceClassification"] == f"pruned.{model_class.__name__}"
    assert (tmp_path / "pruned.py").is_file()

    again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(again) is model_class
    assert prune.count_params(again) == prune.count_params(model)
    torch.testing.assert_close(logits(again, inputs), expected, atol=0, rtol=0)
    # The reloaded model can be pruned further and still records its shapes.
    prune.prune_heads(again, {0: [0]})
    assert again.config.distilkit_pruning["heads"] == [2, 3]


def test_reload_without_distilkit_via_remote_code(tmp_path):
    model = tiny("bert")
    prune.prune_heads(model, {0: [0, 1], 2: [3]})
    prune.prune_ffn(model, {1: list(range(100))})
    model.save_pretrained(tmp_path)
    inputs = batch("bert", labels=False)
    assert_loads_without_distilkit(tmp_path, inputs, logits(model, inputs), timeout=300)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_importance_scores_respect_padding(family):
    model = tiny(family)
    padded = batch(family)
    with prune.head_gates(model, torch.ones(3, 4)):
        gated = logits(model, padded)
    torch.testing.assert_close(gated, logits(model, padded), atol=1e-5, rtol=0)

    # One example, padded to 9 tokens or cut to its 6 real tokens: the same loss, so the same gradients.
    one_padded = {k: v[1:2] for k, v in padded.items()}
    one_short = {k: (v[1:2, :6] if v.dim() == 2 else v[1:2]) for k, v in padded.items()}
    heads_padded = prune.head_importance(model, [one_padded], normalize=False)
    heads_short = prune.head_importance(model, [one_short], normalize=False)
    assert heads_padded.shape == (3, 4) and torch.all(heads_padded > 0), "every gate gets a gradient"
    torch.testing.assert_close(heads_padded, heads_short, atol=1e-6, rtol=1e-4)
    ffn_padded = prune.ffn_importance(model, [one_padded], normalize=False)
    ffn_short = prune.ffn_importance(model, [one_short], normalize=False)
    assert len(ffn_padded) == 3 and ffn_padded[0].shape == (128,) and ffn_padded[0].sum() > 0
    for a, b in zip(ffn_padded, ffn_short):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert not any(p.grad is not None for p in model.parameters()), "scoring must not write .grad"


def test_head_importance_is_michel_gradient_and_uneven_padding_is_nan():
    model = tiny("bert")
    inputs = batch("bert")
    gates = torch.ones(3, 4, requires_grad=True)
    with prune.head_gates(model, gates):
        (grad,) = torch.autograd.grad(model(**inputs).loss, gates)
    scores = prune.head_importance(model, [inputs], normalize=False)
    torch.testing.assert_close(scores, grad.abs(), atol=1e-6, rtol=1e-5)
    normalized = prune.head_importance(model, [inputs, inputs])
    torch.testing.assert_close(normalized.norm(dim=1), torch.ones(3))

    prune.prune_heads(model, {0: [0, 1], 2: [3]})
    scores = prune.head_importance(model, [inputs])
    assert torch.isnan(scores[0, 2:]).all() and torch.isnan(scores[2, 3])
    assert torch.isfinite(scores[1]).all() and torch.isfinite(scores[0, :2]).all()
    plan = prune.select_heads(scores, 0.5)
    assert all(len(v) < num_heads(encoder_layers(model)[k], "bert") for k, v in plan.items())


def test_loss_fn_for_distillation_and_layer_importance():
    model = tiny("distilbert")
    inputs = batch("distilbert", labels=False)
    inputs["teacher_logits"] = torch.randn(3, 2)  # extra keys stay out of the model call

    def kd(output, b):
        return torch.nn.functional.mse_loss(output.logits, b["teacher_logits"])

    assert torch.isfinite(prune.head_importance(model, [inputs], loss_fn=kd)).all()
    with pytest.raises(RecipeError, match="labels"):
        prune.head_importance(model, [inputs])

    scores = prune.layer_importance(model, iter([inputs]), loss_fn=kd)  # one-shot iterables are fine
    base = kd(model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]), inputs)
    handle = encoder_layers(model)[2].register_forward_hook(lambda _m, args, _out: args[0])
    without = kd(model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]), inputs)
    handle.remove()
    assert scores.shape == (3,) and len(encoder_layers(model)) == 3
    torch.testing.assert_close(scores[2], (without - base).detach(), atol=1e-5, rtol=1e-4)
    assert prune.select_layers(torch.tensor([0.3, -0.1, 0.2]), 2) == [1, 2]


def test_selection_is_global_and_never_empties_a_layer():
    scores = torch.tensor([[0.1, 0.2, 0.9, 0.8],
                           [0.05, 0.06, 0.07, 0.08],
                           [0.5, 0.6, float("nan"), float("nan")]])
    assert prune.select_heads(scores, 0.0) == {}
    # 10 heads, half = 5: the four of layer 1 are lowest but one must stay, so layer 0 gives two.
    assert prune.select_heads(scores, 0.5) == {0: [0, 1], 1: [0, 1, 2]}
    assert prune.select_heads(scores, 1.0) == {0: [0, 1, 3], 1: [0, 1, 2], 2: [0]}
    assert prune.select_ffn([torch.tensor([3.0, 1.0, 2.0]), torch.tensor([0.5])], 0.5) == {0: [1, 2]}
    for bad in (-0.1, 1.5):
        with pytest.raises(RecipeError, match=r"fraction must be in \[0, 1\]"):
            prune.select_heads(scores, bad)
        with pytest.raises(RecipeError, match="fraction"):
            prune.select_ffn([torch.ones(3)], bad)
    with pytest.raises(RecipeError, match="one layer must stay"):
        prune.select_layers(torch.ones(3), 3)


def test_prune_to_budget():
    model = tiny("bert")
    inputs = batch("bert")
    heads = prune.head_importance(model, [inputs])
    neurons = prune.ffn_importance(model, [inputs])
    budget = prune.count_params(model) - 30_000
    prune.prune_to_budget(model, heads, neurons, budget)
    assert budget - 5_000 < prune.count_params(model) <= budget
    assert torch.isfinite(logits(model, inputs)).all()
    with pytest.raises(RecipeError, match="drop layers first"):
        prune.select_for_budget(model, prune.head_importance(model, [inputs]),
                                prune.ffn_importance(model, [inputs]), 1_000)


def test_bad_targets_raise_clear_errors():
    model = tiny("bert")
    with pytest.raises(RecipeError, match="removing all 4 heads of layer 1.*drop the layer instead"):
        prune.prune_heads(model, {1: [0, 1, 2, 3]})
    with pytest.raises(RecipeError, match="all 128 neurons of layer 0"):
        prune.prune_ffn(model, {0: list(range(128))})
    with pytest.raises(RecipeError, match="cannot drop all 3 layers"):
        prune.drop_layers(model, [0, 1, 2])
    with pytest.raises(RecipeError, match="layer 5 does not exist"):
        prune.prune_heads(model, {5: [0]})
    with pytest.raises(RecipeError, match="heads 0..3"):
        prune.prune_heads(model, {0: [4]})
    assert type(model) is BertForSequenceClassification, "failed calls leave the model untouched"
    assert [num_heads(x, "bert") for x in encoder_layers(model)] == [4, 4, 4]

    gpt2 = GPT2ForSequenceClassification(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=2,
                                                    n_positions=16, num_labels=2))
    for call in (lambda: prune.prune_heads(gpt2, {0: [0]}), lambda: prune.drop_layers(gpt2, [0]),
                 lambda: prune.head_importance(gpt2, [])):
        with pytest.raises(RecipeError, match="pruning supports bert, roberta, distilbert; got gpt2"):
            call()
