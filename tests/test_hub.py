"""Hub publishing without network: the exact push folder, its model card, its reload, the upload calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from distilkit.cli import main as cli_main
from distilkit.models.bilstm import encode_bilstm
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe


@pytest.fixture(scope="module")
def bilstm_run(tmp_path_factory, tiny_teacher_dir) -> Path:
    tmp = tmp_path_factory.mktemp("hub-run")
    tree = tiny_recipe(tmp, tiny_teacher_dir, train={"epochs": 1})
    run(validate_recipe(tree))
    return Path(tree["output_dir"])


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_dry_run_folder_card_and_reload(tmp_path, bilstm_run, capsys):
    folder = tmp_path / "upload"
    assert cli_main(["push", str(bilstm_run), "--repo", "someone/sst2-bilstm", "--dry-run", str(folder)]) == 0
    assert "not uploaded" in capsys.readouterr().out
    names = {p.name for p in folder.iterdir()}
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "bilstm.py"} <= names
    metrics = json.loads((bilstm_run / "metrics.json").read_text())
    card = (folder / "README.md").read_text()
    header = front_matter(card)
    result = header["model-index"][0]["results"][0]
    assert header["model-index"][0]["name"] == "sst2-bilstm"
    assert result["dataset"] == {"name": "GLUE SST2", "type": "nyu-mll/glue", "config": "sst2",
                                 "split": "validation"}
    assert result["task"] == {"type": "text-classification", "name": "Text Classification"}
    assert result["metrics"] == [{"type": "accuracy", "name": "Accuracy",
                                  "value": metrics["student"]["metrics"]["accuracy"]}]
    assert "base_model" not in header  # the teacher is a local directory, not a Hub id
    for needle in (f"{metrics['student']['params']:,}", f"{metrics['teacher']['params']:,}", "CPU latency b1",
                   "trust_remote_code=True", "kind: bilstm", "Hardware:"):
        assert needle in card, needle
    # The folder that would be uploaded loads with plain Auto classes and computes what the run saved.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    inputs = encode_bilstm(tokenizer, ["a gorgeous film", "dull"], None, 32)
    with torch.no_grad():
        pushed = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)(**inputs).logits
        saved = AutoModelForSequenceClassification.from_pretrained(bilstm_run / "model")(**inputs).logits
    torch.testing.assert_close(pushed, saved)


def test_card_parses_back_with_huggingface_hub(tmp_path, bilstm_run):
    """The Hub reads ``model-index`` with huggingface_hub: the written README.md must load with ``ModelCard`` and
    give back every measured metric, exactly as metrics.json holds it."""
    from huggingface_hub import ModelCard

    from distilkit.report.hub import prepare_push_folder

    folder = prepare_push_folder(bilstm_run, tmp_path / "up", "someone/sst2-bilstm")
    card = ModelCard.load(folder / "README.md")
    metrics = json.loads((bilstm_run / "metrics.json").read_text())
    assert card.data.model_name == "sst2-bilstm"
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == metrics["student"]["metrics"]
    for result in card.data.eval_results:
        assert (result.task_type, result.dataset_type, result.dataset_config, result.dataset_split) == (
            "text-classification", "nyu-mll/glue", "sst2", "validation")
    assert card.data.library_name == "transformers" and card.data.datasets == ["nyu-mll/glue"]
    # The measured body is kept under the library's header.
    assert f"| parameters | {metrics['teacher']['params']:,} | {metrics['student']['params']:,} |" in card.text
    assert card.text.lstrip().startswith("# sst2-bilstm")


def measured(task: str, student_metrics: dict, teacher_metrics: dict, **student) -> dict:
    """A ``metrics.json`` as a run writes it, for cards built without a run."""
    return {"task": task, "eval_split": "validation", "hardware": {"cpu": "test"},
            "teacher": {"name": "org/teacher", "metrics": teacher_metrics, "params": 1000,
                        "latency_ms": {"b1": 2.0}},
            "student": {"kind": "bilstm", "metrics": student_metrics, "params": 100, "size_on_disk_bytes": 4096,
                        "latency_ms": {"b1": 1.0}, **student}}


def test_card_of_a_two_metric_glue_task_and_of_a_user_task(tmp_path):
    from huggingface_hub import ModelCard

    from distilkit.report.model_card import build_model_card

    stsb = {"pearson": 0.8712345678901234, "spearmanr": 0.8698765432109876, "combined_score": 0.8705555555505555}
    card = build_model_card(measured("stsb", stsb, dict.fromkeys(stsb, 0.9)), None, "task: stsb\n", {}, "me/sts")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert [(r.metric_type, r.metric_value, r.dataset_config) for r in loaded.data.eval_results] == [
        (name, value, "stsb") for name, value in stsb.items()]
    assert loaded.data.base_model == "org/teacher" and "task: stsb" in loaded.text
    # A user task is its own dataset (no GLUE config); a quantized student is tagged.
    quantization = {"quantization": {"linear": "int8", "embedding": None, "qat": False},
                    "float_size_on_disk_bytes": 8192}
    card = build_model_card(measured("reviews", {"accuracy": 0.75}, {"accuracy": 0.8}, **quantization), None, "",
                            {}, "me/reviews")
    (result,) = ModelCard(str(card)).data.eval_results
    assert (result.dataset_type, result.dataset_name, result.dataset_config) == ("reviews", "reviews", None)
    assert result.metric_value == 0.75 and "quantized" in card.data.tags and card.data.datasets is None
    assert "post-training" in card.text


def test_quantized_card_says_how_to_load(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 0}, quantize={"linear": "int8"})
    tree["student"] = {"kind": "copy", "max_length": 32}
    run(validate_recipe(tree))
    from distilkit.report.hub import prepare_push_folder

    folder = prepare_push_folder(tree["output_dir"], tmp_path / "up", "someone/q")
    card = (folder / "README.md").read_text()
    assert "quantized" in front_matter(card)["tags"] and "pip install distilkit" in card
    assert "post-training" in card
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    assert type(model.bert.encoder.layer[0].output.dense).__name__ == "QuantLinear"


def test_push_uploads_that_folder_and_never_shows_the_token(tmp_path, bilstm_run, monkeypatch, capsys):
    import huggingface_hub

    calls = {}

    class FakeApi:
        def create_repo(self, repo, private=False, exist_ok=False):
            calls["create"] = (repo, private, exist_ok)
            return f"https://huggingface.co/{repo}"

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            calls["card"] = (Path(folder_path) / "README.md").read_text()
            calls["repo"] = repo_id

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET_not_to_be_printed")
    assert cli_main(["push", str(bilstm_run), "--repo", "someone/x", "--private"]) == 0
    assert calls["create"] == ("someone/x", True, True) and calls["repo"] == "someone/x"
    assert "README.md" in calls["files"] and "model.safetensors" in calls["files"]
    out = capsys.readouterr()
    assert "hf_SECRET" not in out.out + out.err + calls["card"]
    assert "https://huggingface.co/someone/x" in out.out


@pytest.mark.parametrize("args,message", [
    (["--repo", "no-slash"], "user/name"),
    (["--repo", "a/b"], "not a finished run"),
])
def test_push_errors(tmp_path, capsys, args, message):
    assert cli_main(["push", str(tmp_path), *args, "--dry-run", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_recipe_hub_section_is_validated(tmp_path, tiny_teacher_dir):
    from distilkit.core.errors import RecipeError

    with pytest.raises(RecipeError, match="push: true needs repo"):
        validate_recipe(tiny_recipe(tmp_path, tiny_teacher_dir, hub={"push": True}))
    assert validate_recipe(tiny_recipe(tmp_path, tiny_teacher_dir, hub={"push": True, "repo": "u/n"})).hub.repo == "u/n"
