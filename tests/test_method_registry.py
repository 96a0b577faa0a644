"""The method registry (core/method_spec.py, run/methods.py): every method is one value registered once, and a
new method is its folder plus one entry in METHODS -- shown by adding a toy method to a copy of the package."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from distilkit.core.plugins import resolve
from distilkit.run.methods import METHODS, STUDENTS
from distilkit.run.pipeline_config import STAGE_SECTIONS
from distilkit.run.schema import Recipe, TrainConfig

from .conftest import FIXTURES
from .test_layers import lint_imports

ROOT = Path(__file__).resolve().parents[1]
TOY = FIXTURES / "toy_method"


@pytest.mark.parametrize("name", list(METHODS))
def test_a_method_names_only_its_own_folder_and_lower_layers(name):
    """Dotted paths are invisible to import-linter: they must resolve, and never reach into another method."""
    method = METHODS[name]
    assert method.name == name
    for path in method.dotted_paths():
        module = path.partition(":")[0]
        assert resolve(path) is not None
        assert module.startswith(f"distilkit.methods.{name}.") or not module.startswith("distilkit.methods."), path


def test_every_method_section_is_in_the_schema_and_in_pipeline_stages():
    for method in METHODS.values():
        for key, section in method.sections.items():
            parent, _, field = key.rpartition(".")
            model = TrainConfig if parent == "train" else Recipe
            annotation = model.model_fields[field].annotation
            assert annotation is section or section in getattr(annotation, "__args__", ()), key
            if not parent:
                assert field in STAGE_SECTIONS, key
    kinds = [kind for method in METHODS.values() for kind in method.students]
    assert all(STUDENTS[kind.name] is kind for kind in kinds)


def test_the_registry_imports_no_torch():
    probe = ("import sys\nimport distilkit.run.methods, distilkit.run.recipe_checks, distilkit.run.preflight, "
             "distilkit.run.pipeline_config\n"
             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def _package_with_toy(tmp_path: Path) -> Path:
    """A copy of distilkit with methods/toy/ added and one entry in METHODS (plus its import): nothing else."""
    shutil.copytree(ROOT / "distilkit", tmp_path / "distilkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "tasks", tmp_path / "tasks")
    shutil.copytree(TOY, tmp_path / "distilkit" / "methods" / "toy", ignore=shutil.ignore_patterns("__pycache__"))
    registry = tmp_path / "distilkit" / "run" / "methods.py"
    text = registry.read_text()
    anchor = "from distilkit.methods.quantization import method as quantization\n"
    entry = '    "lora": lora.METHOD,'
    assert anchor in text and entry in text
    text = text.replace(anchor, anchor + "from distilkit.methods.toy import method as toy\n")
    registry.write_text(text.replace(entry, '    "toy": toy.METHOD,\n' + entry))
    return tmp_path


def test_a_new_method_is_its_folder_and_one_registry_entry(tmp_path, tiny_teacher_dir):
    root = _package_with_toy(tmp_path / "pkg")
    tree = {"task": "sst2", "output_dir": str(tmp_path / "run"),
            "data": {"dir": str(FIXTURES / "glue"), "max_train_examples": 32, "max_eval_examples": 16},
            "teacher": {"model": str(tiny_teacher_dir), "max_length": 16},
            "student": {"kind": "toy_copy", "max_length": 16}, "train": {"epochs": 0},
            "cache": {"dir": str(tmp_path / "cache")}, "measure": {"latency": False}, "toy": {"strength": 3.0}}
    script = textwrap.dedent("""
        import json, sys
        from distilkit.core.errors import RecipeError
        from distilkit.run.preflight import preflight
        from distilkit.run.recipe_io import validate_recipe
        from distilkit.run.pipeline_config import validate_pipeline
        tree, out = json.loads(sys.argv[1]), {}

        def error(tree, check=lambda recipe: None):
            try:
                check(validate_recipe(tree, source="r.yaml"))
            except RecipeError as exc:
                return str(exc)

        out["section"] = validate_recipe(tree).toy.strength
        out["typo"] = error({**tree, "toy": {"strenght": 2}})
        out["rule"] = error({**tree, "student": {"kind": "bilstm"}})
        out["problem"] = error({**tree, "toy": {"strength": 101}})
        out["preflight"] = error({**tree, "toy": {"needs": "no_such_package_xyz"}}, lambda r: preflight(r, "r.yaml"))
        pipeline = {k: tree[k] for k in ("task", "output_dir", "data", "teacher")}
        pipeline["stages"] = [{"name": "toy", "student": tree["student"], "toy": {"strength": 2}}]
        out["stage"] = validate_pipeline(pipeline).stages[0].toy
        out["torch_before_run"] = "torch" in sys.modules
        from distilkit.run.distill import run
        metrics = run(validate_recipe(tree))
        import distilkit.methods.toy.hooks as hooks
        out.update(kind=metrics["student"]["kind"], toy=metrics["student"].get("toy"), registered=bool(hooks.REGISTERED))
        print("RESULT " + json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script, json.dumps(tree)], capture_output=True, text=True,
                          cwd=root, env={**_env(), "PYTHONPATH": str(root)}, timeout=600)
    result = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    assert result is not None, done.stdout[-3000:] + done.stderr[-3000:]
    out = json.loads(result.removeprefix("RESULT "))

    assert out["section"] == 3.0  # its section is validated...
    assert "r.yaml: toy.strenght: unknown key 'strenght' (did you mean 'strength'?)" in out["typo"]  # ...strictly
    assert out["rule"] == ("r.yaml: toy: {\"strength\": 3.0} conflicts with student.kind: \"bilstm\"; a BiLSTM has "
                           "no classifier weight to scale")
    assert out["problem"] == "r.yaml: toy.strength: 101.0 is more than 50 per label of task sst2"
    assert out["preflight"] == "r.yaml: toy.needs: package no_such_package_xyz is not installed"
    assert out["stage"] == {"strength": 2}
    assert out["torch_before_run"] is False
    assert out["kind"] == "toy_copy" and out["registered"]
    # Its hooks ran (prepare_student scaled the copy's classifier) and its metrics part measured the saved model.
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "model")
    expected = 3.0 * float(teacher.classifier.weight.detach().norm())
    assert out["toy"]["strength"] == 3.0
    assert out["toy"]["classifier_norm"] == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(saved.classifier.weight, 3.0 * teacher.classifier.weight)

    # The folder needs no line in pyproject.toml: the independence contract (distilkit.methods.*) covers it.
    linted = lint_imports(root)
    assert linted.returncode == 0 and "2 kept, 0 broken" in linted.stdout, linted.stdout
    hooks = root / "distilkit" / "methods" / "toy" / "hooks.py"
    hooks.write_text(hooks.read_text() + "\nfrom distilkit.methods.pruning import select  # noqa\n")
    linted = lint_imports(root)
    assert linted.returncode != 0 and "distilkit.methods.toy.hooks" in linted.stdout, linted.stdout


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
