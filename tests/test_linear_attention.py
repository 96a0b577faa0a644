"""Linear attention: each variant against a naive O(n^2) reference, masking, memory growth, reload, recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from distilkit.core.errors import RecipeError
from distilkit.methods.linear_attention.linear import VARIANTS, linear_attention, self_attentions
from distilkit.methods.linear_attention.swap import swap_attention
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe


def tiny_bert(seed=0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=4, intermediate_size=64, num_labels=2,
                                                    max_position_embeddings=128)).eval()


def swapped(variant: str, seed=0):
    if variant == "sinkhorn":  # blocks of 3: several blocks, a short last one, and empty ones in padded batches
        return swap_attention(tiny_bert(seed), variant, max_length=64, block_size=3)
    return swap_attention(tiny_bert(seed), variant, features=16, max_length=64, seed=3)


def naive(feature, q, k, v, keep):
    """Quadratic reference: an explicit n x n weight matrix (or Linformer's explicit projections, or
    Sinkhorn's loops over blocks and tokens, or Star's dense masked scores over tokens and relay)."""
    if feature.variant == "star":
        from .test_star_attention import naive_star

        return naive_star(feature.star_window, q, k, v, keep)
    if feature.variant == "sinkhorn":
        from .test_sinkhorn_attention import naive_sinkhorn

        return naive_sinkhorn(feature, q, k, v, keep)
    if feature.variant == "linformer":
        n = k.shape[2]
        kp = feature.e[:, :n] @ (k * keep)
        vp = feature.f[:, :n] @ (v * keep)
        return torch.softmax(q @ kp.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ vp
    weights = feature.phi(q, True) @ feature.phi(k, False).transpose(-1, -2)  # [b, h, n, n]
    weights = weights * keep.transpose(-1, -2)
    return (weights / weights.sum(-1, keepdim=True)) @ v


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_naive_reference_with_padding(variant):
    model = swapped(variant)
    module = self_attentions(model)[0]
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 4, 10, 8) for _ in range(3))
    keep = torch.ones(2, 1, 10, 1)
    keep[1, :, 6:] = 0  # second sequence: 4 padding tokens
    mask = keep.bool().reshape(2, 1, 1, 10).expand(2, 1, 10, 10)
    with torch.no_grad():
        out, _ = linear_attention(module, q, k, v, mask)
        expected = naive(module.distilkit_feature, q, k, v, keep).transpose(1, 2)
    if variant in ("sinkhorn", "star"):  # the loop references leave padded queries at zero; compare the real ones
        out, expected = out * keep.transpose(1, 2), expected * keep.transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    # A masked key contributes nothing: changing it changes no output.
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 7:], v2[1, :, 7:] = 100.0, -100.0
    with torch.no_grad():
        again = linear_attention(module, q, k2, v2, mask)[0]
    if variant in ("sinkhorn", "star"):
        again = again * keep.transpose(1, 2)
    torch.testing.assert_close(again, out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_padding_does_not_change_a_sentence(variant):
    model = swapped(variant)
    ids = torch.tensor([[2, 11, 12, 13, 3, 0, 0, 0], [2, 21, 22, 23, 24, 25, 26, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits[0]
        alone = model(input_ids=ids[:1, :5], attention_mask=mask[:1, :5]).logits[0]
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_save_reload_identical_logits(variant, tmp_path):
    model = swapped(variant)
    if variant in ("hedgehog", "sinkhorn"):  # trained feature maps (and SortNets) must round-trip too
        feature = self_attentions(model)[1].distilkit_feature
        with torch.no_grad():
            (feature.sort.weight if variant == "sinkhorn" else feature.weight).add_(0.3)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded).__name__ == "LinearAttentionBertForSequenceClassification"
    assert reloaded.config.distilkit_linear_attention["variant"] == variant
    assert reloaded.config._attn_implementation == "distilkit_linear"
    ids = torch.randint(4, 200, (3, 12))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)
    # the remote code imports all three
    assert all((tmp_path / name).is_file() for name in ("linear.py", "sinkhorn.py", "star.py"))
    if variant == "sinkhorn":
        assert reloaded.config.distilkit_linear_attention["block_size"] == 3
        assert self_attentions(reloaded)[1].distilkit_feature.block_size == 3


def _saved_bytes(fn) -> int:
    """Bytes of tensors autograd keeps for the backward pass: the attention's activation memory."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("variant", ["elu", "performer", "hedgehog"])
