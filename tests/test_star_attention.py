"""Star-Transformer attention (Guo et al. 2019): a dense reference, padding, reload, linear cost, recipe keys.

The generic checks every variant gets (padded batch = unpadded sentence, save/reload, attention transfer)
also run for star in tests/test_linear_attention.py, which uses :func:`naive_star` below as its reference.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from distilkit.core.errors import RecipeError
from distilkit.methods.linear_attention.linear import linear_attention, self_attentions
from distilkit.methods.linear_attention.swap import swap_attention
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe


def naive_star(window, q, k, v, keep):
    """Star attention written out densely per sentence and head, on the real tokens only.

    Independent of the fast version: padded tokens are dropped before anything (so matching it on a padded
    batch also shows padding changes nothing), the relay is a literal extra node (its state the mean of the
    tokens' q, k, v), and each token's attention is an ``n x (n + 1)`` softmax with every position outside its
    window set to -inf. Returns ``[b, h, n, d]`` with zeros at padded positions.
    """
    scale = q.shape[-1] ** -0.5
    out = torch.zeros_like(q, dtype=torch.float64)
    for b in range(q.shape[0]):
        real = keep[b, 0, :, 0] > 0
        for h in range(q.shape[1]):
            qq, kk, vv = (x[b, h][real].double() for x in (q, k, v))
            n = qq.shape[0]
            # the relay node: starts as the mean, then attends to itself and every token (Guo et al.'s s^t)
            qs, ks, vs = qq.mean(0), kk.mean(0), vv.mean(0)
            a = torch.softmax(torch.cat([(qs @ ks)[None], kk @ qs]) * scale, dim=0)
            kr, vr = a @ torch.cat([ks[None], kk]), a @ torch.cat([vs[None], vv])
            # the satellites: a dense score matrix over [tokens; relay], -inf outside the ring window
            scores = torch.cat([qq @ kk.T, (qq @ kr)[:, None]], dim=1) * scale  # [n, n + 1]
            index = torch.arange(n)
            near = (index[:, None] - index[None, :]).abs() <= window
            allowed = torch.cat([near, torch.ones(n, 1, dtype=torch.bool)], dim=1)
            weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=1)
            out[b, h, real] = weights @ torch.cat([vv, vr[None]])
    return out.to(q.dtype)


def star_model(window=1, seed=0):
    from .test_linear_attention import tiny_bert

    return swap_attention(tiny_bert(seed), "star", max_length=64, star_window=window)


def random_qkv(n, seed=1, batch=2):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, n, 8, generator=generator) for _ in range(3))


@pytest.mark.parametrize("window,n,real", [(1, 10, 6), (2, 9, 9), (0, 7, 4), (3, 8, 1), (1, 2, 2)])
def test_matches_dense_reference_on_padded_batches(window, n, real):
    module = self_attentions(star_model(window))[0]
    q, k, v = random_qkv(n)
    keep = torch.ones(2, 1, n, 1)
    keep[1, :, real:] = 0
    mask = keep.bool().reshape(2, 1, 1, n).expand(2, 1, n, n)
    with torch.no_grad():
        out = linear_attention(module, q, k, v, mask)[0].transpose(1, 2)
    expected = naive_star(window, q, k, v, keep)
    torch.testing.assert_close(out[0], expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1, :, :real], expected[1, :, :real], rtol=1e-4, atol=1e-5)
    # Padded keys and values (even nan, as an earlier layer may leave there) reach no real token.
    k2, v2 = k.clone(), v.clone()
    k2[1, :, real:], v2[1, :, real:] = float("nan"), 1e4
    with torch.no_grad():
        again = linear_attention(module, q, k2, v2, mask)[0].transpose(1, 2)
    torch.testing.assert_close(again[1, :, :real], out[1, :, :real], rtol=1e-5, atol=1e-6)
    assert torch.isfinite(again).all()


def test_window_covering_the_sentence_is_softmax_over_tokens_and_relay():
    # With w >= n - 1 every token sees every other: softmax attention plus one more (relay) key.
    module = self_attentions(star_model(window=8))[0]
    q, k, v = random_qkv(6, batch=1)
    with torch.no_grad():
        out = linear_attention(module, q, k, v, None)[0].transpose(1, 2)
    expected = naive_star(100, q, k, v, torch.ones(1, 1, 6, 1))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_padding_does_not_change_a_sentence_in_a_model():
    model = star_model(window=2)
    ids = torch.tensor([[2, 11, 12, 13, 3, 0, 0, 0, 0], [2, 21, 22, 23, 24, 25, 26, 27, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[:1, :5], attention_mask=mask[:1, :5]).logits
        other = model(input_ids=ids[1:], attention_mask=mask[1:]).logits
    torch.testing.assert_close(batched[:1], alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched[1:], other, rtol=1e-4, atol=1e-5)


def test_save_reload_gives_identical_logits(tmp_path):
    model = star_model(window=2)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "star.py").is_file()  # linear.py imports it: the remote code needs both
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded).__name__ == "LinearAttentionBertForSequenceClassification"
    assert reloaded.config.distilkit_linear_attention["variant"] == "star"
    assert reloaded.config.distilkit_linear_attention["star_window"] == 2
    assert all(a.distilkit_feature.star_window == 2 for a in self_attentions(reloaded))
    ids = torch.randint(4, 200, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits,
                                   model(input_ids=ids, attention_mask=mask).logits)


def test_remote_code_alone_reloads_the_model(tmp_path):
    """trust_remote_code users have no distilkit: the copied linear.py + star.py must rebuild the model."""
    import subprocess
    import sys

    model = star_model(window=1)
    model.save_pretrained(tmp_path)
    ids = torch.randint(4, 200, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    torch.save(ids, tmp_path / "ids.pt")
    code = ("import sys, torch; sys.modules['distilkit'] = None\n"  # importing distilkit would fail here
            "from transformers import AutoModelForSequenceClassification as A\n"
            f"m = A.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()\n"
            "assert type(m).__module__.startswith('transformers_modules'), type(m).__module__\n"
            f"ids = torch.load({str(tmp_path / 'ids.pt')!r})\n"
            f"torch.save(m(input_ids=ids).logits.detach(), {str(tmp_path / 'out.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                   env={"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                        "HF_MODULES_CACHE": str(tmp_path / "modules")})
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected)


def _largest_saved(fn) -> int:
    """Elements of the largest tensor autograd keeps from the attention (softmax: the ``n x n`` weights per
    head)."""
    biggest = 0

    def pack(t):
        nonlocal biggest
        biggest = max(biggest, t.numel())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return biggest


def test_cost_grows_linearly_with_length():
    from .test_linear_attention import _saved_bytes

    module = self_attentions(star_model(window=1))[0]

    def star(n, measure):
        q, k, v = (torch.randn(1, 4, n, 8, requires_grad=True) for _ in range(3))
        return measure(lambda: linear_attention(module, q, k, v, None))

    def softmax(n, measure):
        q, k, v = (torch.randn(1, 4, n, 8, requires_grad=True) for _ in range(3))
        return measure(lambda: torch.softmax(q @ k.transpose(-1, -2), -1) @ v)
    for measure in (_saved_bytes, _largest_saved):  # all activation memory, and the largest tensor alone
        growth, quadratic = star(2048, measure) / star(512, measure), softmax(2048, measure) / softmax(512, measure)
        assert 3.5 < growth < 4.5 and quadratic > 12, (measure.__name__, growth, quadratic)
    # nothing larger than the padded keys ([b, h, n + 2w, d]): no n x n scores, not even an [n, 2w + 1, d] window
    assert star(2048, _largest_saved) <= 4 * (2048 + 2) * 8
    assert star(2048, _saved_bytes) < softmax(2048, _saved_bytes) / 20


def test_gradients_reach_queries_keys_and_values_through_window_and_relay():
    module = self_attentions(star_model(window=1))[0]
    q, k, v = (x.requires_grad_() for x in random_qkv(8, batch=1))
    keep = torch.ones(1, 1, 8, 1)
    out = linear_attention(module, q, k, v, keep.bool().reshape(1, 1, 1, 8))[0]
    out[:, 0].sum().backward()  # token 0: its window is tokens 0 and 1; token 5 reaches it only via the relay
    assert k.grad[..., 5, :].abs().sum() > 0 and v.grad[..., 5, :].abs().sum() > 0
    assert q.grad[..., 5, :].abs().sum() > 0  # the relay's query is the mean of all queries


def test_onnx_export_matches_pytorch(tmp_path, tiny_teacher_dir):
    pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")
    from transformers import AutoTokenizer

    from distilkit.deploy.onnx_export import export_onnx

    from .conftest import FIXTURES

    model = swap_attention(AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir), "star",
                           max_length=128, star_window=2).eval()
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_teacher_dir).save_pretrained(tmp_path / "model")
    # dev sentence pairs of many lengths: the window and relay must stay dynamic in the traced graph
    report = export_onnx(tmp_path / "model", tmp_path / "onnx", task="mrpc", data_dir=str(FIXTURES / "glue"),
                         max_examples=64)
    assert report["checked_rows"] > 1 and report["max_abs_logit_diff"] < 1e-4, report


def test_recipe_keys_and_errors(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir)
    ok = validate_recipe({**tree, "student": {"kind": "linear_attention", "variant": "star", "max_length": 32,
                                              "star_window": 3}})
    assert ok.student.variant == "star" and ok.student.star_window == 3
    assert validate_recipe({**tree, "student": {"kind": "linear_attention", "variant": "star"}}).student.star_window == 1
    for bad, match in (({"star_window": -1}, "star_window"),
                       ({"star_window": 32}, "student.star_window.*student.max_length"),
                       ({"features": 16}, "student.features.*student.variant"),
                       ({"seed": 2}, "student.seed.*student.variant"),
                       ({"feature_lr": 0.1}, "student.feature_lr.*student.variant"),
                       ({"block_size": 4}, "student.block_size.*student.variant")):
        student = {"kind": "linear_attention", "variant": "star", "max_length": 32, **bad}
        with pytest.raises(RecipeError, match=match):
            validate_recipe({**tree, "student": student}, source="r.yaml")
    with pytest.raises(RecipeError, match="student.star_window.*student.variant"):
        validate_recipe({**tree, "student": {"kind": "linear_attention", "variant": "elu", "star_window": 2}})
    with pytest.raises(RecipeError, match="star_window"):
        star_model(window=-1)


def test_recipe_swaps_and_recovers_with_attention_transfer(tmp_path, tiny_teacher_dir):
    from pathlib import Path

    from distilkit.run.distill import run

    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 1}, measure={"latency": False})
    tree["student"] = {"kind": "linear_attention", "variant": "star", "max_length": 32, "star_window": 2}
    tree["loss"] = {"kind": "kl", "temperature": 2.0, "attention_weight": 1.0}
    metrics = run(validate_recipe(tree))
    model = AutoModelForSequenceClassification.from_pretrained(Path(tree["output_dir"]) / "model")
    assert model.config.distilkit_linear_attention == {"variant": "star", "features": 64, "max_length": 32,
                                                       "seed": 0, "star_window": 2}
    # star adds no parameters: the pretrained Q/K/V are what recovery trains
    assert metrics["student"]["params"] == metrics["teacher"]["params"]
