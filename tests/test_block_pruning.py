"""Block pruning (issue 13): units per granularity, magnitude and movement scores by hand, the schedule, named
errors before training, and a recipe whose emptied heads and neurons are removed structurally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.core.errors import RecipeError
from distilkit.core.measure import count_parameters
from distilkit.core.sparsity_schedule import cubic_sparsity, update_step
from distilkit.methods.pruning.blocks import (
    BlockTarget,
    MovementScores,
    block_targets,
    expand_tiles,
    magnitude_scores,
    prune_blocks,
    select_pruned,
)
from distilkit.methods.pruning.compact import emptied_heads, emptied_neurons, remove_emptied_units
from distilkit.methods.pruning.config import BlockPruningConfig
from distilkit.methods.pruning.hooks import BlockPruningHooks
from distilkit.methods.pruning.pruned import attention_parts, encoder_layers, ffn_parts, num_heads
from distilkit.run.distill import run
from distilkit.run.preflight import preflight
from distilkit.run.recipe_io import validate_recipe

from .conftest import make_tiny_teacher
from .test_distill import tiny_recipe
from .test_prune import batch, logits, tiny

# W of the hand-computed examples, and its four 2 x 2 blocks (block row, block column):
#   (0,0) = [1 -2; 3 4]   (0,1) = [.5 0; 0 -1]   (1,0) = [0 1; -1 0]   (1,1) = [2 2; 2 2]
W = torch.tensor([[1.0, -2.0, 0.5, 0.0],
                  [3.0, 4.0, 0.0, -1.0],
                  [0.0, 1.0, 2.0, 2.0],
                  [-1.0, 0.0, 2.0, 2.0]])


def with_biases(model, seed: int = 3):
    """Stock initialisation zeroes every bias; random ones show which biases pruning zeroes (and keeps)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def hand_target(tile=(2, 2)) -> BlockTarget:
    linear = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        linear.weight.copy_(W)
    return BlockTarget("w", linear, tile, rows_are_units=True)


# ------------------------------------------------------------------------------------------ units and scores
@pytest.mark.parametrize(("granularity", "size", "grids"), [
    ("rows", None, {"query": (64, 1), "key": (64, 1), "value": (64, 1), "intermediate.dense": (128, 1)}),
    ("columns", None, {"attention.output.dense": (1, 64), "output.dense": (1, 128)}),
    ("blocks", 16, {"query": (4, 4), "key": (4, 4), "value": (4, 4), "attention.output.dense": (4, 4),
                    "intermediate.dense": (8, 4), "output.dense": (4, 8)}),
])
def test_units_and_masks_per_granularity(granularity, size, grids):
    model = with_biases(tiny("bert"))  # 3 layers, hidden 64, 4 heads of 16, FFN 128
    targets = block_targets(model, granularity, size)
    assert len(targets) == 3 * len(grids)
    assert targets[0].name.startswith("bert.encoder.layer.0.")
    for t in targets[:len(grids)]:
        short = t.name.removeprefix("bert.encoder.layer.0.").removeprefix("attention.self.").removesuffix(".weight")
        assert magnitude_scores([t])[t.name].shape == grids[short], short
    masks = prune_blocks(model, sparsity=0.5, granularity=granularity, size=size)
    for t in targets:
        pruned = masks.pruned[t.name]
        assert int(pruned.sum()) == round(0.5 * pruned.numel())  # scope: layer
        # Exactly the pruned units are zero (random weights are never zero by chance).
        assert torch.equal(t.linear.weight == 0, expand_tiles(pruned, t.tile))
        # A unit row (query/key/value, FFN first projection) left entirely empty loses its bias, so it outputs
        # exactly zero; every other bias stays.
        emptied = expand_tiles(pruned, t.tile).all(dim=1) & t.rows_are_units
        assert torch.equal(t.linear.bias == 0, emptied)
        if granularity == "rows":
            assert torch.equal(emptied, pruned[:, 0])
    assert masks.fraction == pytest.approx(0.5)


def test_magnitude_is_the_block_l2_norm_by_hand():
    blocks = magnitude_scores([hand_target()])["w"]
    torch.testing.assert_close(blocks, torch.tensor([[30.0, 1.25], [2.0, 16.0]]).sqrt())
    rows = magnitude_scores([hand_target((1, 4))])["w"]
    torch.testing.assert_close(rows, torch.tensor([[5.25], [26.0], [9.0], [9.0]]).sqrt())
    cols = magnitude_scores([hand_target((4, 1))])["w"]
    torch.testing.assert_close(cols, torch.tensor([[11.0, 21.0, 8.25, 9.0]]).sqrt())