def test_memory_grows_linearly_with_length(variant):
    module = self_attentions(swapped(variant))[0]

    def memory(n):
        q, k, v = (torch.randn(1, 4, n, 8, requires_grad=True) for _ in range(3))
        return _saved_bytes(lambda: linear_attention(module, q, k, v, None))

    def softmax_memory(n):
        q, k, v = (torch.randn(1, 4, n, 8, requires_grad=True) for _ in range(3))
        return _saved_bytes(lambda: torch.softmax(q @ k.transpose(-1, -2), -1) @ v)
    linear_growth = memory(2048) / memory(512)
    quadratic_growth = softmax_memory(2048) / softmax_memory(512)
    assert linear_growth < 4.5 and quadratic_growth > 12, (linear_growth, quadratic_growth)


def test_recipe_swaps_and_recovers(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 1})
    tree["student"] = {"kind": "linear_attention", "variant": "hedgehog", "max_length": 32}
    metrics = run(validate_recipe(tree))
    model = AutoModelForSequenceClassification.from_pretrained(Path(tree["output_dir"]) / "model")
    assert model.config.distilkit_linear_attention["variant"] == "hedgehog"
    assert metrics["student"]["params"] > metrics["teacher"]["params"]  # Hedgehog adds its feature maps
    w = self_attentions(model)[0].distilkit_feature.weight
    assert not torch.allclose(w, torch.eye(w.shape[-1]).expand_as(w)), "the feature map was not trained"


def test_errors(tmp_path, tiny_teacher_dir):
    with pytest.raises(RecipeError, match="variant"):
        validate_recipe({**tiny_recipe(tmp_path, tiny_teacher_dir),
                         "student": {"kind": "linear_attention", "variant": "cosformer"}})
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2,
                                                                  hidden_dim=32))
    with pytest.raises(RecipeError, match="supports bert, roberta, xlm-roberta encoders; got distilbert"):
        swap_attention(distil, "elu")


def naive_transfer(feature, q, k, v, keep):
    """Attention transfer loss by explicit loops over the batch's real (unpadded) tokens."""
    total, count = 0.0, 0
    for b in range(q.shape[0]):
        n = int(keep[b, 0, :, 0].sum())
        for h in range(q.shape[1]):
            qq, kk, vv = q[b, h, :n], k[b, h, :n], v[b, h, :n]
            target = torch.softmax(qq @ kk.T / qq.shape[-1] ** 0.5, dim=-1)
            if feature.variant in ("sinkhorn", "star"):
                from .test_sinkhorn_attention import naive_sinkhorn
                from .test_star_attention import naive_star

                out = (naive_sinkhorn(feature, q, k, v, keep) if feature.variant == "sinkhorn"
                       else naive_star(feature.star_window, q, k, v, keep))[b, h, :n]
                per_query = (out - target @ vv).pow(2).mean(-1)
            elif feature.variant == "linformer":
                e, f = feature.e[:, :n], feature.f[:, :n]
                out = torch.softmax(qq @ (e @ kk).T / qq.shape[-1] ** 0.5, dim=-1) @ (f @ vv)
                per_query = (out - target @ vv).pow(2).mean(-1)
            else:
                kernel = feature.phi(qq[None, None], True)[0, 0] @ feature.phi(kk[None, None], False)[0, 0].T
                per_query = -(target * (kernel / kernel.sum(-1, keepdim=True)).log()).sum(-1)
            total, count = total + per_query.sum(), count + n
    return total / count


