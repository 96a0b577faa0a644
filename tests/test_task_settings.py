"""Per-task teacher fine-tuning settings (tasks/<task>.yaml ``teacher_finetune``), depth as a fraction of the
teacher's, and a student whose initial weights do not depend on whether the teacher came from a cache."""

import pytest
import torch
import yaml
from transformers import AutoConfig

from distilkit.core.errors import RecipeError
from distilkit.models.transformer import build_transformer_student
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .conftest import REPO
from .test_distill import tiny_recipe


def test_recipe_keys_win_and_the_task_fills_the_rest(tmp_path, tiny_teacher_dir):
    task = yaml.safe_load((REPO / "tasks" / "rte.yaml").read_text())["teacher_finetune"]
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, task="rte")
    tree["teacher"]["finetune"] = {"epochs": 1}
    finetune = validate_recipe(tree).teacher.finetune
    assert finetune.epochs == 1 != task["epochs"]
    assert (finetune.lr, finetune.max_length, finetune.batch_size) == (task["lr"], task["max_length"],
                                                                      task["batch_size"])
    tree["teacher"]["finetune"] = {}
    assert validate_recipe(tree).teacher.finetune.epochs == task["epochs"]


def test_a_bad_task_setting_names_the_task_file(tmp_path, tiny_teacher_dir):
    spec = yaml.safe_load((REPO / "tasks" / "sst2.yaml").read_text())
    spec["teacher_finetune"] = {"epochs": 2, "learning_rate": 1e-4}
    path = tmp_path / "mytask.yaml"
    path.write_text(yaml.safe_dump(spec))
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, task=str(path))
    tree["teacher"]["finetune"] = {}
    with pytest.raises(RecipeError, match=r"mytask.yaml: teacher_finetune: learning_rate: unknown key 'learning_rate'"):
        validate_recipe(tree)


@pytest.mark.parametrize("fraction, layers", [(0.25, 1), (0.5, 2), (0.75, 3), (0.1, 1), (3, 3)])
def test_num_layers_as_a_fraction_of_the_teachers(tiny_teacher_dir, fraction, layers):
    teacher_config = AutoConfig.from_pretrained(tiny_teacher_dir)
    teacher_config.num_hidden_layers = 4
    student = build_transformer_student(teacher_config=teacher_config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=fraction)
    assert student.config.num_hidden_layers == layers


def test_num_layers_above_one_must_be_whole(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, student={"kind": "transformer", "num_layers": 1.5})
    with pytest.raises(RecipeError, match="num_layers"):
        validate_recipe(tree)


def test_student_init_does_not_depend_on_the_teacher_cache(tmp_path, tiny_teacher_dir):
    """The first run fine-tunes the teacher, the second reuses it from the cache; with no training
    (``train.epochs: 0``) each saves its student as built, and the two must be identical."""
    from safetensors.torch import load_file

    saved = []
    for name in ("fresh-teacher", "cached-teacher"):
        tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 0}, measure={"latency": False})
        tree["teacher"]["finetune"] = {"epochs": 0.2, "batch_size": 16, "max_examples": 64}
        tree["output_dir"] = str(tmp_path / name)
        run(validate_recipe(tree))
        saved.append(load_file(tmp_path / name / "model" / "model.safetensors"))
    assert len(list((tmp_path / "cache" / "finetuned_teachers").iterdir())) == 1, "the second run reused it"
    assert saved[0].keys() == saved[1].keys()
    for key in saved[0]:
        assert torch.equal(saved[0][key], saved[1][key]), key