def test_movement_accumulates_minus_w_times_gradient_per_block_by_hand():
    target = hand_target()
    weight = target.linear.weight
    movement = MovementScores([target])
    gradient = torch.ones(4, 4)
    (weight * gradient).sum().backward()  # dL/dW = 1 everywhere
    # S_B = -sum_B W * dL/dW = -(sum of the block): -(1 - 2 + 3 + 4), -(0.5 - 1), -(1 - 1), -8
    first = movement.scores()["w"].clone()
    torch.testing.assert_close(first, torch.tensor([[-6.0, 0.5], [0.0, -8.0]]))
    with torch.no_grad():  # an SGD step of 0.5: every weight moves down by 0.5 (the positive ones towards 0)
        weight -= 0.5 * gradient
    weight.grad = None
    (weight * gradient).sum().backward()
    # second term: -(sum of the block - 4 * 0.5)
    torch.testing.assert_close(movement.scores()["w"], first + torch.tensor([[-4.0, 2.5], [2.0, -6.0]]))
    movement.remove()

    # The two criteria disagree: magnitude drops the small blocks, movement the large ones shrinking to zero.
    none = {"w": torch.zeros(2, 2, dtype=torch.bool)}
    by_magnitude = select_pruned(magnitude_scores([hand_target()]), none, 0.5)["w"]
    by_movement = select_pruned({"w": first}, none, 0.5)["w"]
    assert by_magnitude.tolist() == [[False, True], [True, False]]
    assert by_movement.tolist() == [[True, False], [False, True]]


def test_selection_keeps_pruned_units_one_unit_per_matrix_and_ranks_globally():
    scores = {"a": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "b": torch.tensor([[10.0, 20.0]])}
    none = {k: torch.zeros_like(v, dtype=torch.bool) for k, v in scores.items()}
    assert select_pruned(scores, none, 0.5, "global")["a"].tolist() == [[True, True, True, False]]
    assert select_pruned(scores, none, 0.5, "global")["b"].tolist() == [[False, False]]
    # Masks only grow: a unit pruned before stays pruned even though it now scores highest.
    before = {"a": torch.tensor([[False, False, False, True]]), "b": torch.tensor([[False, False]])}
    assert select_pruned(scores, before, 0.5)["a"].tolist() == [[True, False, False, True]]
    # Never all of a matrix: at 0.99 each keeps its best unit.
    almost = select_pruned(scores, none, 0.99, "global")
    assert almost["a"].tolist() == [[True, True, True, False]] and almost["b"].tolist() == [[True, False]]


# ------------------------------------------------------------------------------------------ structural removal
@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_emptied_heads_and_neurons_are_removed_exactly(family, tmp_path):
    model = with_biases(tiny(family))
    inputs = batch(family, labels=False)
    layers = encoder_layers(model)
    with torch.no_grad():
        _, (_, _, value), _ = attention_parts(layers[0], family)
        value.weight[16:32] = 0  # head 1 of layer 0: value rows and biases empty
        value.bias[16:32] = 0
        attention_parts(layers[1], family)[2].weight[:, 32:48] = 0  # head 2 of layer 1: output columns empty
        for h in range(4):  # every head of layer 2 is silent: one must stay
            attention_parts(layers[2], family)[2].weight[:, 16 * h:16 * (h + 1)] = 0
        first, _ = ffn_parts(layers[0], family)
        first.weight[:10] = 0  # neurons 0-9 of layer 0: rows and biases empty
        first.bias[:10] = 0
        first.weight[10] = 0  # neuron 10: empty row but a bias, so it still outputs act(bias): it stays
        ffn_parts(layers[1], family)[1].weight[:, 100:] = 0  # neurons 100-127 of layer 1: output columns empty
    assert emptied_heads(model) == {0: [1], 1: [2], 2: [0, 1, 2]}
    assert emptied_neurons(model) == {0: list(range(10)), 1: list(range(100, 128))}
    expected, before = logits(model, inputs), count_parameters(model)
    summary = remove_emptied_units(model)
    assert summary["heads_per_layer"] == [3, 3, 1] and summary["ffn_per_layer"] == [118, 100, 128]
    assert summary["heads"] == [12, 7] and summary["ffn_neurons"] == [384, 346]
    assert count_parameters(model) < before
    torch.testing.assert_close(logits(model, inputs), expected, atol=1e-5, rtol=0)
    model.save_pretrained(tmp_path)
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(logits(again, inputs), logits(model, inputs), atol=0, rtol=0)


