"""Cross-layer parameter sharing (``student.share_layers``, ALBERT section 3.1): tied storage, shared gradients,
initialisation from the teacher, save/reload, parameter counts, a distillation run and the named errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from distilkit.core.errors import RecipeError
from distilkit.core.measure import count_parameters, size_on_disk
from distilkit.data.tasks import load_task
from distilkit.models.shared_layers import layer_groups, share_layers, shared_layer_groups
from distilkit.models.teachers import load_hf_teacher
from distilkit.models.transformer import build_transformer_student
from distilkit.run.distill import run
from distilkit.run.preflight import preflight
from distilkit.run.recipe_io import validate_recipe
from distilkit.run.students import make_student

from .conftest import FIXTURES, assert_loads_without_distilkit, make_tiny_teacher

PREFIX = "bert.encoder.layer"


def tiny_bert(num_layers: int = 4, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


def layer_params(model, index: int) -> dict[str, torch.Tensor]:
    return dict(model.get_submodule(f"{PREFIX}.{index}").named_parameters())


def test_layer_groups():
    assert layer_groups(4, 2) == [[0, 1], [2, 3]]
    assert layer_groups(3, "all") == [[0, 1, 2]]
    assert layer_groups(3, 1) == [[0], [1], [2]]
    for bad in (3, 0, 5):
        with pytest.raises(ValueError, match="must divide the layer count"):
            layer_groups(4, bad)


def test_groups_share_storage_and_parameters_count_once():
    stock = tiny_bert()
    shared = share_layers(stock, 2)
    assert shared_layer_groups(shared) == [[0, 1], [2, 3]]
    for name, param in layer_params(shared, 0).items():
        assert param.data_ptr() == layer_params(shared, 1)[name].data_ptr(), name
        assert param.data_ptr() != layer_params(shared, 2)[name].data_ptr(), name
    assert layer_params(shared, 2)["attention.self.query.weight"] is layer_params(shared, 3)[
        "attention.self.query.weight"]
    per_layer = sum(p.numel() for p in layer_params(stock, 0).values())
    assert count_parameters(shared) == count_parameters(stock) - 2 * per_layer
    assert count_parameters(shared) == len(torch.nn.utils.parameters_to_vector(shared.parameters()))
    assert shared_layer_groups(stock) is None


def test_gradient_step_moves_a_group_as_one_and_sums_its_layers_gradients():
    shared = share_layers(tiny_bert(), 2).train()
    torch.manual_seed(1)
    # The same model without ties, holding the same values: its per-layer gradients are what sharing adds up.
    untied = BertForSequenceClassification(shared.config).train()
    untied.load_state_dict(shared.state_dict())
    inputs = {"input_ids": torch.randint(0, 120, (3, 9)), "labels": torch.tensor([0, 1, 1])}
    before = {i: {k: v.detach().clone() for k, v in layer_params(shared, i).items()} for i in range(4)}
    optimizer = torch.optim.SGD(shared.parameters(), lr=0.5)
    torch.manual_seed(2)
    shared(**inputs).loss.backward()
    torch.manual_seed(2)  # same dropout masks
    untied(**inputs).loss.backward()
    name = "intermediate.dense.weight"
    expected = layer_params(untied, 0)[name].grad + layer_params(untied, 1)[name].grad
    torch.testing.assert_close(layer_params(shared, 0)[name].grad, expected)
    optimizer.step()
    for key in before[0]:
        step0 = layer_params(shared, 0)[key] - before[0][key]
        torch.testing.assert_close(layer_params(shared, 1)[key] - before[1][key], step0, atol=0, rtol=0)
        torch.testing.assert_close(layer_params(shared, 3)[key] - before[3][key],
                                   layer_params(shared, 2)[key] - before[2][key], atol=0, rtol=0)
    moved = layer_params(shared, 0)[name] - before[0][name]
    assert moved.abs().max() > 0 and not torch.equal(moved, layer_params(shared, 2)[name] - before[2][name])


def test_average_and_first_init_come_from_the_mapped_teacher_layers():
    teacher = tiny_bert(num_layers=6, seed=3)
    with torch.no_grad():  # biases start at zero and LayerNorm weights at one: make every layer distinct
        for param in teacher.parameters():
            param.add_(0.1 * torch.randn_like(param))
    student = build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=4,
                                        init_from_teacher_layers=[0, 2, 3, 5], teacher_model=teacher)
    averaged, first = share_layers(student, 2, "average"), share_layers(student, 2, "first")
    for name in ("attention.self.key.weight", "output.dense.bias", "attention.output.LayerNorm.weight"):
        for group, (a, b) in ((0, (0, 2)), (2, (3, 5))):
            mean = (layer_params(teacher, a)[name] + layer_params(teacher, b)[name]) / 2
            torch.testing.assert_close(layer_params(averaged, group)[name], mean)
            assert not torch.allclose(layer_params(averaged, group)[name], layer_params(teacher, a)[name])
            torch.testing.assert_close(layer_params(first, group)[name], layer_params(teacher, a)[name],
                                       atol=0, rtol=0)
    # Outside the layers nothing changes.
    torch.testing.assert_close(averaged.bert.embeddings.word_embeddings.weight,
                               teacher.bert.embeddings.word_embeddings.weight, atol=0, rtol=0)


def test_equal_layers_keep_the_logits():
    stock = tiny_bert()
    state = stock.state_dict()
    for key in list(state):  # make layers 1 and 3 copies of 0 and 2: sharing them then changes nothing
        for src, dst in ((0, 1), (2, 3)):
            if key.startswith(f"{PREFIX}.{src}."):
                state[key.replace(f"{PREFIX}.{src}.", f"{PREFIX}.{dst}.", 1)] = state[key].clone()
    stock.load_state_dict(state)
    inputs = torch.randint(0, 120, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(share_layers(stock, 2, "average").eval()(inputs).logits, stock(inputs).logits)


def test_save_reload_keeps_sharing_logits_and_a_smaller_file(tmp_path):
    stock = tiny_bert()
    shared = share_layers(stock, "all")
    with torch.no_grad():  # train a little apart from the init so equality of logits means something
        for param in shared.parameters():
            param.add_(0.01 * torch.randn_like(param))
    shared.save_pretrained(tmp_path / "shared")
    stock.save_pretrained(tmp_path / "stock")
    with safe_open(tmp_path / "shared" / "model.safetensors", "pt") as f:
        layers = {key.split(".")[3] for key in f.keys() if key.startswith(PREFIX)}
    assert layers == {"0"}, "the file must hold the shared block once"
    per_layer = sum(p.numel() * p.element_size() for p in layer_params(stock, 0).values())
    saved = size_on_disk(tmp_path / "shared")
    assert saved < size_on_disk(tmp_path / "stock") - 2.9 * per_layer
    config = json.loads((tmp_path / "shared" / "config.json").read_text())
    assert config["model_type"] == "distilkit-shared-bert"
    assert config["distilkit_share_layers"] == {"groups": [[0, 1, 2, 3]]}

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "shared").eval()
    assert type(reloaded).__name__ == "SharedBertForSequenceClassification"
    for i in (1, 2, 3):
        for name, param in layer_params(reloaded, 0).items():
            assert layer_params(reloaded, i)[name] is param, (i, name)
    assert count_parameters(reloaded) == count_parameters(shared)
    inputs = {"input_ids": torch.randint(0, 120, (3, 11)), "attention_mask": torch.ones(3, 11, dtype=torch.long)}
    with torch.no_grad():
        expected = shared.eval()(**inputs).logits
        torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=0, rtol=0)
    # Saving the reloaded model again writes the same single copy.
    reloaded.save_pretrained(tmp_path / "again")
    assert size_on_disk(tmp_path / "again") == saved
    assert_loads_without_distilkit(tmp_path / "shared", inputs, expected, timeout=120)


def test_distilbert_family_and_unsupported_models():
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=64)
    shared = share_layers(DistilBertForSequenceClassification(config), "all")
    layers = shared.distilbert.transformer.layer
    assert layers[0].ffn.lin1.weight is layers[1].ffn.lin1.weight
    with pytest.raises(ValueError, match="stock BERT, RoBERTa and DistilBERT"):
        share_layers(shared, 1)  # already shared
    with pytest.raises(ValueError, match="'average' or 'first'"):
        share_layers(tiny_bert(), 2, "mean")


def shared_recipe(tmp_path: Path, teacher: Path, **student) -> dict:
    return {"task": "sst2", "output_dir": str(tmp_path / "run"),
            "data": {"dir": str(FIXTURES / "glue"), "max_train_examples": 96, "max_eval_examples": 48},
            "teacher": {"model": str(teacher), "max_length": 24, "batch_size": 32},
            "student": {"kind": "transformer", "max_length": 24, "num_layers": 2,
                        "share_layers": {"group_size": "all"}, **student},
            "train": {"epochs": 2, "batch_size": 8, "lr": 2e-3, "log_every": 1},
            "cache": {"dir": str(tmp_path / "cache")}, "measure": {"latency": False}}


def test_distillation_run_trains_and_saves_a_shared_student(tmp_path, tiny_teacher_dir):
    tree = shared_recipe(tmp_path, tiny_teacher_dir)
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert type(model).__name__ == "SharedBertForSequenceClassification"
    assert layer_params(model, 0)["attention.self.value.weight"] is layer_params(model, 1)["attention.self.value.weight"]
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    per_layer = sum(p.numel() for p in layer_params(teacher, 0).values())
    # The 2-layer teacher and the 2-layer student differ by exactly the one block the student shares.
    assert metrics["student"]["params"] == count_parameters(model) == metrics["teacher"]["params"] - per_layer
    assert metrics["student"]["share_layers"] == {"groups": [[0, 1]]}
    # Trained: the shared block has left the average of the teacher's two layers it started from.
    name = "intermediate.dense.weight"
    start = (layer_params(teacher, 0)[name] + layer_params(teacher, 1)[name]) / 2
    assert (layer_params(model, 0)[name] - start).abs().max() > 1e-4
    losses = [rec["train/loss"] for rec in map(json.loads, (out / "logs" / "train_log.jsonl").read_text().splitlines())
              if "train/loss" in rec]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, "the shared student did not learn the teacher's logits"


def teacher_for(path: Path):
    return load_hf_teacher(str(path), num_labels=2, problem_type="single_label_classification", tokenizer=None,
                           revision=None, max_length=24, device=torch.device("cpu"), dtype="float32")


def test_layer_list_init_picks_one_teacher_layer_per_group(tmp_path, tiny_tokenizer_dir):
    teacher_dir = make_tiny_teacher(tmp_path / "t4", tiny_tokenizer_dir, num_layers=4)
    teacher = teacher_for(teacher_dir)
    recipe = validate_recipe(shared_recipe(tmp_path, teacher_dir, num_layers=4,
                                           share_layers={"group_size": 2, "init": [3, 1]}))
    model, _ = make_student(recipe, load_task("sst2"), teacher)
    for group, source in ((0, 3), (2, 1)):
        for name, param in layer_params(model, group).items():
            torch.testing.assert_close(param, layer_params(teacher.model, source)[name], atol=0, rtol=0)


def test_fractional_depth_that_groups_cannot_split(tmp_path, tiny_tokenizer_dir):
    teacher_dir = make_tiny_teacher(tmp_path / "t4", tiny_tokenizer_dir, num_layers=4)
    tree = shared_recipe(tmp_path, teacher_dir, num_layers=0.75, share_layers={"group_size": 2})  # 3 layers
    recipe = validate_recipe(tree)
    with pytest.raises(RecipeError, match=r"student.share_layers.group_size: 2 does not divide the student's 3"):
        preflight(recipe, "r.yaml")
    with pytest.raises(RecipeError, match=r"student.share_layers.group_size: .*student.num_layers: 0.75 gives 3"):
        make_student(recipe, load_task("sst2"), teacher_for(teacher_dir))


@pytest.mark.parametrize("share, message", [
    ({"group_size": 0}, r"r.yaml: student.share_layers.group_size: Value error, 0 layers per shared block"),
    ({"init": []}, r"r.yaml: student.share_layers.init: Value error, an empty list names no teacher layer"),
    ({"init": [1, -1]}, r"student.share_layers.init: Value error, \[1, -1\]: teacher layer indices count from 0"),
    ({"group_size": 3}, r"student.share_layers.group_size: 3 conflicts with student.num_layers: 2"),
    ({"group_size": 1, "init": [0]}, r"student.share_layers.init: \[0\] conflicts with "
                                     r"student.share_layers.group_size: 1"),
    ({"init": "middle"}, r"student.share_layers.init"),
])
def test_bad_share_layers_are_named_before_anything_runs(tmp_path, share, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(shared_recipe(tmp_path, tmp_path / "no-teacher", share_layers=share), source="r.yaml")


@pytest.mark.parametrize("student, why", [
    ({"kind": "bilstm"}, "a BiLSTM has no stack of transformer layers"),
    ({"kind": "pruned", "heads": 0.5}, "structural pruning leaves layers of different shapes"),
])
def test_kinds_that_cannot_share(tmp_path, student, why):
    tree = shared_recipe(tmp_path, tmp_path / "no-teacher")
    tree["student"] = {**student, "share_layers": {"group_size": "all"}}
    with pytest.raises(RecipeError, match=rf"r.yaml: student.share_layers: cross-layer parameter sharing is for "
                                          rf"kind: transformer students, not {student['kind']}: {why}"):
        validate_recipe(tree, source="r.yaml")


def test_minilm_two_layer_student_shares_one_block_on_disk(minilm, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from distilkit.models.transformer import encode_transformer

    encoder = AutoModel.from_pretrained(minilm)
    stock = build_transformer_student(teacher_config=encoder.config, num_labels=2,
                                      problem_type="single_label_classification", num_layers=2,
                                      init_from_teacher_layers="uniform", teacher_model=encoder)
    shared = share_layers(stock, "all")
    name = "attention.self.query.weight"
    torch.testing.assert_close(layer_params(shared, 1)[name],
                               (encoder.encoder.layer[2].attention.self.query.weight
                                + encoder.encoder.layer[5].attention.self.query.weight) / 2)
    stock.save_pretrained(tmp_path / "stock")
    shared.save_pretrained(tmp_path / "shared")
    layer_bytes = sum(p.numel() * 4 for p in layer_params(stock, 0).values())  # float32
    assert abs(size_on_disk(tmp_path / "stock") - size_on_disk(tmp_path / "shared") - layer_bytes) < 64 * 1024
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "shared").eval()
    inputs = encode_transformer(AutoTokenizer.from_pretrained(minilm), ["a fine film", "dull and long"], None, 16)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, shared.eval()(**inputs).logits, atol=0, rtol=0)
    assert count_parameters(reloaded) == count_parameters(stock) - layer_bytes // 4


def test_checkpoint_resume_keeps_the_layers_shared(tmp_path, tiny_teacher_dir):
    tree = shared_recipe(tmp_path, tiny_teacher_dir)
    tree["train"] = {**tree["train"], "epochs": 1}
    run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    assert any((out / "checkpoints").glob("step-*")), "an epoch-end checkpoint to resume from"
    tree["train"] = {**tree["train"], "epochs": 2, "resume_from": "latest"}
    metrics = run(validate_recipe(tree))
    assert len(metrics["history"]) == 2
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert layer_params(model, 0)["output.dense.weight"] is layer_params(model, 1)["output.dense.weight"]


def test_a_shared_teacher_teaches_a_stock_student():
    shared = share_layers(tiny_bert(), 2)
    student = build_transformer_student(teacher_config=shared.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=2,
                                        init_from_teacher_layers=[1, 3], teacher_model=shared)
    assert type(student) is BertForSequenceClassification and not hasattr(student.config, "distilkit_share_layers")
    for j, i in ((0, 0), (1, 2)):  # teacher layers 1 and 3 are the blocks of layers 0 and 2
        for name, param in layer_params(student, j).items():
            torch.testing.assert_close(param, layer_params(shared, i)[name], atol=0, rtol=0)


def test_onnx_export_keeps_one_copy_of_the_shared_block(tmp_path, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from distilkit.deploy.onnx_export import export_onnx

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64)
    stock = BertForSequenceClassification(config)
    sizes = {}
    for name, model in (("stock", stock), ("shared", share_layers(stock, "all"))):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
        report = export_onnx(tmp_path / name, tmp_path / f"{name}-onnx", task="sst2", data_dir=str(FIXTURES / "glue"),
                             max_examples=8, max_length=32, optimize="none")
        assert report["max_abs_logit_diff"] < 1e-4
        sizes[name] = (tmp_path / f"{name}-onnx" / "model.onnx").stat().st_size
    per_layer = sum(p.numel() * 4 for p in layer_params(stock, 0).values())
    assert sizes["stock"] - sizes["shared"] > 2.9 * per_layer, sizes
    # ORT's transformer optimizer (the default) must not store the shared block again (issue 26).
    import onnx
    from onnx import numpy_helper

    report = export_onnx(tmp_path / "shared", tmp_path / "shared-opt", task="sst2", data_dir=str(FIXTURES / "glue"),
                         max_examples=8, max_length=32)
    assert report["max_abs_logit_diff"] < 1e-4 and report["optimizer"]["attention_fusion"].startswith("off")
    weights = {name: sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path / "model.onnx")).graph.initializer)
               for name, path in (("none", tmp_path / "shared-onnx"), ("optimized", tmp_path / "shared-opt"))}
    assert weights["optimized"] < weights["none"] + per_layer / 10, weights
