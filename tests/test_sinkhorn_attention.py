"""Sparse Sinkhorn attention (Tay et al. 2020): a loop-by-loop reference, padding, gradients, recipe keys.

The generic checks every variant gets (padded batch = unpadded sentence, save/reload, attention transfer)
run for sinkhorn in tests/test_linear_attention.py, which uses :func:`naive_sinkhorn` below as its reference.
"""

from __future__ import annotations

import math

import pytest
import torch

from distilkit.core.errors import RecipeError
from distilkit.methods.linear_attention.linear import linear_attention, self_attentions
from distilkit.methods.linear_attention.sinkhorn import sinkhorn
from distilkit.methods.linear_attention.swap import swap_attention
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe


def naive_sinkhorn(feature, q, k, v, keep):
    """Sinkhorn attention with explicit loops over batch, head, block and token, on the real tokens only.

    Independent of the fast version: no padding to whole blocks (a short last block is just short), the
    balancing in probability space (divide by row and column sums), every score written out. Padded tokens
    are dropped before anything, so matching it on a padded batch also shows padding changes nothing.
    Returns ``[b, h, n, d]`` with zeros at padded positions.
    """
    size, scale = feature.block_size, q.shape[-1] ** -0.5
    weight = feature.sort.weight.detach()
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        n = int(keep[b, 0, :, 0].sum())
        blocks = [list(range(start, min(start + size, n))) for start in range(0, n, size)]
        for h in range(q.shape[1]):
            qq, kk, vv = q[b, h, :n], k[b, h, :n], v[b, h, :n]
            qbar = torch.stack([qq[idx].mean(0) for idx in blocks])
            kbar = torch.stack([kk[idx].mean(0) for idx in blocks])
            logits = torch.tensor([[float(qbar[i] @ weight[h] @ kbar[j]) * scale / feature.temperature
                                    for j in range(len(blocks))] for i in range(len(blocks))], dtype=torch.float64)
            p = torch.exp(logits - logits.max())
            if len(blocks) >= 2:  # a block is never matched with itself
                p.fill_diagonal_(0.0)
            for _ in range(feature.sinkhorn_iters):
                p = p / p.sum(1, keepdim=True)
                p = p / p.sum(0, keepdim=True)
            for a, idx in enumerate(blocks):
                for x in idx:
                    scores, values = [], []
                    for y in idx:  # own block
                        scores.append(math.exp(float(qq[x] @ kk[y]) * scale))
                        values.append(vv[y].double())
                    for t in range(size):  # sorted block: slot t mixes token t of every block
                        key = sum(p[a, j] * kk[blocks[j][t]].double() for j in range(len(blocks))
                                  if t < len(blocks[j]))
                        value = sum(p[a, j] * vv[blocks[j][t]].double() for j in range(len(blocks))
                                    if t < len(blocks[j]))
                        share = sum(float(p[a, j]) for j in range(len(blocks)) if t < len(blocks[j]))
                        if share > 0:
                            scores.append(math.exp(float(qq[x].double() @ key) * scale) * share)
                            values.append(value)
                    total = sum(scores)
                    out[b, h, x] = (sum(s * val for s, val in zip(scores, values)) / total).to(q.dtype)
    return out


def sinkhorn_model(block_size=3, seed=0, **kwargs):
    from .test_linear_attention import tiny_bert

    return swap_attention(tiny_bert(seed), "sinkhorn", max_length=64, block_size=block_size, **kwargs)


