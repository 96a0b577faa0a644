"""Recipe loading: validation, overrides and error messages that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distilkit.core.errors import RecipeError
from distilkit.models.config import BiLSTMStudentConfig, TransformerStudentConfig
from distilkit.run.recipe_io import dump_recipe, load_recipe, validate_recipe

REPO = Path(__file__).resolve().parent.parent
MINIMAL = {
    "task": "sst2",
    "output_dir": "runs/x",
    "teacher": {"model": "some/teacher"},
    "student": {"kind": "bilstm"},
}


def write(tmp_path: Path, tree: dict, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    return path


def test_defaults_and_student_union(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL))
    assert isinstance(recipe.student, BiLSTMStudentConfig)
    assert recipe.train.epochs == 3 and recipe.loss.kind == "mse" and recipe.cache.enabled
    tree = {**MINIMAL, "student": {"kind": "transformer", "num_layers": 2, "init_from_teacher_layers": [0, 3]}}
    recipe = load_recipe(write(tmp_path, tree))
    assert isinstance(recipe.student, TransformerStudentConfig)
    assert recipe.student.init_from_teacher_layers == [0, 3]


def test_overrides_parse_yaml_values(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL),
                         ["train.epochs=7", "data.dir=/data/glue", "train.max_steps=null", "loss.alpha=0.25",
                          "measure.batch_sizes=[1, 8]"])
    assert recipe.train.epochs == 7 and recipe.data.dir == "/data/glue" and recipe.train.max_steps is None
    assert recipe.loss.alpha == 0.25 and recipe.measure.batch_sizes == [1, 8]


def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = write(tmp_path, {**MINIMAL, "train": {"epocs": 2}})
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert str(path) in message and "train.epocs" in message and "did you mean 'epochs'" in message


def test_unknown_student_key_lists_valid_keys(tmp_path):
    path = write(tmp_path, {**MINIMAL, "student": {"kind": "bilstm", "hiden_size": 10}})
    with pytest.raises(RecipeError, match=r"student\.hiden_size: unknown key 'hiden_size' \(did you mean 'hidden_size'\?\)"):
        load_recipe(path)


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(RecipeError, match=r"trian: unknown key 'trian' \(did you mean 'train'\?\)"):
        load_recipe(write(tmp_path, {**MINIMAL, "trian": {}}))


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, {**MINIMAL, "train": {"epochs": "three"}})
    with pytest.raises(RecipeError, match=r"recipe\.yaml: train\.epochs: .*integer.*'three'"):
        load_recipe(path)


def test_override_error_points_at_the_override(tmp_path):
    with pytest.raises(RecipeError, match=r"--set train\.lr=-1: train\.lr: .*greater than 0"):
        load_recipe(write(tmp_path, MINIMAL), ["train.lr=-1"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe(write(tmp_path, MINIMAL), ["train.lr"])


def test_unknown_student_kind(tmp_path):
    with pytest.raises(RecipeError, match=r"student.*'cnn'"):
        load_recipe(write(tmp_path, {**MINIMAL, "student": {"kind": "cnn"}}))


def test_missing_required_section(tmp_path):
    tree = dict(MINIMAL)
    del tree["teacher"]
    with pytest.raises(RecipeError, match=r"recipe\.yaml: teacher: Field required"):
        load_recipe(write(tmp_path, tree))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed")
    with pytest.raises(RecipeError, match=r"bad\.yaml: invalid YAML"):
        load_recipe(bad)
    bad.write_text("- a list")
    with pytest.raises(RecipeError, match="expected a mapping"):
        load_recipe(bad)


def test_label_free_data_cannot_mix_gold_labels():
    with pytest.raises(RecipeError, match="data.labels is 'none'"):
        validate_recipe({**MINIMAL, "data": {"labels": "none"}, "loss": {"alpha": 0.5}})


def test_dump_round_trips(tmp_path):
    recipe = load_recipe(write(tmp_path, MINIMAL), ["train.epochs=5"])
    again = validate_recipe(yaml.safe_load(dump_recipe(recipe)))
    assert again == recipe


@pytest.mark.parametrize("path", sorted((REPO / "recipes").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_recipe_validates(path):
    from distilkit.core.yaml_files import read_yaml
    from distilkit.data.tasks import load_task
    from distilkit.run.pipeline_config import is_pipeline, load_pipeline, stage_tree

    if is_pipeline(read_yaml(path)):  # every stage must be a valid recipe
        pipeline = load_pipeline(path)
        recipes = [validate_recipe(stage_tree(pipeline, i)) for i in range(len(pipeline.stages))]
    else:
        recipes = [load_recipe(path)]
    for recipe in recipes:
        task = load_task(recipe.task)
        if task.problem_type == "regression":
            assert recipe.loss.kind == "mse"
