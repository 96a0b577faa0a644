"""Multiple teachers (issue 14, part 3): a list of teacher sections combined by ``loss.ensemble``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from distilkit.core.errors import RecipeError, TeacherError
from distilkit.data.logit_cache import data_fingerprint, label_with_teacher
from distilkit.data.tasks import load_split, load_task
from distilkit.methods.distillation.ensemble import (
    TeacherEnsemble,
    combine_average,
    each_teacher_loss,
    label_with_ensemble,
)
from distilkit.models.teachers import load_hf_teacher
from distilkit.run.distill import run
from distilkit.run.preflight import preflight
from distilkit.run.recipe_io import dump_recipe, validate_recipe

from .conftest import FIXTURES, make_tiny_teacher


@pytest.fixture(scope="module")
def named_teachers(tmp_path_factory, tiny_tokenizer_dir) -> dict[str, Path]:
    """Tiny SST-2 teachers: two with labels (negative, positive), one in the other order, one with 3 labels."""
    root = tmp_path_factory.mktemp("ensemble-teachers")
    made = {}
    for name, seed, labels in (("a", 0, ["negative", "positive"]), ("b", 1, ["negative", "positive"]),
                               ("swapped", 2, ["positive", "negative"]), ("three", 3, ["x", "y", "z"])):
        path = make_tiny_teacher(root / name, tiny_tokenizer_dir, num_labels=len(labels), seed=seed)
        config = json.loads((path / "config.json").read_text())
        config["id2label"] = {str(i): label for i, label in enumerate(labels)}
        config["label2id"] = {label: i for i, label in enumerate(labels)}
        (path / "config.json").write_text(json.dumps(config))
        made[name] = path
    return made


def ensemble_recipe(tmp_path: Path, teachers: list, **sections) -> dict:
    tree = {
        "task": "sst2", "output_dir": str(tmp_path / "run"),
        "data": {"dir": str(FIXTURES / "glue"), "max_train_examples": 96, "max_eval_examples": 48},
        "teacher": teachers,
        "student": {"kind": "bilstm", "max_length": 32, "hidden_size": 16, "mlp_hidden_size": 16},
        "train": {"epochs": 1, "batch_size": 16, "lr": 5e-3, "log_every": 1},
        "cache": {"dir": str(tmp_path / "cache")}, "measure": {"latency": False},
    }
    tree.update(sections)
    return tree


def member(path: Path, **extra) -> dict:
    return {"model": str(path), "max_length": 32, "batch_size": 32, **extra}


def test_average_is_the_weighted_mean_of_softened_probabilities():
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 3) * 3, torch.randn(5, 3) * 3
    target = combine_average(torch.stack([z1, z2], dim=1), weights=[3.0, 1.0], temperatures=[2.0, 0.5],
                             temperature=4.0)
    # By hand: p = 0.75 softmax(z1 / 2) + 0.25 softmax(z2 / 0.5), expressed at T = 4, on the teachers' level.
    for row in range(5):
        e1 = [math.exp(v / 2.0) for v in z1[row].tolist()]
        e2 = [math.exp(v / 0.5) for v in z2[row].tolist()]
        p = [0.75 * a / sum(e1) + 0.25 * b / sum(e2) for a, b in zip(e1, e2)]
        by_hand = [4.0 * math.log(q) for q in p]
        level = 0.75 * sum(z1[row].tolist()) / 3 + 0.25 * sum(z2[row].tolist()) / 3
        by_hand = [v - sum(by_hand) / 3 + level for v in by_hand]
        assert target[row].tolist() == pytest.approx(by_hand, rel=1e-5, abs=1e-4)
    torch.testing.assert_close(torch.softmax(target / 4.0, -1),
                               0.75 * torch.softmax(z1 / 2.0, -1) + 0.25 * torch.softmax(z2 / 0.5, -1))
    # One teacher at the loss temperature gives back its own logits; regression averages predictions.
    torch.testing.assert_close(combine_average(z1[:, None], [1.0], [2.0], 2.0), z1, atol=1e-4, rtol=1e-5)
    r1, r2 = torch.randn(4, 1), torch.randn(4, 1)
    torch.testing.assert_close(combine_average(torch.stack([r1, r2], 1), [1.0, 3.0], [1.0, 1.0],
                                               problem_type="regression"), 0.25 * r1 + 0.75 * r2)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_each_is_the_weighted_sum_of_per_teacher_losses(kind):
    torch.manual_seed(1)
    student = torch.randn(6, 2, requires_grad=True)
    z1, z2 = torch.randn(6, 2) * 2, torch.randn(6, 2) * 2
    labels = torch.tensor([0, 1, 1, 0, -100, 1])
    loss, parts = each_teacher_loss(student, torch.stack([z1, z2], 1), labels, weights=[1.0, 2.0],
                                    temperatures=[1.0, 3.0], kind=kind, alpha=0.25)

    def soft(z, t):  # Hinton et al.'s soft-target KL times T^2 (§2), or Tang et al. eq. 3, written out
        if kind == "mse":
            return ((student - z) ** 2).sum(-1).mean()
        q, log_p = torch.softmax(z / t, -1), torch.log_softmax(student / t, -1)
        return (q * (torch.log(q) - log_p)).sum(-1).mean() * t * t

    keep = labels != -100
    hard = -torch.log_softmax(student[keep], -1).gather(1, labels[keep, None]).mean()
    expected = 0.75 * (soft(z1, 1.0) / 3 + 2 * soft(z2, 3.0) / 3) + 0.25 * hard
    torch.testing.assert_close(loss, expected)
    assert parts[f"soft_{kind}_t1"] == pytest.approx(soft(z2, 3.0).item(), rel=1e-5)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_each_teacher_has_its_own_cache_entry_and_the_single_key_is_unchanged(tmp_path, named_teachers):
    ds = load_split(load_task("sst2"), "validation", data_dir=FIXTURES / "glue", max_examples=24, seed=0)
    a, b = (load_hf_teacher(str(named_teachers[n]), num_labels=2, problem_type="single_label_classification",
                            max_length=32) for n in ("a", "b"))
    ensemble = TeacherEnsemble([a, b], weights=[1.0, 1.0], temperatures=[1.0, 1.0], mode="average",
                               temperature=1.0, problem_type="single_label_classification")
    labelled = label_with_ensemble(ensemble, ds, cache_dir=tmp_path, batch_size=[8, 8])
    assert not labelled.hit
    keys = {f"{t.fingerprint()[:20]}-{data_fingerprint(ds)[:20]}" for t in (a, b)}
    assert {p.name for p in (tmp_path / "teacher_logits").iterdir() if not p.name.startswith(".")} == keys
    # A single-teacher run finds the entry the ensemble wrote for that teacher (same key as before).
    single = label_with_teacher(a, ds, cache_dir=tmp_path, batch_size=8)
    assert single.hit
    ids = list(ds["id"])
    stacked = torch.stack([torch.from_numpy(single.aligned(ids)),
                           torch.from_numpy(label_with_teacher(b, ds, cache_dir=tmp_path).aligned(ids))], 1)
    again = label_with_ensemble(ensemble, ds, cache_dir=tmp_path, batch_size=8)
    assert again.hit
    torch.testing.assert_close(torch.from_numpy(again.aligned(ids)), combine_average(stacked, [1, 1], [1, 1]))
    # The online path (cache off) computes the same targets from the texts.
    online = ensemble(list(ds["text_a"]))
    torch.testing.assert_close(online, torch.from_numpy(again.aligned(ids)), atol=1e-4, rtol=1e-4)


def test_teachers_with_other_label_order_are_rejected_by_name(tmp_path, named_teachers):
    a, swapped = (load_hf_teacher(str(named_teachers[n]), num_labels=2,
                                  problem_type="single_label_classification") for n in ("a", "swapped"))
    with pytest.raises(TeacherError, match=r"teacher\[1\]\.model: .*swapped.* orders its labels"):
        TeacherEnsemble([a, swapped], weights=[1, 1], temperatures=[1, 1], mode="average", temperature=1.0,
                        problem_type="single_label_classification", names=[str(named_teachers["a"]),
                                                                            str(named_teachers["swapped"])])
    recipe = validate_recipe(ensemble_recipe(tmp_path, [member(named_teachers["a"]),
                                                        member(named_teachers["swapped"])]))
    with pytest.raises(RecipeError, match=r"ensemble.yaml: teacher\[1\]\.model: .* orders its labels"):
        preflight(recipe, "ensemble.yaml")


def test_label_count_mismatch_is_a_preflight_error_read_from_config_json(tmp_path, named_teachers):
    # A folder holding only config.json: preflight must answer without any weights to load.
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text((named_teachers["three"] / "config.json").read_text())
    recipe = validate_recipe(ensemble_recipe(tmp_path, [member(named_teachers["a"]), member(config_only)]))
    with pytest.raises(RecipeError) as err:
        preflight(recipe, "ensemble.yaml")
    message = str(err.value)
    assert "teacher[1].model" in message and "predicts 3 labels but task sst2 has 2" in message
    assert "teacher[0].model" in message and "the ensemble cannot combine them" in message


def test_empty_list_and_one_element_list(tmp_path, tiny_teacher_dir):
    with pytest.raises(RecipeError, match="teacher list is empty"):
        validate_recipe(ensemble_recipe(tmp_path, []))
    single = validate_recipe(ensemble_recipe(tmp_path, member(tiny_teacher_dir)))
    listed = validate_recipe(ensemble_recipe(tmp_path, [member(tiny_teacher_dir, weight=2.0)]))
    assert listed.teacher == single.teacher and dump_recipe(listed) == dump_recipe(single)
    with pytest.raises(RecipeError, match="loss.ensemble"):
        validate_recipe(ensemble_recipe(tmp_path, member(tiny_teacher_dir), loss={"ensemble": "each"}))


@pytest.mark.parametrize("mode", ["average", "each"])
def test_two_teacher_distillation_run(tmp_path, named_teachers, mode):
    teachers = [member(named_teachers["a"], weight=3.0), member(named_teachers["b"], temperature=2.0)]
    tree = ensemble_recipe(tmp_path, teachers, loss={"kind": "kl", "ensemble": mode})
    preflight(validate_recipe(tree), "ensemble.yaml")
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    assert (out / "model" / "model.safetensors").is_file()
    assert metrics["teacher"]["name"].startswith("ensemble(")
    assert [t["name"] for t in metrics["teachers"]] == [str(named_teachers["a"]), str(named_teachers["b"])]
    assert [t["weight"] for t in metrics["teachers"]] == [0.75, 0.25]
    assert all(0 <= t["validation"]["accuracy"] <= 1 for t in metrics["teachers"])
    # The ensemble's own score is its averaged prediction, recomputed here from the two teachers' own logits.
    task = load_task("sst2")
    dev = load_split(task, "validation", data_dir=FIXTURES / "glue", max_examples=48, seed=42)
    a, b = (load_hf_teacher(str(named_teachers[n]), num_labels=2, problem_type="single_label_classification",
                            max_length=32) for n in ("a", "b"))
    texts = list(dev["text_a"])
    combined = combine_average(torch.stack([a(texts), b(texts)], 1), [3.0, 1.0], [1.0, 2.0], 1.0)
    by_hand = (combined.argmax(-1) == torch.tensor(dev["label"])).float().mean().item()
    assert metrics["teacher"]["metrics"]["accuracy"] == pytest.approx(by_hand)
    # Per teacher: one train and one validation entry each, nothing for the ensemble itself.
    entries = [p for p in (Path(tree["cache"]["dir"]) / "teacher_logits").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 4
    logged = [json.loads(line) for line in (out / "logs" / "train_log.jsonl").read_text().splitlines()]
    per_teacher = [rec for rec in logged if "train/soft_kl_t1" in rec]
    assert bool(per_teacher) == (mode == "each")
    if mode == "each":
        rec = per_teacher[0]
        assert rec["train/soft_kl"] == pytest.approx(0.75 * rec["train/soft_kl_t0"] + 0.25 * rec["train/soft_kl_t1"],
                                                     rel=1e-4)


def test_mistakes_in_a_teacher_list_name_the_teacher(tmp_path, tiny_teacher_dir):
    teachers = [member(tiny_teacher_dir), member(tiny_teacher_dir, weigth=2.0)]
    with pytest.raises(RecipeError, match=r"teacher\[1\]\.weigth: unknown key 'weigth' \(did you mean 'weight'\?\)"):
        validate_recipe(ensemble_recipe(tmp_path, teachers), "ensemble.yaml")
    teachers = [member(tiny_teacher_dir), member(tiny_teacher_dir, weight=-1)]
    with pytest.raises(RecipeError, match=r"teacher\[1\]\.weight: Input should be greater than 0"):
        validate_recipe(ensemble_recipe(tmp_path, teachers), "ensemble.yaml")
    with pytest.raises(RecipeError, match=r"teacher\.unexpected: unknown key"):
        validate_recipe(ensemble_recipe(tmp_path, member(tiny_teacher_dir, unexpected=1)), "ensemble.yaml")


def test_augmented_transfer_set_is_labelled_by_the_ensemble(tmp_path, named_teachers):
    import yaml
    from datasets import load_from_disk

    from distilkit.cli import main as cli_main

    teachers = [member(named_teachers["a"], weight=1.0), member(named_teachers["b"], weight=3.0)]
    tree = ensemble_recipe(tmp_path, teachers)
    tree["data"] = {**tree["data"], "max_train_examples": 16,
                    "augment": {"n_iter": 2, "tagger": "tests.test_augment:ToyTagger"}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert cli_main(["augment", str(path), "--out", str(tmp_path / "ts")]) == 0
    saved = load_from_disk(str(tmp_path / "ts"))
    assert len(saved) > 16  # generated rows too, all labelled
    a, b = (load_hf_teacher(str(named_teachers[n]), num_labels=2, problem_type="single_label_classification",
                            max_length=32) for n in ("a", "b"))
    texts = list(saved["text_a"])
    expected = combine_average(torch.stack([a(texts), b(texts)], 1), [1.0, 3.0], [1.0, 1.0])
    torch.testing.assert_close(torch.tensor(saved["teacher_logits"]), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("loss", [{"kind": "kl", "ensemble": "each"}, {"kind": "mse", "ensemble": "each"},
                                  {"kind": "mse", "ensemble": "average", "temperature": 2.0}])
def test_ensemble_recipe_dump_validates_again(tmp_path, tiny_teacher_dir, loss):
    teachers = [member(tiny_teacher_dir, weight=2.0), member(tiny_teacher_dir)]
    if loss["kind"] == "kl" or loss["ensemble"] == "average":
        teachers[1]["temperature"] = 3.0
    recipe = validate_recipe(ensemble_recipe(tmp_path, teachers, loss=loss))
    import yaml

    again = validate_recipe(yaml.safe_load(dump_recipe(recipe)))
    assert again.teacher_weights == recipe.teacher_weights == [2 / 3, 1 / 3]
    assert again.teacher_temperatures == recipe.teacher_temperatures
    assert again.loss == recipe.loss


def test_ensemble_without_the_cache_runs_every_teacher_on_each_batch(tmp_path, named_teachers):
    teachers = [member(named_teachers["a"]), member(named_teachers["b"], weight=3.0)]
    tree = ensemble_recipe(tmp_path, teachers, loss={"kind": "mse", "ensemble": "each"},
                           cache={"dir": str(tmp_path / "cache"), "enabled": False})
    metrics = run(validate_recipe(tree))
    assert not (tmp_path / "cache" / "teacher_logits").exists()
    logged = [json.loads(line) for line in (Path(tree["output_dir"]) / "logs" / "train_log.jsonl").read_text()
              .splitlines()]
    rec = next(rec for rec in logged if "train/soft_mse_t1" in rec)
    assert rec["train/soft_mse"] == pytest.approx(0.25 * rec["train/soft_mse_t0"] + 0.75 * rec["train/soft_mse_t1"],
                                                  rel=1e-4)
    assert len(metrics["teachers"]) == 2


@pytest.mark.parametrize("mode", ["average", "each"])
def test_one_ensemble_test_decides_loading_the_student_and_the_loss(tmp_path, named_teachers, mode):
    """``is_ensemble`` is the one question: the loaded teacher of a list is an ensemble (of one teacher: not),
    the student's defaults come from its first member, and the step's loss follows its mode."""
    from accelerate import Accelerator

    from distilkit.methods.distillation.ensemble import is_ensemble, teacher_loss, teacher_members
    from distilkit.methods.distillation.losses import distillation_loss
    from distilkit.run.teachers import load_teacher

    task = load_task("sst2")
    ds = load_split(task, "validation", data_dir=FIXTURES / "glue", max_examples=8, seed=0)
    listed = validate_recipe(ensemble_recipe(tmp_path, [member(named_teachers["a"]), member(named_teachers["b"])],
                                             loss={"kind": "kl", "ensemble": mode, "temperature": 2.0}))
    single = validate_recipe(ensemble_recipe(tmp_path, [member(named_teachers["a"])], loss={"kind": "kl"}))
    ensemble = load_teacher(listed, task, ds, ds, Accelerator(cpu=True))
    alone = load_teacher(single, task, ds, ds, Accelerator(cpu=True))
    assert is_ensemble(ensemble) and not is_ensemble(alone)
    assert [m.name for m in teacher_members(ensemble)] == [str(named_teachers["a"]), str(named_teachers["b"])]
    assert teacher_members(alone) == [alone]

    torch.manual_seed(0)
    student = torch.randn(8, 2)
    targets = ensemble(list(ds["text_a"]))
    loss, parts = teacher_loss(ensemble, student, targets, None, kind="kl", temperature=2.0, alpha=0.0,
                               problem_type=task.problem_type)
    if mode == "each":  # one target per teacher, each matched at its own temperature and weight
        assert targets.shape == (8, 2, 2)
        expected, _ = each_teacher_loss(student, targets, None, weights=[0.5, 0.5], temperatures=[2.0, 2.0],
                                        kind="kl")
        assert "soft_kl_t1" in parts
    else:  # the averaged target, at the loss temperature
        assert targets.shape == (8, 2)
        expected, _ = distillation_loss(student, targets, kind="kl", temperature=2.0)
    torch.testing.assert_close(loss, expected)
    single_targets = alone(list(ds["text_a"]))
    loss, _ = teacher_loss(alone, student, single_targets, None, kind="kl", temperature=2.0, alpha=0.0,
                           problem_type=task.problem_type)
    torch.testing.assert_close(loss, distillation_loss(student, single_targets, kind="kl", temperature=2.0)[0])


def test_no_module_asks_the_teacher_type_another_way():
    """Whether a teacher is an ensemble is asked only through ``is_ensemble`` (methods/distillation/ensemble.py):
    no module tests the classes, the logits' rank or the recipe's teacher list itself."""
    root = Path(__file__).resolve().parents[1] / "distilkit"
    patterns = ("isinstance(teacher, TeacherEnsemble)", "EnsembleLogits)", "ndim == 3", "isinstance(recipe.teacher, list)")
    owners = {"run/schema.py"}  # Recipe.is_ensemble itself (the recipe-level test)
    found = [f"{path.relative_to(root)}: {pattern}" for path in root.rglob("*.py")
             if str(path.relative_to(root)) not in owners | {"methods/distillation/ensemble.py"}
             for pattern in patterns if pattern in path.read_text()]
    assert found == []
