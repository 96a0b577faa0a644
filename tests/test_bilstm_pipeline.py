"""``transformers.pipeline`` on a saved BiLSTM student: the text-classification task (remote code, also without
distilkit) and distilkit's registered task give the model's own logits for single sentences and pairs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, pipeline

from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, encode_bilstm
from distilkit.models.bilstm_pipeline import DEFAULT_MAX_LENGTH, TASK

SENTENCES = ["a gorgeous , witty film", "dull", "the plot is a mess and the acting is worse"]
PAIRS = [("a man is playing a guitar", "a man plays the guitar"), ("it rains", "the film is long and dull")]


def save_bilstm(folder: Path, tokenizer_dir: Path, is_pair: bool, num_labels: int = 3) -> Path:
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(1)
    config = BiLSTMConfig(vocab_size=len(tokenizer), embedding_dim=16, hidden_size=8, mlp_hidden_size=8,
                          num_labels=num_labels, is_pair=is_pair, pad_token_id=tokenizer.pad_token_id,
                          id2label={i: f"class_{i}" for i in range(num_labels)})
    model = BiLSTMForSequenceClassification(config).eval()
    with torch.no_grad():  # confident, input-dependent logits: a mis-fed pipeline cannot match them by chance
        model.classifier.weight.mul_(20)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def own_logits(folder: Path, texts: list[str], pairs: list[str] | None) -> torch.Tensor:
    """The model's forward on :func:`encode_bilstm`'s inputs: what any pipeline must reproduce."""
    model = BiLSTMForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return model(**encode_bilstm(tokenizer, texts, pairs, DEFAULT_MAX_LENGTH)).logits


def as_logits(outputs: list[list[dict]]) -> torch.Tensor:
    """Pipeline outputs with ``top_k=None, function_to_apply="none"`` back to a ``[batch, labels]`` tensor."""
    return torch.tensor([[next(o["score"] for o in row if o["label"] == f"class_{i}") for i in range(len(row))]
                         for row in outputs])


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_tokenizer_dir) -> dict[bool, Path]:
    root = tmp_path_factory.mktemp("bilstm-pipeline")
    return {pair: save_bilstm(root / f"pair-{pair}", tiny_tokenizer_dir, pair) for pair in (False, True)}


def test_saved_folder_carries_its_pipeline(saved):
    for folder in saved.values():
        assert (folder / "bilstm_pipeline.py").is_file() and (folder / "bilstm.py").is_file()
        custom = json.loads((folder / "config.json").read_text())["custom_pipelines"]
        assert custom["text-classification"]["impl"] == "bilstm_pipeline.BiLSTMTextClassificationPipeline"


@pytest.mark.parametrize("task, remote", [("text-classification", True), (TASK, False)])
def test_pipeline_gives_the_models_own_logits(saved, task, remote):
    kwargs = {"trust_remote_code": True} if remote else {}
    single = pipeline(task, model=str(saved[False]), **kwargs)
    expected = own_logits(saved[False], SENTENCES, None)
    got = as_logits(single(SENTENCES, top_k=None, function_to_apply="none"))
    torch.testing.assert_close(got, expected)
    # One string: the stock pipeline's [{"label", "score"}] shape, the softmax winner.
    (top,) = single(SENTENCES[0])
    assert top["label"] == f"class_{int(expected[0].argmax())}"
    assert top["score"] == pytest.approx(float(expected[0].softmax(-1).max()), rel=1e-5)
    # Batched: sentences of different lengths padded together give the same logits.
    batched = as_logits(single(SENTENCES, top_k=None, function_to_apply="none", batch_size=3))
    torch.testing.assert_close(batched, expected)

    pair = pipeline(task, model=str(saved[True]), **kwargs)
    expected = own_logits(saved[True], [a for a, _ in PAIRS], [b for _, b in PAIRS])
    inputs = [{"text": a, "text_pair": b} for a, b in PAIRS]
    for batch_size in (1, 2):
        got = as_logits(pair(inputs, top_k=None, function_to_apply="none", batch_size=batch_size))
        torch.testing.assert_close(got, expected)
    (top,) = pair(inputs[0], top_k=1)
    assert top["label"] == f"class_{int(expected[0].argmax())}"


def test_inputs_the_model_cannot_read_are_named(saved):
    pair = pipeline(TASK, model=str(saved[True]))
    with pytest.raises(ValueError, match="text_pair"):
        pair("a single sentence")
    single = pipeline(TASK, model=str(saved[False]))
    with pytest.raises(ValueError, match="single sentences"):
        single({"text": "a", "text_pair": "b"})
    with pytest.raises(ValueError, match="max_length"):
        single("a", add_special_tokens=True)


def test_pipeline_runs_without_distilkit(saved, tmp_path):
    """Plain transformers (no distilkit importable) runs the saved folder's pipeline from its remote code; remote
    code loaded from a copy without ``bilstm_pipeline.py`` saves a config that does not name the missing file."""
    expected = {"single": own_logits(saved[False], SENTENCES, None).tolist(),
                "pair": own_logits(saved[True], [a for a, _ in PAIRS], [b for _, b in PAIRS]).tolist()}
    bare = tmp_path / "no-pipeline"
    shutil.copytree(saved[False], bare)
    (bare / "bilstm_pipeline.py").unlink()
    script = textwrap.dedent(f"""
        import json, sys
        import torch
        from transformers import AutoModelForSequenceClassification, pipeline
        sys.modules["distilkit"] = None  # as on a machine without it
        model = AutoModelForSequenceClassification.from_pretrained({str(bare)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        model.save_pretrained({str(tmp_path / "resaved")!r})
        got = {{}}
        for name, folder, inputs in [("single", {str(saved[False])!r}, {SENTENCES!r}),
                                     ("pair", {str(saved[True])!r},
                                      [{{"text": a, "text_pair": b}} for a, b in {PAIRS!r}])]:
            pipe = pipeline("text-classification", model=folder, trust_remote_code=True)
            assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
            rows = pipe(inputs, top_k=None, function_to_apply="none")
            got[name] = [[next(o["score"] for o in row if o["label"] == f"class_{{i}}") for i in range(len(row))]
                         for row in rows]
        print(json.dumps(got))
        """)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    for name in expected:
        torch.testing.assert_close(torch.tensor(got[name]), torch.tensor(expected[name]))
    resaved = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert "text-classification" not in resaved.get("custom_pipelines", {})
    assert not (tmp_path / "resaved" / "bilstm_pipeline.py").exists()


def test_model_card_pipeline_tag_names_what_works(saved):
    from distilkit.report.model_card import pipeline_tag

    config = json.loads((saved[True] / "config.json").read_text())
    assert pipeline_tag(config) == "text-classification"
    old = {k: v for k, v in config.items() if k != "custom_pipelines"}  # a BiLSTM saved before the pipeline
    assert pipeline_tag(old) is None
    assert pipeline_tag({"model_type": "bert"}) == "text-classification"

    from huggingface_hub import ModelCard

    from distilkit.report.model_card import build_model_card

    metrics = {"task": "mrpc", "eval_split": "validation", "hardware": {},
               "teacher": {"name": "org/teacher", "metrics": {"accuracy": 0.8}},
               "student": {"kind": "bilstm", "metrics": {"accuracy": 0.7}, "params": 10, "size_on_disk_bytes": 1}}
    card = ModelCard(str(build_model_card(metrics, None, "", config, "me/mrpc-bilstm")))
    assert card.data.pipeline_tag == "text-classification"
    assert 'pipeline("text-classification", model="me/mrpc-bilstm", trust_remote_code=True)' in card.text
    assert '"text_pair"' in card.text  # a pair student's example is a pair
    assert ModelCard(str(build_model_card(metrics, None, "", old, "me/old"))).data.pipeline_tag is None