def test_one_shot_block_pruning_is_smaller_and_computes_the_masked_model():
    """What a benchmark calls: prune by magnitude, then remove; fewer parameters, the same logits."""
    model = tiny("bert")
    inputs = batch("bert", labels=False)
    prune_blocks(model, sparsity=0.75, granularity="rows", parts=["ffn"])
    masked, before = logits(model, inputs), count_parameters(model)
    summary = remove_emptied_units(model)
    assert summary["ffn_per_layer"] == [32, 32, 32] and summary["heads"] == [12, 12]
    assert count_parameters(model) == before - 3 * 96 * (2 * 64 + 1)  # a row + bias and a column per neuron
    assert [ffn_parts(x, "bert")[0].weight.shape for x in encoder_layers(model)] == [torch.Size([32, 64])] * 3
    torch.testing.assert_close(logits(model, inputs), masked, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------ the schedule
def test_schedule_masks_grow_on_the_cubic_curve_and_a_resumed_run_recovers_them():
    model = tiny("bert")
    cfg = BlockPruningConfig(granularity="blocks", size=16, score="magnitude", sparsity=0.5, end=0.5, every=2)
    hooks = BlockPruningHooks(cfg)
    hooks.prepare_student(model)
    total, gen, previous, states = 20, torch.Generator().manual_seed(0), None, {}
    for step in range(1, total + 1):
        with torch.no_grad():  # stands in for an optimizer step: every weight moves, pruned ones too
            for p in model.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=gen))
        hooks.after_step(model, step, total)
        target = cubic_sparsity(update_step(step, total, 2, 0.5), total, 0.5, end=0.5)
        assert hooks.masks.fraction == pytest.approx(target, abs=1 / 16)  # per-matrix rounding of 16 blocks
        for t in hooks.targets:
            assert torch.equal(t.linear.weight == 0, expand_tiles(hooks.masks.pruned[t.name], t.tile))
            if previous is not None:
                assert not bool((previous[t.name] & ~hooks.masks.pruned[t.name]).any()), "masks only grow"
        previous = {k: v.clone() for k, v in hooks.masks.pruned.items()}
        states[step] = ({k: v.clone() for k, v in model.state_dict().items()}, previous)
    assert hooks.masks.fraction == pytest.approx(0.5)
    assert [hooks.final_form(s, total) for s in (9, 10, 20)] == [False, True, True]

    state, pruned = states[7]  # resumed from a checkpoint at step 7: masks come back from the zeros
    model.load_state_dict(state)
    resumed = BlockPruningHooks(cfg)
    resumed.prepare_student(model)
    resumed.after_step(model, 7, total)
    assert all(torch.equal(resumed.masks.pruned[k], pruned[k]) for k in pruned)


