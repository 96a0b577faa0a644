"""ONNX export and predict (issue 16): every student kind exports with dynamic axes, ONNX Runtime reproduces
PyTorch on dev sentences, bad requests are named errors that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distilkit.cli import main as cli_main
from distilkit.core.errors import ExportError

from .conftest import FIXTURES

pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")
from distilkit.deploy.onnx_export import export_onnx  # noqa: E402
from distilkit.deploy.ort_runner import OnnxClassifier, TorchClassifier, predict  # noqa: E402

SAVED = Path(__file__).resolve().parent / "fixtures" / "saved-0.1.0"
GLUE = str(FIXTURES / "glue")


def export(model_dir: Path, out: Path, task: str = "sst2", **kw) -> dict:
    return export_onnx(model_dir, out, task=task, data_dir=GLUE, max_examples=64, **kw)


@pytest.mark.parametrize("name", ["bilstm", "pruned", "linear-hedgehog"])
def test_float_students_export_to_the_same_logits(tmp_path, name):
    report = export(SAVED / name, tmp_path / "onnx")
    assert report["precision"] == "fp32" and report["checked_rows"] == 64
    assert report["max_abs_logit_diff"] < 1e-4, report
    assert report["dev_metrics_onnx"] == report["dev_metrics_pytorch"]
    saved = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert saved == report and (tmp_path / "onnx" / "tokenizer.json").is_file()


@pytest.mark.parametrize("name", ["bilstm-int8", "bert-int8"])
def test_quantized_students_export_from_their_integers_and_stay_int8(tmp_path, name):
    report = export(SAVED / name, tmp_path / "onnx")
    assert report["precision"] == "int8" and report["dequantized_layers"] > 0
    assert report["max_abs_logit_diff"] < 0.05, report  # ORT's int8 kernels against distilkit's
    onnx_acc, torch_acc = report["dev_metrics_onnx"]["accuracy"], report["dev_metrics_pytorch"]["accuracy"]
    assert abs(onnx_acc - torch_acc) <= 1 / 64 + 1e-9  # at most one of 64 dev predictions flips
    with pytest.raises(ExportError, match="already integer"):
        export(SAVED / name, tmp_path / "again", int8=True)
    assert not (tmp_path / "again").exists()


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_pair_bilstm_with_empty_sentences_and_new_lengths(tmp_path, tiny_tokenizer_dir, pooling):
    from transformers import AutoTokenizer

    from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    model = BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=len(tokenizer), embedding_dim=12, hidden_size=6,
                                                         mlp_hidden_size=8, num_labels=2, is_pair=True,
                                                         num_lstm_layers=2, pooling=pooling)).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    report = export(tmp_path / "model", tmp_path / "onnx", task="mrpc")
    assert report["max_abs_logit_diff"] < 1e-4 and report["is_pair"]
    onnx, torch_model = OnnxClassifier(tmp_path / "onnx"), TorchClassifier(tmp_path / "model")
    texts, pairs = ["", "a film", "an unusually long sentence about nothing much at all"], ["x", "", ""]
    assert abs(onnx.logits(texts, pairs) - torch_model.logits(texts, pairs)).max() < 1e-4
    assert abs(onnx.logits(["", ""], ["", ""]) - torch_model.logits(["", ""], ["", ""])).max() < 1e-4
    # Sentence b longer than a, and lengths the trace never saw: the graph pads both to the longer one per batch.
    short, long = ["x"], ["a much longer second sentence than the first one of this pair"]
    assert abs(onnx.logits(short, long) - torch_model.logits(short, long)).max() < 1e-4
    assert abs(onnx.logits(long, short) - torch_model.logits(long, short)).max() < 1e-4


def test_int8_flag_quantizes_a_float_model(tmp_path):
    report = export(SAVED / "pruned", tmp_path / "onnx", int8=True)
    assert report["precision"] == "int8" and report["max_abs_logit_diff"] < 0.1
    import onnx

    ops = {node.op_type for node in onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops  # integer matmuls, activations quantized at run time


def test_bad_requests_are_named_and_leave_nothing(tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="not a saved model folder"):
        export(tmp_path, tmp_path / "out")
    with pytest.raises(ExportError, match="pass --task"):
        export_onnx(SAVED / "bilstm", tmp_path / "out")
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no such op")))
    with pytest.raises(ExportError, match="model type 'distilkit-linear-bert' cannot be expressed in ONNX"):
        export(SAVED / "linear-hedgehog", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_predict_pytorch_and_onnx_folders_agree(tmp_path, capsys):
    export(SAVED / "bilstm", tmp_path / "onnx")
    rows = ["a gorgeous , witty film", "dull", "the plot was slow but the acting was great and moving", "ok"]
    (tmp_path / "in.tsv").write_text("sentence\n" + "\n".join(rows) + "\n")
    outputs = []
    for folder in (SAVED / "bilstm", tmp_path / "onnx"):
        assert cli_main(["predict", str(folder), "--file", str(tmp_path / "in.tsv"), "--batch-size", "2"]) == 0
        outputs.append(capsys.readouterr().out.splitlines())
    assert outputs[0][0] == outputs[1][0] and len(outputs[0]) == len(rows) + 1
    assert [line.split("\t")[0] for line in outputs[0]] == [line.split("\t")[0] for line in outputs[1]]
    # Length bucketing returns answers in input order: the same as one sentence at a time.
    one_by_one = [predict(TorchClassifier(SAVED / "bilstm"), [r])[0]["label"] for r in rows]
    assert [line.split("\t")[0] for line in outputs[0][1:]] == one_by_one
    assert cli_main(["predict", str(SAVED / "bilstm"), "a fine film"]) == 0
    assert capsys.readouterr().out.count("\n") == 2
    assert cli_main(["predict", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "MODEL_DIR: " in err and "does not exist" in err


@pytest.mark.parametrize("variant", ["elu", "performer", "hedgehog", "linformer", "sinkhorn", "star"])
def test_every_linear_attention_variant_exports(tmp_path, tiny_teacher_dir, variant):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distilkit.methods.linear_attention.swap import swap_attention

    model = swap_attention(AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir), variant,
                           features=8, max_length=128).eval()
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_teacher_dir).save_pretrained(tmp_path / "model")
    report = export(tmp_path / "model", tmp_path / "onnx", task="mrpc")  # pairs: token type ids too
    assert report["max_abs_logit_diff"] < 1e-4, report


def test_plain_transformer_student_on_pairs(tmp_path, tiny_teacher_dir):
    report = export(tiny_teacher_dir, tmp_path / "onnx", task="rte")
    assert report["max_abs_logit_diff"] < 1e-4 and report["is_pair"]
