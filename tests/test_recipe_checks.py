"""Cross-key recipe checks (issue 18): no value is silently ignored, every problem is listed, both keys named."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

from distilkit.cli import main
from distilkit.core.errors import RecipeError
from distilkit.run.recipe_checks import CONFLICTS, MEANINGLESS
from distilkit.run.recipe_io import validate_recipe

REPO = Path(__file__).resolve().parent.parent
BASE = {"task": "sst2", "output_dir": "runs/x", "teacher": {"model": "some/teacher"}, "student": {"kind": "bilstm"}}
PLUGIN = {"model": "my_pkg.teachers:MyTeacher"}
LINEAR = {"kind": "linear_attention"}
SHARED = {"kind": "transformer", "num_layers": 4, "share_layers": {}}

# One recipe per rule that breaks it and nothing else: (rule key, other key) -> the sections to change.
BREAKS = {
    ("student.embedding_dim", "student.init_embeddings_from_teacher"):
        {"student": {"kind": "bilstm", "embedding_dim": 300, "init_embeddings_from_teacher": True}},
    ("student.init_embeddings_from_teacher", "student.tokenizer"):
        {"student": {"kind": "bilstm", "tokenizer": "other/tok", "init_embeddings_from_teacher": "pca"}},
    ("student.init_embeddings_from_teacher", "teacher.model"):
        {"teacher": PLUGIN, "student": {"kind": "bilstm", "init_embeddings_from_teacher": True}},
    ("train.sparse_embeddings", "student.freeze_embeddings"):
        {"student": {"kind": "bilstm", "freeze_embeddings": True}, "train": {"sparse_embeddings": True}},
    ("student.init_from_teacher_layers", "student.config_from"):
        {"student": {"kind": "transformer", "config_from": "bert-base-uncased", "init_from_teacher_layers": [0]}},
    ("student.features", "student.variant"): {"student": {**LINEAR, "variant": "elu", "features": 32}},
    ("student.feature_lr", "student.variant"): {"student": {**LINEAR, "variant": "performer", "feature_lr": 0.1}},
    ("student.seed", "student.variant"): {"student": {**LINEAR, "variant": "hedgehog", "seed": 3}},
    ("student.block_size", "student.variant"): {"student": {**LINEAR, "variant": "elu", "block_size": 8}},
    ("student.sinkhorn_iters", "student.variant"): {"student": {**LINEAR, "variant": "hedgehog",
                                                                "sinkhorn_iters": 4}},
    ("student.temperature", "student.variant"): {"student": {**LINEAR, "variant": "linformer", "temperature": 0.5}},
    ("student.block_size", "student.max_length"): {"student": {**LINEAR, "variant": "sinkhorn", "max_length": 32,
                                                               "block_size": 64}},
    ("student.star_window", "student.variant"): {"student": {**LINEAR, "variant": "sinkhorn", "star_window": 2}},
    ("student.star_window", "student.max_length"): {"student": {**LINEAR, "variant": "star", "max_length": 16,
                                                                "star_window": 16}},
    ("loss.temperature", "loss.kind"): {"loss": {"kind": "mse", "temperature": 2.0}},
    ("loss.ensemble", "teacher"): {"loss": {"ensemble": "each"}},
    ("teacher.temperature", "loss.ensemble"):
        {"teacher": [{"model": "some/teacher"}, {"model": "other/teacher", "temperature": 2.0}],
         "loss": {"ensemble": "each"}},
    ("quantize.activation_bits", "quantize.qat"): {"quantize": {"linear": "int8", "activation_bits": 8}},
    ("quantize.backend", "quantize.linear"): {"quantize": {"linear": "bnb8", "backend": "int_mm"}},
    ("quantize.per_channel", "quantize.linear"): {"quantize": {"linear": None, "embedding": "int8",
                                                               "per_channel": False}},
    ("quantize.symmetric", "quantize.linear"): {"quantize": {"linear": "bnb8", "symmetric": True}},
    ("train.max_steps", "train.epochs"): {"train": {"epochs": 0, "max_steps": 5}},
    ("train.resume_from", "train.epochs"): {"train": {"epochs": 0, "resume_from": "latest"}},
    ("train.log_every", "train.log_with"): {"train": {"log_with": [], "log_every": 5}},
    ("measure.batch_sizes", "measure.latency"): {"measure": {"latency": False, "batch_sizes": [1]}},
    ("measure.repeats", "measure.latency"): {"measure": {"latency": False, "repeats": 3}},
    ("measure.num_threads", "measure.latency"): {"measure": {"latency": False, "num_threads": 1}},
    ("teacher.revision", "teacher.model"): {"teacher": {**PLUGIN, "revision": "main"}},
    ("teacher.kwargs", "teacher.model"): {"teacher": {"model": "some/teacher", "kwargs": {"a": 1}}},
    ("teacher.dtype", "teacher.model"): {"teacher": {**PLUGIN, "dtype": "bfloat16"}},
    ("teacher.finetune", "teacher.model"): {"teacher": {**PLUGIN, "finetune": {}}},
    ("hub.repo", "hub.push"): {"hub": {"push": False, "repo": "me/model"}},
    ("hub.private", "hub.push"): {"hub": {"private": True}},
    ("data.augment.pair_mode", "task"): {"data": {"augment": {"pair_mode": "a"}}},
    ("loss.attention_weight", "student.kind"): {"loss": {"attention_weight": 1.0}},
    ("loss.alpha", "data.labels"): {"data": {"labels": "none"}, "loss": {"alpha": 0.5}},
    ("train.sparse_embeddings", "train.mixed_precision"):
        {"train": {"sparse_embeddings": True, "mixed_precision": "fp16"}},
    ("train.sparse_embeddings", "quantize.embedding"):
        {"train": {"sparse_embeddings": True}, "quantize": {"linear": "int8", "embedding": "int8", "qat": True}},
    ("student.tokenizer", "student.kind"): {"student": {"kind": "copy", "tokenizer": "other/tok"}},
    ("student.vocab", "student.tokenizer"):
        {"student": {"kind": "bilstm", "tokenizer": {"train": "sentencepiece"}, "vocab": {"max_tokens": 500}}},
    ("deep_compression.share", "train.sparse_embeddings"): {"student": {"kind": "copy"},
                                                            "train": {"sparse_embeddings": True},
                                                            "deep_compression": {"share": {"bits": 4}}},
    ("deep_compression", "quantize"): {"student": {"kind": "copy"}, "quantize": {"linear": "int8"},
                                       "deep_compression": {"prune": {"sparsity": 0.5}}},
    ("factorize", "quantize"): {"student": {"kind": "copy"}, "quantize": {"linear": "int8"},
                                "factorize": {"energy": 0.9}},
    ("factorize", "deep_compression"): {"student": {"kind": "copy"}, "factorize": {"energy": 0.9},
                                        "deep_compression": {"prune": {"sparsity": 0.5}}},
    ("factorize", "student.kind"): {"student": {"kind": "pruned", "heads": 0.5, "rounds": 2},
                                    "factorize": {"energy": 0.9}},
    ("teacher.adapter", "teacher.finetune"): {"teacher": {"model": "some/teacher", "adapter": "me/adapter",
                                                          "finetune": {}}},
    ("teacher.adapter", "teacher.model"): {"teacher": {**PLUGIN, "adapter": "me/adapter"}},
    ("train.lora", "student.kind"): {"train": {"lora": {}}},
    ("train.lora", "quantize.qat"): {"student": {"kind": "copy"}, "train": {"lora": {}},
                                     "quantize": {"linear": "int4"}},
    ("train.lora", "quantize.linear"): {"student": {"kind": "copy"}, "train": {"lora": {}},
                                        "quantize": {"linear": "bnb8"}},
    ("train.lora", "deep_compression"): {"student": {"kind": "copy"}, "train": {"lora": {}},
                                         "deep_compression": {"prune": {"sparsity": 0.5}}},
    ("train.lora", "student.blocks"): {"student": {"kind": "pruned", "blocks": {"granularity": "rows",
                                                                               "sparsity": 0.5}},
                                       "train": {"lora": {}}},
    ("train.lora", "factorize"): {"student": {"kind": "copy"}, "train": {"lora": {}},
                                  "factorize": {"energy": 0.9}},
    ("student.init_from_teacher_layers", "student.share_layers.init"):
        {"student": {**SHARED, "init_from_teacher_layers": [0, 1, 2, 3], "share_layers": {"init": [2]}}},
    ("student.share_layers.init", "student.init_from_teacher_layers"):
        {"student": {**SHARED, "init_from_teacher_layers": None, "share_layers": {"init": "first"}}},
    ("student.share_layers.init", "student.config_from"):
        {"student": {**SHARED, "config_from": "bert-base-uncased", "share_layers": {"init": "average"}}},
    ("student.share_layers.group_size", "student.num_layers"): {"student": {**SHARED, "share_layers": {"group_size": 3}}},
    ("student.share_layers.init", "student.share_layers.group_size"):
        {"student": {**SHARED, "share_layers": {"group_size": 2, "init": [5]}}},
    ("student.share_layers", "quantize"): {"student": SHARED, "quantize": {"linear": "int8"}},
    ("student.share_layers", "deep_compression"): {"student": SHARED, "deep_compression": {"prune": {"sparsity": 0.5}}},
    ("student.share_layers", "factorize"): {"student": SHARED, "factorize": {"energy": 0.9}},
}


def recipe(**sections) -> dict:
    tree = copy.deepcopy(BASE)
    tree.update(copy.deepcopy(sections))
    return tree


def test_every_rule_has_a_breaking_recipe():
    assert sorted(BREAKS) == sorted((rule.key, rule.because) for rule in (*MEANINGLESS, *CONFLICTS))


@pytest.mark.parametrize("keys", list(BREAKS), ids=lambda k: f"{k[0]}+{k[1]}")
def test_rule_fires_alone_and_names_both_keys(keys):
    with pytest.raises(RecipeError) as err:
        validate_recipe(recipe(**BREAKS[keys]), source="r.yaml")
    lines = str(err.value).splitlines()
    assert len(lines) == 1, lines  # the recipe breaks exactly this rule
    assert lines[0].startswith(f"r.yaml: {keys[0]}: ") and f" {keys[1]}: " in lines[0]


def test_defaults_that_do_not_apply_are_not_errors():
    # Neither embedding_dim nor init_embeddings_from_teacher written: the BiLSTM default (teacher width) holds.
    validate_recipe(recipe(teacher=PLUGIN))
    validate_recipe(recipe(student={"kind": "bilstm", "tokenizer": "other/tok"}))
    validate_recipe(recipe(student={"kind": "bilstm", "embedding_dim": 128, "init_embeddings_from_teacher": "pca"}))
    validate_recipe(recipe(student={**LINEAR, "variant": "linformer", "features": 16, "seed": 1, "feature_lr": 0.1}))
    validate_recipe(recipe(student={**LINEAR, "variant": "sinkhorn", "max_length": 32, "block_size": 32,
                                    "sinkhorn_iters": 4, "temperature": 0.5, "feature_lr": 0.1}))
    validate_recipe(recipe(student={**LINEAR, "variant": "star", "max_length": 16, "star_window": 15}))
    validate_recipe(recipe(loss={"kind": "kl", "temperature": 2.0}, quantize={"linear": "int4", "backend": "int_mm"}))


def test_all_problems_are_listed_one_per_line(tmp_path, capsys):
    tree = recipe(student={"kind": "bilstm", "embedding_dim": 300, "init_embeddings_from_teacher": True},
                  loss={"kind": "mse", "temperature": 2.0}, measure={"latency": False, "repeats": 3})
    with pytest.raises(RecipeError) as err:
        validate_recipe(tree, source="r.yaml")
    assert [line.split(": ")[1] for line in str(err.value).splitlines()] == [
        "student.embedding_dim", "loss.temperature", "measure.repeats"]
    import yaml
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and all(re.match(rf"distilkit: error: {re.escape(str(path))}: \S+: ", line)
                                   for line in lines)


def test_a_switch_set_on_the_command_line_turns_off_what_the_file_set(tmp_path):
    import yaml

    from distilkit.run.recipe_io import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe(measure={"batch_sizes": [1, 8], "repeats": 3})))
    assert not load_recipe(path, ["measure.latency=false"]).measure.latency
    with pytest.raises(RecipeError, match="measure.repeats"):  # both on the command line: still a contradiction
        load_recipe(path, ["measure.latency=false", "measure.repeats=5"])
    path.write_text(yaml.safe_dump(recipe(measure={"latency": False, "repeats": 3})))
    with pytest.raises(RecipeError, match="measure.repeats"):  # both in the file
        load_recipe(path)


def test_values_of_both_keys_are_shown():
    with pytest.raises(RecipeError, match=r"student\.embedding_dim: 300 means nothing with "
                                          r"student\.init_embeddings_from_teacher: true;"):
        validate_recipe(recipe(**BREAKS[("student.embedding_dim", "student.init_embeddings_from_teacher")]))


def test_design_doc_lists_every_rule():
    design = (REPO / "docs" / "design.md").read_text()
    missing = [f"{rule.key} / {rule.because}" for rule in (*MEANINGLESS, *CONFLICTS)
               if f"`{rule.key}` | `{rule.because}`" not in design]
    assert not missing, missing


def test_linformer_projections_follow_student_seed():
    from distilkit.methods.linear_attention.linear import FeatureMap

    maps = [FeatureMap("linformer", heads=2, head_dim=4, features=3, max_length=8, seed=s) for s in (1, 1, 2)]
    assert torch.equal(maps[0].e, maps[1].e) and torch.equal(maps[0].f, maps[1].f)
    assert not torch.equal(maps[0].e, maps[2].e)