# ------------------------------------------------------------------------------------------ recipes
@pytest.fixture(scope="module")
def four_head_teacher(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """2 layers, hidden 32, 4 heads of 8, FFN 64."""
    return make_tiny_teacher(tmp_path_factory.mktemp("four-heads"), tiny_tokenizer_dir, num_heads=4)


def block_recipe(tmp_path, teacher, train=None, **blocks):
    tree = tiny_recipe(tmp_path, teacher, train={"epochs": 2, "lr": 1e-3, **(train or {})},
                       measure={"latency": False})
    tree["student"] = {"kind": "pruned", "max_length": 32, "blocks": blocks}
    return tree


@pytest.mark.parametrize(("blocks", "message"), [
    ({"granularity": "blocks", "sparsity": 0.5}, "granularity 'blocks' needs size"),
    ({"granularity": "rows", "size": 8, "sparsity": 0.5}, "size applies to granularity 'blocks' only"),
    ({"granularity": "cubes", "sparsity": 0.5}, "student.blocks.granularity"),
    ({"granularity": "rows", "sparsity": 1.0}, "student.blocks.sparsity"),
    ({"granularity": "rows", "sparsity": 0.5, "start": 0.5, "end": 0.4}, "must come after start"),
    ({"granularity": "rows", "sparsity": 0.5, "parts": ["ffn", "ffn"]}, "lists a part twice"),
    ({"granularity": "rows", "sparsity": 0.5, "blok": 1}, "unknown key 'blok'"),
])
def test_bad_blocks_sections_are_named_at_validation(tmp_path, blocks, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(block_recipe(tmp_path, tmp_path / "teacher", **blocks))


def test_block_size_that_does_not_divide_is_named_before_training(tmp_path, four_head_teacher):
    tree = block_recipe(tmp_path, four_head_teacher, granularity="blocks", size=24, sparsity=0.5)
    named = r"student\.blocks\.size: 24 does not divide bert\.encoder\.layer\.0\.attention\.self\.query\.weight \(32 x 32\)"
    recipe = validate_recipe(tree)
    with pytest.raises(RecipeError, match=named) as preflight_error:  # distilkit run/validate: no model loaded
        preflight(recipe, "block.yaml")
    assert "bert.encoder.layer.0.intermediate.dense.weight (64 x 32)" in str(preflight_error.value)
    with pytest.raises(RecipeError, match=named):  # run() without preflight: before the optimizer exists
        run(recipe)
    out = Path(tree["output_dir"])
    assert not (out / "checkpoints").exists() and not (out / "model").exists(), "no training step ran"

    movement_without_training = block_recipe(tmp_path, four_head_teacher, train={"epochs": 0},
                                             granularity="rows", sparsity=0.5)
    with pytest.raises(RecipeError, match="student.blocks.score: 'movement' .* train.epochs is 0"):
        preflight(validate_recipe(movement_without_training))
    with pytest.raises(RecipeError, match="rounds: 1"):
        validate_recipe({**tree, "student": {**tree["student"], "rounds": 2}})


def test_recipe_removes_emptied_heads_and_neurons_and_reloads_to_the_masked_logits(tmp_path, four_head_teacher):
    # rows at 0.9: every value matrix keeps 3 of 32 rows, so at least one of its 4 heads (8 rows each) empties;
    # every FFN keeps 6 of its 64 first-projection rows: 58 neurons go per layer.
    tree = block_recipe(tmp_path, four_head_teacher, granularity="rows", score="movement", sparsity=0.9,
                        end=0.5, every=2)
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    config = json.loads((out / "model" / "config.json").read_text())
    record = config["distilkit_block_pruning"]
    assert config["model_type"] == "distilkit-pruned-bert"
    assert record["granularity"] == "rows" and record["score"] == "movement"
    assert record["ffn_per_layer"] == [6, 6] and record["ffn_neurons"] == [128, 12]
    assert all(1 <= h <= 3 for h in record["heads_per_layer"]) and record["heads"][0] == 8
    assert config["distilkit_pruning"]["heads"] == record["heads_per_layer"]
    assert metrics["student"]["params"] < metrics["teacher"]["params"]

    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    enc = tokenizer(["a gorgeous , witty film", "dull and tedious"], padding=True, return_tensors="pt")
    compact = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    masked = AutoModelForSequenceClassification.from_pretrained(out / "model-masked").eval()
    assert count_parameters(compact) == metrics["student"]["params"] < count_parameters(masked)
    assert [num_heads(x, "bert") for x in encoder_layers(compact)] == record["heads_per_layer"]
    value = attention_parts(encoder_layers(masked)[0], "bert")[1][2].weight
    assert int((value.abs().sum(dim=1) == 0).sum()) == 29, "the masked model holds the schedule's final masks"
    with torch.no_grad():
        torch.testing.assert_close(compact(**enc).logits, masked(**enc).logits, atol=1e-5, rtol=0)
    again = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**enc).logits, compact(**enc).logits, atol=0, rtol=0)


def test_one_shot_recipe_with_no_training_prunes_by_magnitude(tmp_path, four_head_teacher):
    tree = block_recipe(tmp_path, four_head_teacher, train={"epochs": 0}, granularity="columns",
                        score="magnitude", sparsity=0.5, parts=["ffn"])
    metrics = run(validate_recipe(tree))
    record = json.loads((Path(tree["output_dir"]) / "model" / "config.json").read_text())["distilkit_block_pruning"]
    assert record["ffn_per_layer"] == [32, 32] and record["heads"] == [8, 8]
    assert metrics["student"]["params"] == metrics["teacher"]["params"] - 2 * 32 * (2 * 32 + 1)


def test_shipped_recipe_validates_against_minilm_and_a_bad_block_size_is_named(minilm, tmp_path, capsys):
    from distilkit.cli import main

    recipe = str(Path(__file__).resolve().parent.parent / "recipes" / "sst2-block-prune.yaml")
    where = f"output_dir={tmp_path / 'run'}"
    assert main(["validate", recipe, "--set", where]) == 0
    blocks = ["student.blocks.granularity=blocks", "student.blocks.size=32"]  # 32 divides 384 and 1536
    assert main(["validate", recipe, "--set", where, *blocks]) == 0
    capsys.readouterr()
    assert main(["validate", recipe, "--set", where, blocks[0], "student.blocks.size=100"]) == 2
    err = capsys.readouterr().err
    assert ("student.blocks.size: 100 does not divide bert.encoder.layer.0.attention.self.query.weight "
            "(384 x 384)") in err
    assert "bert.encoder.layer.0.intermediate.dense.weight (1536 x 384)" in err
