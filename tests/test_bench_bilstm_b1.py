"""scripts/bench_bilstm_b1.py: its one-LSTM rewrite of a BiLSTM computes nn.LSTM's logits; the eager-loop wrapper."""

import pytest
import torch

from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification


@pytest.mark.parametrize("is_pair", [False, True])
def test_one_lstm_matches_the_bidirectional_model(import_script, is_pair):
    bench = import_script("bench_bilstm_b1")
    torch.manual_seed(0)
    config = BiLSTMConfig(vocab_size=50, embedding_dim=8, hidden_size=6, mlp_hidden_size=5, is_pair=is_pair,
                          num_labels=3, dropout=0.0, fast_batch1=False)  # the reference: nn.LSTM
    model = BiLSTMForSequenceClassification(config).eval()
    fused = bench.OneLSTM(model).eval()
    with torch.inference_mode():
        for len_a, len_b in [(7, 3), (2, 9), (5, 5), (1, 4)]:
            inputs = {"input_ids": torch.randint(1, 50, (1, len_a)), "attention_mask": torch.ones(1, len_a)}
            if is_pair:
                inputs |= {"input_ids_b": torch.randint(1, 50, (1, len_b)), "attention_mask_b": torch.ones(1, len_b)}
                assert torch.allclose(bench.PairBatch(model)(**inputs), model(**inputs).logits, atol=1e-5)
            # The shorter sentence of a pair waits at the zero state (input gate shut), so lengths may differ.
            assert torch.allclose(fused(**inputs), model(**inputs).logits, atol=1e-5)


def test_one_thread_wrapper_restores_the_callers_thread_count(import_script):
    """The one-thread variants leave the process's torch thread count as it was, also when the call fails."""
    bench = import_script("bench_bilstm_b1")
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, fail=False):
            seen.append(torch.get_num_threads())
            if fail:
                raise RuntimeError("inside")
            return torch.zeros(1)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        bench.OneThread(Probe())()
        with pytest.raises(RuntimeError, match="inside"):
            bench.OneThread(Probe())(fail=True)
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_eager_loop_variant_runs_the_plain_function_and_restores_the_compiled_one(import_script):
    bench = import_script("bench_bilstm_b1")
    from distilkit.models import bilstm_recurrence

    config = BiLSTMConfig(vocab_size=30, embedding_dim=6, hidden_size=4, mlp_hidden_size=5, num_labels=2)
    model = BiLSTMForSequenceClassification(config).eval()
    compiled = bilstm_recurrence.compiled_recurrence()
    calls = []
    plain = bilstm_recurrence.batch1_recurrence
    bilstm_recurrence.batch1_recurrence = lambda *a: calls.append(1) or plain(*a)
    try:
        with torch.inference_mode():
            logits = bench.EagerLoop(bench.Logits(model))(input_ids=torch.tensor([[3, 4, 5]]))
    finally:
        bilstm_recurrence.batch1_recurrence = plain
    assert calls == [1] and bilstm_recurrence.compiled_recurrence() is compiled and logits.shape == (1, 2)