@pytest.mark.parametrize("variant", VARIANTS)
def test_attention_transfer_loss_matches_naive_reference(variant):
    from distilkit.methods.linear_attention.swap import attention_transfer_loss, enable_attention_transfer

    model = swapped(variant).train()
    enable_attention_transfer(model)
    module = self_attentions(model)[0]
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 4, 10, 8) for _ in range(3))
    keep = torch.ones(2, 1, 10, 1)
    keep[1, :, 6:] = 0
    mask = keep.bool().reshape(2, 1, 1, 10).expand(2, 1, 10, 10)
    linear_attention(module, q, k, v, mask)
    loss = module.distilkit_feature.transfer_loss
    torch.testing.assert_close(loss, naive_transfer(module.distilkit_feature, q, k, v, keep), rtol=1e-4, atol=1e-5)
    k2, v2 = k.clone(), v.clone()  # padding changes nothing
    k2[1, :, 7:], v2[1, :, 7:] = 50.0, -50.0
    linear_attention(module, q, k2, v2, mask)
    torch.testing.assert_close(module.distilkit_feature.transfer_loss, loss, rtol=1e-4, atol=1e-5)
    model.eval()  # off at inference: nothing is recorded
    module.distilkit_feature.transfer_loss = None
    with torch.no_grad():
        model(input_ids=torch.randint(0, 200, (1, 8)))
    assert module.distilkit_feature.transfer_loss is None
    model.train()
    model(input_ids=torch.randint(0, 200, (2, 8)))
    assert attention_transfer_loss(model).requires_grad


def test_attention_transfer_trains_feature_maps_towards_softmax():
    from distilkit.methods.linear_attention.swap import attention_transfer_loss, enable_attention_transfer

    model = swapped("hedgehog").train()
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    enable_attention_transfer(model)
    with torch.no_grad():  # a random tiny BERT attends almost uniformly; sharpen it so there is something to learn
        for attention in self_attentions(model):
            attention.query.weight.mul_(20.0)
            attention.key.weight.mul_(20.0)
    params = [a.distilkit_feature.weight for a in self_attentions(model)]
    optimizer = torch.optim.Adam(params, lr=0.1)
    ids = torch.randint(0, 200, (4, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(30):
        model(input_ids=ids)
        loss = attention_transfer_loss(model)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < losses[0] - 0.3, losses


def test_recipe_with_attention_transfer(tmp_path, tiny_teacher_dir):
    import json

    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 1, "log_every": 1})
    tree["student"] = {"kind": "linear_attention", "variant": "elu", "max_length": 32}
    tree["loss"] = {"kind": "kl", "temperature": 2.0, "attention_weight": 1.0}
    run(validate_recipe(tree))
    logged = [json.loads(line) for path in (Path(tree["output_dir"]) / "logs").rglob("*.jsonl")
              for line in path.read_text().splitlines()]
    assert any("train/attention" in row for row in logged), logged[:3]
    with pytest.raises(RecipeError, match="attention_weight"):
        validate_recipe({**tree, "student": {"kind": "bilstm", "max_length": 32}})


def test_feature_maps_get_their_own_learning_rate(tmp_path, tiny_teacher_dir):
    from distilkit.run.methods import active_methods, parameter_groups

    tree = tiny_recipe(tmp_path, tiny_teacher_dir)
    for variant, feature_lr, sizes in (("hedgehog", 0.01, [None, 0.01]), ("elu", None, [None]),
                                       ("hedgehog", None, [None]), ("sinkhorn", 0.01, [None, 0.01]),
                                       ("star", None, [None])):
        tree["student"] = {"kind": "linear_attention", "variant": variant, "feature_lr": feature_lr}
        model = swapped(variant)
        groups = parameter_groups(model, active_methods(validate_recipe(tree)))
        assert [g.get("lr") for g in groups] == sizes
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
        if len(groups) == 2:
            # hedgehog's W and sinkhorn's SortNet: square, one per head and layer
            assert all(p.shape[-1] == p.shape[-2] for p in groups[1]["params"])
            assert len(groups[1]["params"]) == len(self_attentions(model))
