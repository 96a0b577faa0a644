"""Deep Compression (issue 13): Huffman codec, k-means sharing, magnitude pruning, the file format that
reloads with from_pretrained, and the recipe section end to end on tiny models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)

import distilkit  # noqa: F401  (registers quant_method distilkit-deep-compression with transformers)
from distilkit.core.errors import RecipeError
from distilkit.core.measure import size_on_disk
from distilkit.core.sparsity_schedule import cubic_sparsity
from distilkit.methods.deep_compression.huffman import (
    canonical_codes,
    code_lengths,
    huffman_decode,
    huffman_encode,
)
from distilkit.methods.deep_compression.kmeans import Clusters, kmeans_1d, share_weights, tie_gradients
from distilkit.methods.deep_compression.magnitude import (
    apply_masks,
    magnitude_masks,
    sparsity_of,
    target_parameters,
)
from distilkit.methods.deep_compression.storage import (
    decode_tensor,
    encode_modules,
    encode_tensor,
    pack_bits,
    unpack_bits,
)
from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .conftest import copy_student_recipe


# ---------------------------------------------------------------------------------------------- Huffman
@pytest.mark.parametrize("count", [1, 63, 64, 1000, 70_001])
def test_huffman_round_trip_is_exact(count):
    rng = np.random.default_rng(count)
    symbols = rng.geometric(0.3, size=count) - 1  # skewed, like cluster indices and gaps
    stream = huffman_encode(symbols)
    assert np.array_equal(huffman_decode(stream), symbols)


def test_huffman_single_symbol_and_empty_streams():
    assert np.array_equal(huffman_decode(huffman_encode(np.full(100, 7))), np.full(100, 7))
    assert huffman_decode(huffman_encode(np.zeros(0, dtype=np.int64))).size == 0


def test_huffman_codes_are_prefix_free_and_near_the_entropy():
    rng = np.random.default_rng(0)
    probabilities = np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02])
    symbols = rng.choice(len(probabilities), size=50_000, p=probabilities)
    counts = np.bincount(symbols, minlength=len(probabilities))
    lengths = code_lengths(counts)
    assert sum(2.0 ** -int(n) for n in lengths) == pytest.approx(1.0)  # Kraft: a complete prefix code
    codes = canonical_codes(lengths)
    words = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths)]
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    stream = huffman_encode(symbols)
    freq = counts / counts.sum()
    entropy = -(freq * np.log2(freq)).sum()
    mean_bits = stream.data.size * 8 / symbols.size
    assert entropy <= mean_bits < entropy + 1 and mean_bits < 3  # 3 bits: the fixed-width alternative


def test_long_codes_are_limited():
    fib = [1, 1]
    while len(fib) < 45:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib)  # Fibonacci counts: the deepest Huffman tree there is (44 levels)
    assert 32 < max(_unlimited_depth(counts), 0) and code_lengths(counts).max() <= 32
    symbols = np.repeat(np.arange(45), np.minimum(counts, 2000))
    assert np.array_equal(huffman_decode(huffman_encode(symbols)), symbols)


def _unlimited_depth(counts) -> int:
    from distilkit.methods.deep_compression.huffman import _tree_depths

    return int(_tree_depths(np.asarray(counts, dtype=np.float64)).max())


# ------------------------------------------------------------------------------------ k-means and packing
def test_kmeans_inits_as_han_compares_them():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 0.02, 10_000), [-0.5, 0.6]])  # two rare large weights
    linear, _ = kmeans_1d(values, 8, "linear")
    density, _ = kmeans_1d(values, 8, "density")
    random, index = kmeans_1d(values, 8, "random", seed=1)
    # Linear initialisation keeps a centroid near each rare large weight; density puts all 8 in the bulk.
    assert linear.min() < -0.4 and linear.max() > 0.5
    assert density.max() < 0.2
    assert index.shape == values.shape and index.max() < 8 and np.all(np.diff(random) >= 0)
    with pytest.raises(ValueError, match="at least 8"):
        kmeans_1d(values[:5], 8)


@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_packing_round_trip(bits):
    values = np.random.default_rng(bits).integers(0, 2 ** bits, size=1001)
    packed = pack_bits(values, bits)
    assert packed.size == math.ceil(1001 * bits / 8)
    assert np.array_equal(unpack_bits(packed, bits, 1001), values)


def test_shared_weights_stay_shared_under_adam():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32)
    with torch.no_grad():
        layer.weight[:, :16] = 0  # pruned before sharing: must stay zero
    index = share_weights(layer.weight, bits=3)
    tie_gradients(layer.weight, Clusters(index, 8))
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-2, weight_decay=0.01)
    start = layer.weight.detach().clone()
    for _ in range(5):
        layer(torch.randn(16, 64)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    weight = layer.weight.detach()
    assert not torch.equal(weight, start)
    assert torch.unique(weight[:, 16:]).numel() <= 8 and torch.all(weight[:, :16] == 0)
    # Each weight moved to its cluster's new value: equal indices, equal weights.
    for k in range(8):
        assert torch.unique(weight[index == k]).numel() <= 1


# ------------------------------------------------------------------------------------------------ pruning
def test_global_and_layer_magnitude_masks():
    torch.manual_seed(0)
    params = {"a": torch.nn.Parameter(torch.randn(100, 10)), "b": torch.nn.Parameter(torch.randn(100, 10) * 10)}
    layer = magnitude_masks(params, 0.7, "layer")
    assert all(abs(1 - m.float().mean().item() - 0.7) < 0.01 for m in layer.values())
    glob = magnitude_masks(params, 0.7, "global")
    assert 1 - glob["a"].float().mean() > 0.95 and 1 - glob["b"].float().mean() < 0.5  # small weights go first
    apply_masks(params, glob)
    assert abs(sparsity_of(params) - 0.7) < 0.01
    # Masks only grow: pruned (zero) weights rank first at the next, higher sparsity.
    again = magnitude_masks(params, 0.8, "global")
    assert torch.all(again["a"] <= glob["a"]) and torch.all(again["b"] <= glob["b"])


def test_cubic_schedule_of_zhu_and_gupta():
    values = [cubic_sparsity(t, 100, 0.9, start=0.1, end=0.6) for t in range(101)]
    assert values[0] == values[10] == 0.0 and values[60] == values[100] == pytest.approx(0.9)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[20] - values[10] > values[60] - values[50]  # fast first, slow near the target


# ---------------------------------------------------------------------------------------- file format
@pytest.mark.parametrize("case", ["dense", "sparse", "sparse-huffman", "shared", "shared-huffman",
                                  "sparse-shared-huffman"])
def test_encoded_tensors_decode_bit_exactly(case):
    torch.manual_seed(0)
    weight = torch.randn(48, 40)
    if "sparse" in case:
        weight[weight.abs() < 1.0] = 0
    if "shared" in case:
        weight = _shared(weight)
    arrays, layout = encode_tensor(weight, huffman="huffman" in case)
    assert torch.equal(decode_tensor(arrays, layout), weight)
    assert layout["sparse"] == ("sparse" in case)
    assert ("codebook" in arrays) == ("shared" in case)
    assert bool(layout["streams"]) == ("huffman" in case)
    stored = sum(a.nbytes for a in arrays.values())
    assert stored < weight.numel() * 4 if case != "dense" else stored == weight.numel() * 4


def _shared(weight: torch.Tensor) -> torch.Tensor:
    param = torch.nn.Parameter(weight.clone())
    share_weights(param, bits=4)
    return param.detach()


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64,
                                                    max_position_embeddings=64)).eval()


def compress(model, sparsity: float, bits: int | None):
    params = target_parameters(model)
    apply_masks(params, magnitude_masks(params, sparsity))
    if bits:
        for p in params.values():
            share_weights(p, bits)
    modules = {}
    for full in params:
        module, _, pname = full.rpartition(".")
        modules.setdefault(module, []).append(pname)
    return modules


@pytest.mark.parametrize("huffman", [False, True])
def test_bert_reloads_from_pretrained_with_identical_logits(tmp_path, huffman):
    model = tiny_bert()
    model.save_pretrained(tmp_path / "float")
    modules = compress(model, 0.8, bits=4)
    inputs = {"input_ids": torch.randint(0, 300, (3, 12)), "attention_mask": torch.ones(3, 12, dtype=torch.long)}
    with torch.no_grad():
        expected = model(**inputs).logits
    encode_modules(model, modules, huffman)
    model.save_pretrained(tmp_path / "encoded")
    config = json.loads((tmp_path / "encoded" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "distilkit-deep-compression"
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "encoded").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=0, rtol=0)
    assert getattr(reloaded.config, "quantization_config", None) is None  # a plain float model again
    assert size_on_disk(tmp_path / "encoded") < size_on_disk(tmp_path / "float") / 4  # tiny: config.json weighs
    reloaded.save_pretrained(tmp_path / "again")  # and it saves as one
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "again") is not None


def test_bilstm_lstm_and_embedding_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=200, embedding_dim=16, hidden_size=12,
                                                         mlp_hidden_size=10, num_labels=2)).eval()
    modules = compress(model, 0.6, bits=3)
    assert any("lstm" in name for name in modules) and any("embed" in name for name in modules)
    inputs = {"input_ids": torch.randint(1, 200, (2, 9)), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    with torch.no_grad():
        expected = model(**inputs).logits
    encode_modules(model, modules, huffman=True)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------ recipes
def tiny_recipe(tmp_path: Path, teacher: Path, deep_compression: dict, **train) -> dict:
    return copy_student_recipe(tmp_path, teacher, "deep_compression", deep_compression, **train)


def test_recipe_prunes_gradually_shares_and_huffman_codes(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, {
        "prune": {"sparsity": 0.75, "schedule": "gradual", "end": 0.5, "every": 2, "regularization": "l2"},
        "share": {"bits": 4, "start": 0.6}, "huffman": True})
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    dc = metrics["student"]["deep_compression"]
    assert abs(dc["sparsity"] - 0.75) < 0.01 and dc["max_distinct_values"] <= 2 ** 4 + 1  # + the zero
    assert metrics["student"]["metrics"] == metrics["student"]["float_metrics"]  # lossless encoding
    assert size_on_disk(out / "model") < size_on_disk(out / "model-float") / 6
    train_log = (out / "logs" / "train_log.jsonl").read_text()
    assert '"train/l2"' in train_log
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    enc = tokenizer(["a gorgeous film", "dull"], padding=True, return_tensors="pt")
    encoded = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    float_model = AutoModelForSequenceClassification.from_pretrained(out / "model-float").eval()
    with torch.no_grad():
        torch.testing.assert_close(encoded(**enc).logits, float_model(**enc).logits, atol=0, rtol=0)


def test_huffman_alone_on_a_dense_model_is_a_named_error(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, {"huffman": True}, epochs=0)
    with pytest.raises(RecipeError, match="deep_compression.huffman: .*neither sparse nor shared"):
        run(validate_recipe(tree))


@pytest.mark.parametrize(("section", "message"), [
    ({"prune": {"sparsity": 1.0}}, "deep_compression.prune.sparsity"),
    ({"share": {"bits": 9}}, "deep_compression.share.bits"),
    ({"share": {"bits": 0}}, "deep_compression.share.bits"),
    ({}, "nothing to do"),
    ({"prune": {"sparsity": 0.5, "schedule": "gradual", "end": 0.8}, "share": {"bits": 4, "start": 0.5}},
     "masks must be final"),
    ({"prune": {"sparsity": 0.5, "scope": "row"}}, "deep_compression.prune.scope"),
])
def test_bad_sections_are_named_before_anything_runs(tmp_path, section, message):
    tree = tiny_recipe(tmp_path, tmp_path / "teacher", section)
    with pytest.raises(RecipeError, match=message):
        validate_recipe(tree)


def test_too_many_clusters_for_a_tensor_is_named(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, {"share": {"bits": 8}, "skip_modules": []}, epochs=1)
    with pytest.raises(RecipeError, match=r"deep_compression.share.bits: \S+\.weight has 64 weights, fewer than its 256 clusters"):
        run(validate_recipe(tree))  # the 2 x 32 head has fewer weights than 256 clusters


def test_pipeline_compresses_a_distilled_bilstm(tmp_path, tiny_teacher_dir):
    """The whole chain: teacher -> BiLSTM -> prune, share and Huffman-code the BiLSTM (the BiLSTM teaches its
    own compressed copy), with one pipeline.md row per stage."""
    from distilkit.run.pipeline import run_pipeline
    from distilkit.run.pipeline_config import validate_pipeline

    tree = tiny_recipe(tmp_path, tiny_teacher_dir, {})
    tree.pop("deep_compression"), tree.pop("student")
    tree["output_dir"] = str(tmp_path / "pipe")
    tree["stages"] = [
        {"name": "bilstm", "student": {"kind": "bilstm", "max_length": 24, "embedding_dim": 16, "hidden_size": 12,
                                       "mlp_hidden_size": 12, "init_embeddings_from_teacher": "pca"},
         "train": {"epochs": 2, "lr": 5e-3}},
        {"name": "dc", "student": {"kind": "copy", "max_length": 24}, "train": {"epochs": 2, "lr": 1e-3},
         "deep_compression": {"prune": {"sparsity": 0.8, "schedule": "gradual", "end": 0.5, "every": 1},
                              "share": {"bits": 3, "start": 0.75}, "huffman": True}},
    ]
    summary = run_pipeline(validate_pipeline(tree), measure_side_by_side=False)
    bilstm, before, dc = summary["stages"]
    assert before["name"] == "dc (before encoding)" and before["metric"] == dc["metric"]
    assert dc["size_mb"] < bilstm["size_mb"] / 5 and dc["size_ratio"] > 5 * bilstm["size_ratio"]
    metrics = json.loads((tmp_path / "pipe" / "1-dc" / "metrics.json").read_text())
    assert metrics["student"]["deep_compression"]["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert metrics["student"]["deep_compression"]["max_distinct_values"] <= 2 ** 3 + 1
    assert metrics["teacher"]["params"] == metrics["student"]["params"]  # the BiLSTM taught its own copy
    assert "dc" in (tmp_path / "pipe" / "pipeline.md").read_text()


@pytest.mark.parametrize("kill_at", ["train.step:9", "deep_compression.encoded"])
def test_killed_deep_compression_run_resumes_to_the_uninterrupted_result(tmp_path, tiny_teacher_dir, kill_at):
    """Killed after the sharing step (masks and codebooks must be re-derived from the checkpoint) or between
    encoding and publishing: the rerun ends with the uninterrupted run's bytes."""
    import os
    import signal
    import subprocess
    import sys

    import yaml
    from safetensors.numpy import load_file

    from distilkit.core.faults import ENV

    def run_cli(name: str, kill: str | None = None, resume: bool = False) -> Path:
        tree = tiny_recipe(tmp_path / name, tiny_teacher_dir, {
            "prune": {"sparsity": 0.75, "schedule": "gradual", "end": 0.5, "every": 2},
            "share": {"bits": 4, "start": 0.6}, "huffman": True}, checkpoint_every=1)
        tree["cache"]["dir"] = str(tmp_path / "cache")
        if resume:
            tree["train"]["resume_from"] = "latest"
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tree))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop(ENV, None)
        if kill:
            env[ENV] = kill
        done = subprocess.run([sys.executable, "-m", "distilkit", "run", str(path)], env=env, capture_output=True,
                              text=True, timeout=300, cwd=Path(__file__).resolve().parent.parent)
        assert done.returncode == (-signal.SIGKILL if kill else 0), done.stderr[-2000:]
        return Path(tree["output_dir"])

    expected = load_file(run_cli("whole") / "model" / "model.safetensors")
    run_cli("killed", kill_at)
    out = run_cli("killed", resume=kill_at.startswith("train"))
    got = load_file(out / "model" / "model.safetensors")
    assert got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in expected)
    assert not list(out.rglob(".*.tmp"))
