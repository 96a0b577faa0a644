"""The BiLSTM's batch-1 path (``fast_batch1``, issue 26): same logits as ``nn.LSTM``, taken only where it may be."""

import pytest
import torch

from distilkit.models import bilstm_recurrence
from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification


def tiny(is_pair: bool, pooling: str = "last", **kwargs) -> BiLSTMForSequenceClassification:
    torch.manual_seed(0)
    config = BiLSTMConfig(vocab_size=40, embedding_dim=10, hidden_size=6, mlp_hidden_size=7, is_pair=is_pair,
                          pooling=pooling, num_labels=3, **kwargs)
    return BiLSTMForSequenceClassification(config).eval()


def both_paths(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits through the batch-1 loop and through nn.LSTM (fast_batch1 off), without gradients."""
    with torch.inference_mode():
        model._batch1_cache = None
        fast = model(**inputs).logits
        assert model._batch1_cache is not None, "the batch-1 path was not taken"
        model.config.fast_batch1 = False
        try:
            slow = model(**inputs).logits
        finally:
            model.config.fast_batch1 = True
    return fast, slow


def row(ids: list[int], mask: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([ids], dtype=torch.long),
            torch.tensor([mask if mask is not None else [1] * len(ids)], dtype=torch.long))


@pytest.mark.parametrize("pooling", ["last", "max"])
@pytest.mark.parametrize("is_pair", [False, True])
@pytest.mark.parametrize("a, b", [([5, 6, 7, 8, 9], [3, 2]), ([4], [9, 8, 7, 6, 5, 4, 3]), ([1, 2, 3], [4, 5, 6]),
                                  ([], [7, 7])])
def test_batch1_loop_matches_nn_lstm(is_pair, pooling, a, b):
    """Both directions and both sentences (of different lengths) stepped together give nn.LSTM's outputs."""
    model = tiny(is_pair, pooling)
    inputs = dict(zip(("input_ids", "attention_mask"), row(a)))
    if is_pair:
        inputs |= dict(zip(("input_ids_b", "attention_mask_b"), row(b)))
    fast, slow = both_paths(model, inputs)
    assert torch.allclose(fast, slow, atol=1e-5), (fast, slow)


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_batch1_loop_reads_only_the_real_tokens_of_a_padded_row(pooling):
    model = tiny(True, pooling)
    ids_a, mask_a = row([0, 0, 5, 6, 7], [0, 0, 1, 1, 1])  # left padding
    ids_b, mask_b = row([3, 4, 0, 0], [1, 1, 0, 0])  # right padding
    inputs = {"input_ids": ids_a, "attention_mask": mask_a, "input_ids_b": ids_b, "attention_mask_b": mask_b}
    fast, slow = both_paths(model, inputs)
    assert torch.allclose(fast, slow, atol=1e-5)
    unpadded = {"input_ids": torch.tensor([[5, 6, 7]]), "input_ids_b": torch.tensor([[3, 4]])}
    with torch.inference_mode():
        assert torch.allclose(model(**unpadded).logits, fast, atol=1e-6)


def test_gate_table_follows_in_place_weight_changes():
    """An optimizer step or a copy_ into a weight rebuilds the table (its version counter moved)."""
    model = tiny(False)
    inputs = {"input_ids": torch.tensor([[3, 4, 5]])}
    before, _ = both_paths(model, inputs)
    with torch.no_grad():
        model.embeddings.weight[4].add_(1.0)
        model.lstm.weight_hh_l0_reverse.mul_(0.5)
    after, reference = both_paths(model, inputs)
    assert not torch.allclose(after, before, atol=1e-4)
    assert torch.allclose(after, reference, atol=1e-5)


def test_batch1_path_only_without_gradients_in_eval_mode_at_batch_1():
    model = tiny(False)
    one = {"input_ids": torch.tensor([[3, 4, 5]])}
    model(**one)  # gradients on: nn.LSTM, no table
    assert model._batch1_cache is None
    with torch.no_grad():
        model(input_ids=torch.tensor([[3, 4, 5], [6, 7, 8]]))  # batch 2
        assert model._batch1_cache is None
        model(**one)
        assert model._batch1_cache is not None
    model.train()  # training frees the table
    assert model._batch1_cache is None
    with torch.no_grad():
        model(**one)  # training mode: nn.LSTM (dropout applies there)
    assert model._batch1_cache is None


def test_quantized_lstm_keeps_its_own_forward():
    model = tiny(False)
    int8 = torch.ao.quantization.quantize_dynamic(model, {torch.nn.LSTM}, dtype=torch.qint8)
    with torch.inference_mode():
        logits = int8(input_ids=torch.tensor([[3, 4, 5]])).logits
    assert int8._batch1_cache is None and torch.isfinite(logits).all()


def test_compiled_and_eager_recurrence_agree():
    model = tiny(True, "max")
    table, w_hh = model._batch1_weights()
    sentences = [torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6])]
    with torch.inference_mode():
        compiled = bilstm_recurrence.compiled_recurrence()(sentences, table, w_hh, True)
        eager = bilstm_recurrence.batch1_recurrence(sentences, table, w_hh, True)
    assert compiled.shape == (2, 12) and torch.allclose(compiled, eager, atol=1e-6)


def test_a_config_without_the_field_loads_with_the_batch1_path(tmp_path):
    model = tiny(False)
    model.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text().replace('"fast_batch1": true,', "")
    (tmp_path / "config.json").write_text(config)
    loaded = BiLSTMForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.fast_batch1 is True
    fast, slow = both_paths(loaded, {"input_ids": torch.tensor([[3, 4, 5]])})
    assert torch.allclose(fast, slow, atol=1e-5)


def test_a_hooked_lstm_runs_itself():
    """A forward hook on the LSTM (MAC counting, activation capture) means nn.LSTM runs, so the hook sees it."""
    model = tiny(False)
    seen = []
    handle = model.lstm.register_forward_hook(lambda module, inputs, output: seen.append(output[0].shape))
    try:
        with torch.inference_mode():
            model(input_ids=torch.tensor([[3, 4, 5]]))
    finally:
        handle.remove()
    assert seen == [(1, 3, 12)] and model._batch1_cache is None