def perturb_sortnets(model, scale=0.5, seed=4):
    """Random SortNet weights, so that the tests see a learned (not identity) sorting."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for attention in self_attentions(model):
            weight = attention.distilkit_feature.sort.weight
            weight.add_(scale * torch.randn(weight.shape, generator=generator))


@pytest.mark.parametrize("block_size,n,real", [(3, 10, 6), (4, 8, 8), (2, 9, 1), (16, 10, 7)])
def test_matches_loop_reference_on_padded_batches(block_size, n, real):
    model = sinkhorn_model(block_size, sinkhorn_iters=5, temperature=0.7)
    perturb_sortnets(model)
    module = self_attentions(model)[0]
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 4, n, 8) for _ in range(3))
    keep = torch.ones(2, 1, n, 1)
    keep[1, :, real:] = 0
    mask = keep.bool().reshape(2, 1, 1, n).expand(2, 1, n, n)
    with torch.no_grad():
        out = linear_attention(module, q, k, v, mask)[0].transpose(1, 2)
    expected = naive_sinkhorn(module.distilkit_feature, q, k, v, keep)
    torch.testing.assert_close(out[0], expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1, :, :real], expected[1, :, :real], rtol=1e-4, atol=1e-5)
    k2, v2 = k.clone(), v.clone()  # padded keys and values (even nan) reach no real token
    k2[1, :, real:], v2[1, :, real:] = float("nan"), 1e4
    with torch.no_grad():
        again = linear_attention(module, q, k2, v2, mask)[0].transpose(1, 2)
    torch.testing.assert_close(again[1, :, :real], out[1, :, :real], rtol=1e-5, atol=1e-6)
    assert torch.isfinite(again).all()


def test_sinkhorn_balancing_gives_a_doubly_stochastic_matrix_and_ignores_empty_blocks():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 5, 5)
    valid = torch.tensor([[[True, True, True, False, False]]])
    s = sinkhorn(logits, valid, iters=200).exp()
    real = s[..., :3, :3]
    torch.testing.assert_close(real.sum(-1), torch.ones(1, 2, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(real.sum(-2), torch.ones(1, 2, 3), atol=1e-4, rtol=0)
    assert (real.diagonal(dim1=-2, dim2=-1) == 0).all()  # no block matched with itself
    assert (s[..., :3, 3:] == 0).all() and (s[..., 3:, :3] == 0).all()
    torch.testing.assert_close(s[..., 3:, 3:], torch.eye(2).expand(1, 2, 2, 2))
    alone = sinkhorn(logits[..., :3, :3], valid[..., :3], iters=200).exp()
    torch.testing.assert_close(real, alone)
    # A low temperature (larger logits) gives a harder, closer to 0/1 permutation.
    sharp = sinkhorn(logits[..., :3, :3] * 20, valid[..., :3], iters=200).exp()
    assert sharp.amax(-1).min() > 0.9 > real.amax(-1).min()


def test_sortnet_parameters_get_gradients():
    model = sinkhorn_model(block_size=3).train()
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    perturb_sortnets(model)
    ids = torch.randint(4, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    model(input_ids=ids, attention_mask=mask).logits.pow(2).sum().backward()
    for attention in self_attentions(model):
        grad = attention.distilkit_feature.sort.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_attention_transfer_reaches_the_sortnet():
    from distilkit.methods.linear_attention.swap import attention_transfer_loss, enable_attention_transfer

    model = sinkhorn_model(block_size=2).train()
    enable_attention_transfer(model)
    model(input_ids=torch.randint(4, 200, (2, 10), generator=torch.Generator().manual_seed(1)))
    attention_transfer_loss(model).backward()
    grads = [a.distilkit_feature.sort.weight.grad for a in self_attentions(model)]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_sequence_shorter_than_a_block_is_plain_softmax_attention():
    module = self_attentions(sinkhorn_model(block_size=16))[0]
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 4, 7, 8) for _ in range(3))
    with torch.no_grad():
        out = linear_attention(module, q, k, v, None)[0].transpose(1, 2)
    # one block: it attends to itself twice over (own and sorted block), which is softmax attention exactly
    expected = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, dim=-1) @ v
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_recipe_keys_and_errors(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir)
    ok = validate_recipe({**tree, "student": {"kind": "linear_attention", "variant": "sinkhorn", "max_length": 32,
                                              "block_size": 8, "sinkhorn_iters": 3, "temperature": 0.5}})
    assert (ok.student.block_size, ok.student.sinkhorn_iters, ok.student.temperature) == (8, 3, 0.5)
    for bad, match in (({"block_size": 0}, "block_size"), ({"block_size": -4}, "block_size"),
                       ({"block_size": 64}, "student.block_size.*student.max_length"),
                       ({"temperature": 0}, "temperature"), ({"sinkhorn_iters": -1}, "sinkhorn_iters")):
        student = {"kind": "linear_attention", "variant": "sinkhorn", "max_length": 32, **bad}
        with pytest.raises(RecipeError, match=match):
            validate_recipe({**tree, "student": student}, source="r.yaml")
    with pytest.raises(RecipeError, match="block_size"):
        sinkhorn_model(block_size=0)


def test_recipe_swaps_and_recovers_with_attention_transfer(tmp_path, tiny_teacher_dir):
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification

    from distilkit.run.distill import run

    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 1}, measure={"latency": False})
    tree["student"] = {"kind": "linear_attention", "variant": "sinkhorn", "max_length": 32, "block_size": 4,
                       "feature_lr": 0.05}
    tree["loss"] = {"kind": "kl", "temperature": 2.0, "attention_weight": 1.0}
    run(validate_recipe(tree))
    model = AutoModelForSequenceClassification.from_pretrained(Path(tree["output_dir"]) / "model")
    assert model.config.distilkit_linear_attention["variant"] == "sinkhorn"
    assert model.config.distilkit_linear_attention["block_size"] == 4
    w = self_attentions(model)[0].distilkit_feature.sort.weight
    assert not torch.allclose(w, torch.eye(w.shape[-1]).expand_as(w)), "the SortNet was not trained"


def test_training_memory_grows_far_slower_than_softmax():
    from .test_linear_attention import _saved_bytes

    module = self_attentions(sinkhorn_model(block_size=32))[0]

    def memory(n, fn):
        q, k, v = (torch.randn(1, 4, n, 8, requires_grad=True) for _ in range(3))
        return _saved_bytes(lambda: fn(q, k, v))

    def sink(q, k, v):
        return linear_attention(module, q, k, v, None)

    def softmax(q, k, v):
        return torch.softmax(q @ k.transpose(-1, -2), -1) @ v
    # The attention is linear in n; the Sinkhorn rounds keep iters x N_B^2 for the backward pass, which grows
    # quadratically but is 1 / B^2 of softmax's n^2 -- so somewhat above 4x per 4x length, far below 16x.
    growth, quadratic = memory(2048, sink) / memory(512, sink), memory(2048, softmax) / memory(512, softmax)
    assert growth < 6 and quadratic > 12, (growth, quadratic)
    assert memory(2048, sink) < memory(2048, softmax) / 8


def test_real_minilm_one_block_is_softmax_and_padding_is_exact(minilm):
    import copy

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm)
    torch.manual_seed(0)
    softmax = AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=2).eval()
    texts = ["a gripping , beautifully acted film", "dull , overlong and far too pleased with its own cleverness"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    one_block = swap_attention(copy.deepcopy(softmax), "sinkhorn", max_length=64, block_size=64).eval()
    small = swap_attention(copy.deepcopy(softmax), "sinkhorn", max_length=64, block_size=4).eval()
    with torch.no_grad():
        expected = softmax(**batch).logits
        torch.testing.assert_close(one_block(**batch).logits, expected, rtol=1e-4, atol=1e-4)
        padded = small(**batch).logits
        alone = small(**tokenizer(texts[:1], return_tensors="pt")).logits
        torch.testing.assert_close(padded[:1], alone, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(padded, expected, atol=1e-3)  # blocks of 4 do change the attention
