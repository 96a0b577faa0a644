"""What makes training fast without changing what it computes: length-grouped batches, sparse embedding
gradients (lazy Adam) with clipping that sees them, and runs that resume exactly with both on."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from distilkit.data.batches import EpochShuffleSampler, LengthGroupedSampler
from distilkit.run.distill import run
from distilkit.run.optimizer import DenseAndSparseAdam, build_optimizer, clip_gradients
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe
from .test_resume import final_weights, resume_recipe


def test_length_grouped_batches_are_a_permutation_with_little_padding():
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 200, (1000,), generator=g).tolist()
    grouped = LengthGroupedSampler(lengths, batch_size=16, seed=3, group_batches=10)
    plain = EpochShuffleSampler(len(lengths), seed=3)

    def padding(order):
        batches = [order[i:i + 16] for i in range(0, len(order), 16)]
        return sum(max(lengths[j] for j in b) * len(b) - sum(lengths[j] for j in b) for b in batches)

    order = list(grouped)
    assert sorted(order) == list(range(1000))
    assert order == list(grouped), "the order is a function of (seed, epoch) only"
    assert padding(order) < padding(list(plain)) / 5
    grouped.set_epoch(1)
    assert list(grouped) != order
    # 1000 = 62 x 16 + 8: the short batch (the longest 8 of the last mega-batch) stays last, as with a plain shuffle.
    grouped.set_epoch(0)
    permutation = torch.randperm(1000, generator=torch.Generator().manual_seed(3)).tolist()
    assert order[-8:] == sorted(permutation[960:], key=lengths.__getitem__)[-8:]
    assert len(LengthGroupedSampler(lengths[:8], 16, 0)) == 8 and sorted(LengthGroupedSampler(lengths[:8], 16, 0)) == list(range(8))


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding, self.out = nn.Embedding(50, 8), nn.Linear(8, 2)

    def get_input_embeddings(self):
        return self.embedding

    def forward(self, ids):
        return self.out(self.embedding(ids)).pow(2).sum()


def test_clipping_counts_sparse_gradients_like_dense_ones():
    torch.manual_seed(0)
    dense, sparse = TwoLayer(), TwoLayer()
    sparse.load_state_dict(dense.state_dict())
    sparse.embedding.sparse = True
    ids = torch.tensor([[1, 2, 2, 7], [7, 7, 3, 1]])  # repeated rows: their gradients must add up
    for model in (dense, sparse):
        model(ids).backward()
    expected = torch.nn.utils.clip_grad_norm_(dense.parameters(), 0.5)
    got = clip_gradients(sparse.parameters(), 0.5)
    torch.testing.assert_close(got, expected)
    assert sparse.embedding.weight.grad.is_sparse
    torch.testing.assert_close(sparse.embedding.weight.grad.to_dense(), dense.embedding.weight.grad)
    torch.testing.assert_close(sparse.out.weight.grad, dense.out.weight.grad)


def test_lazy_adam_updates_only_the_rows_a_batch_used():
    torch.manual_seed(0)
    model = TwoLayer()
    before = model.embedding.weight.detach().clone()
    # No weight decay here: decay shrinks every row each step (next test); Adam's moments are what stay lazy.
    optimizer = build_optimizer(model, [{"params": list(model.parameters())}], lr=0.1, weight_decay=0.0,
                                sparse_embeddings=True)
    assert isinstance(optimizer, DenseAndSparseAdam) and len(optimizer.param_groups) == 2
    model(torch.tensor([[4, 9]])).backward()
    optimizer.step()
    changed = (model.embedding.weight.detach() != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [4, 9]
    state = optimizer.state_dict()
    other = TwoLayer()
    fresh = build_optimizer(other, [{"params": list(other.parameters())}], 0.1, 0.01, True)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["sparse"]["state"].keys() == state["sparse"]["state"].keys()


def test_weight_decay_reaches_every_row_of_a_sparse_embedding_as_adamw_decays_it():
    """AdamW's decoupled decay (Loshchilov & Hutter 2019, Algorithm 2 line 12) shrinks every weight by ``lr * wd``
    per step, rows without gradient included. With the same rows in every batch, lazy Adam's moments are dense
    Adam's, so the sparse table must equal dense AdamW's after every step; a group's own ``weight_decay`` wins."""
    torch.manual_seed(0)
    dense, sparse = TwoLayer(), TwoLayer()
    sparse.load_state_dict(dense.state_dict())
    before = dense.embedding.weight.detach().clone()
    lr, wd, steps = 0.1, 0.05, 3
    optimizers = [(model, build_optimizer(model, [{"params": list(model.parameters())}], lr, wd, is_sparse))
                  for model, is_sparse in ((dense, False), (sparse, True))]
    ids = torch.tensor([[4, 9, 9], [2, 4, 7]])
    for _ in range(steps):
        for model, optimizer in optimizers:
            optimizer.zero_grad()
            model(ids).backward()
            optimizer.step()
    assert sparse.embedding.weight.grad.is_sparse
    torch.testing.assert_close(sparse.embedding.weight, dense.embedding.weight)
    untouched = [row for row in range(50) if row not in (2, 4, 7, 9)]
    torch.testing.assert_close(sparse.embedding.weight[untouched], before[untouched] * (1 - lr * wd) ** steps)

    no_decay = TwoLayer()
    no_decay.load_state_dict(dense.state_dict())
    table = no_decay.embedding.weight.detach().clone()
    optimizer = build_optimizer(no_decay, [{"params": [no_decay.embedding.weight], "weight_decay": 0.0},
                                           {"params": list(no_decay.out.parameters())}], lr, wd, True)
    no_decay(ids).backward()
    optimizer.step()
    assert torch.equal(no_decay.embedding.weight[untouched], table[untouched])


def test_a_sparse_grouped_run_learns_and_resumes_exactly(tmp_path, tiny_teacher_dir):
    reference = resume_recipe(tmp_path, tiny_teacher_dir, "uninterrupted")
    reference["train"].update(sparse_embeddings=True, group_by_length=True)
    ref_metrics = run(validate_recipe(reference))
    out = Path(reference["output_dir"])
    lines = [json.loads(x) for x in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in lines if "train/loss" in r]
    assert losses[-1] < losses[0]
    resumed = resume_recipe(tmp_path, tiny_teacher_dir, "resumed")
    resumed["train"].update(sparse_embeddings=True, group_by_length=True,
                            resume_from=str(out / "checkpoints" / "step-00000004"))
    metrics = run(validate_recipe(resumed))
    assert final_weights(Path(resumed["output_dir"])) == final_weights(out)
    assert metrics["history"] == ref_metrics["history"]


def test_sparse_embeddings_refuse_fp16(tmp_path, tiny_teacher_dir):
    from distilkit.core.errors import RecipeError

    with pytest.raises(RecipeError, match="train.sparse_embeddings"):
        validate_recipe(tiny_recipe(tmp_path, tiny_teacher_dir, train={"sparse_embeddings": True,
                                                                       "mixed_precision": "fp16"}))
