"""Serving path (issue 26): ORT's transformer optimizer on exports, static int8 with calibration, per-node fp32
fallback, named errors before work starts, predict --time, and the BiLSTM's unpadded fast path."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from distilkit.cli import main as cli_main
from distilkit.core.errors import ExportError

from .conftest import FIXTURES, make_tiny_teacher

onnx = pytest.importorskip("onnx", reason="the export extra (onnx, onnxruntime) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")
from distilkit.deploy import onnx_export  # noqa: E402
from distilkit.deploy.onnx_export import export_onnx  # noqa: E402
from distilkit.deploy.ort_quantize import disagreement  # noqa: E402
from distilkit.deploy.ort_runner import OnnxClassifier, TorchClassifier  # noqa: E402

SAVED = Path(__file__).resolve().parent / "fixtures" / "saved-0.1.0"
GLUE = str(FIXTURES / "glue")


def export(model_dir: Path, out: Path, task: str = "sst2", **kw) -> dict:
    return export_onnx(model_dir, out, task=task, data_dir=GLUE, max_examples=64, **kw)


def op_counts(folder: Path) -> collections.Counter:
    return collections.Counter(node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node)


def calibration_logits(onnx_path: Path, model_dir: Path, task: str, rows: int) -> np.ndarray:
    """Logits of an ONNX file on the first ``rows`` train sentences, fed independently of the export code."""
    from distilkit.data.tasks import load_split, load_task
    from distilkit.models.inference import load_saved
    from distilkit.models.transformer import encode_transformer

    spec = load_task(task)
    table = load_split(spec, "train", data_dir=GLUE, max_examples=rows, seed=0)
    _, tokenizer = load_saved(model_dir)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    out = []
    for i in range(0, len(table), 32):
        part = table.select(range(i, min(i + 32, len(table))))
        batch = encode_transformer(tokenizer, list(part["text_a"]),
                                   list(part["text_b"]) if spec.is_pair else None, 128)
        out.append(session.run(["logits"], {k: v.numpy() for k, v in batch.items() if k in names})[0])
    return np.concatenate(out)


@pytest.mark.parametrize("task", ["sst2", "rte"])
def test_optimizer_fuses_a_tiny_bert_and_keeps_its_logits(tmp_path, tiny_teacher_dir, task):
    report = export(tiny_teacher_dir, tmp_path / "onnx", task=task)
    ops = op_counts(tmp_path / "onnx")
    # 2 layers: one fused Attention each, two skip-layer-norms each, one bias-GELU each, embeddings fused.
    assert ops["Attention"] == 2 and ops["SkipLayerNormalization"] == 4 and ops["BiasGelu"] == 2
    assert ops["EmbedLayerNormalization"] == 1 and ops["Softmax"] == 0
    assert report["optimizer"]["fused"] == {k: ops[k] for k in report["optimizer"]["fused"]}
    assert report["optimizer"]["attention_heads"] == [2, 2] and report["optimizer"]["traced_attention"] == "eager"
    assert report["max_abs_logit_diff"] < 1e-4, report  # the fused graph against PyTorch (sdpa) on dev rows
    assert report["dev_metrics_onnx"] == report["dev_metrics_pytorch"]


def test_pruned_layers_fuse_with_their_own_head_counts(tmp_path):
    heads = json.loads((SAVED / "pruned" / "config.json").read_text())["distilkit_pruning"]["heads"]
    report = export(SAVED / "pruned", tmp_path / "onnx")
    assert report["optimizer"]["attention_heads"] == heads == [3, 2]
    assert op_counts(tmp_path / "onnx")["Attention"] == len(heads)
    assert report["max_abs_logit_diff"] < 1e-4, report


def test_optimize_none_keeps_the_plain_graph_and_the_bilstm_is_not_optimized(tmp_path, tiny_teacher_dir):
    report = export(tiny_teacher_dir, tmp_path / "plain", optimize="none")
    ops = op_counts(tmp_path / "plain")
    assert ops["Attention"] == 0 and ops["Softmax"] == 2 and report["optimizer"] == {"level": "none"}
    assert report["max_abs_logit_diff"] < 1e-4
    bilstm = export(SAVED / "bilstm", tmp_path / "bilstm")
    assert bilstm["optimizer"]["level"] == "none" and "LSTM" in bilstm["optimizer"]["why"]


def test_bad_levels_and_empty_calibration_are_named_before_any_work(tmp_path, monkeypatch, tiny_teacher_dir):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the flags were checked")

    monkeypatch.setattr(onnx_export, "load_saved", no_model)
    for level in ("layout", "max", "3"):  # layout is an ORT session level the offline optimizer refuses
        with pytest.raises(ExportError, match=f"--optimize: ONNX Runtime's transformer optimizer has no level '{level}'"):
            export(tiny_teacher_dir, tmp_path / "out", optimize=level)
    with pytest.raises(ExportError, match="--int8: 'int4' is not an ONNX Runtime int8 mode"):
        export(tiny_teacher_dir, tmp_path / "out", int8="int4")
    with pytest.raises(ExportError, match="--calibrate: needs a positive number"):
        export(tiny_teacher_dir, tmp_path / "out", int8="static", calibrate=0)
    import datasets

    empty = tmp_path / "empty-transfer-set"
    datasets.Dataset.from_dict({"text_a": [], "text_b": [], "label": []}).save_to_disk(str(empty))
    with pytest.raises(ExportError, match="--calibration-data: .*empty-transfer-set has no rows"):
        export(tiny_teacher_dir, tmp_path / "out", int8="static", calibration_data=str(empty))
    with pytest.raises(ExportError, match="--calibration-data: .*nowhere: no such folder"):
        export(tiny_teacher_dir, tmp_path / "out", int8="static", calibration_data=str(tmp_path / "nowhere"))
    with pytest.raises(ExportError, match="--fp32-fallback: only applies to int8"):
        export(tiny_teacher_dir, tmp_path / "out", fp32_fallback="auto")
    # 0.003 of 64 rows is a fifth of a changed prediction: auto would silently demand exact agreement.
    with pytest.raises(ExportError, match=r"--fallback-tolerance 0.003 on 64 calibration rows allows 0.19 changed "
                                          r"predictions, fewer than one.*--calibrate 334 or more.*at least 0.0156"):
        export(tiny_teacher_dir, tmp_path / "out", int8="dynamic", fp32_fallback="auto", calibrate=64)
    assert not (tmp_path / "out").exists()
    # The command line reports the same, as one error line and status 2.
    assert cli_main(["export", str(tiny_teacher_dir), "--onnx", str(tmp_path / "out"), "--task", "sst2",
                     "--data-dir", GLUE, "--optimize", "layout"]) == 2


def test_static_int8_is_calibrated_on_the_train_split_and_its_agreement_reported(tmp_path, tiny_teacher_dir):
    fp32 = export(tiny_teacher_dir, tmp_path / "fp32")
    report = export(tiny_teacher_dir, tmp_path / "static", int8="static", calibrate=48)
    q = report["int8"]
    assert report["precision"] == "int8" and q["mode"] == "static"
    assert q["calibration"] == {"source": "sst2 train split", "rows": 48} and q["fp32_nodes"] == []
    ops = op_counts(tmp_path / "static")
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0 and ops["Attention"] == 2  # QDQ on fused
    # The agreement export.json reports, recomputed here from the two files on the same 48 train sentences.
    ref = calibration_logits(tmp_path / "fp32" / "model.onnx", tiny_teacher_dir, "sst2", 48)
    got = calibration_logits(tmp_path / "static" / "model.onnx", tiny_teacher_dir, "sst2", 48)
    assert q["calibration_disagreement"] == pytest.approx(float((ref.argmax(1) != got.argmax(1)).mean()))
    assert q["calibration_max_abs_logit_diff"] == pytest.approx(float(np.abs(ref - got).max()), rel=1e-4)
    assert 0 < q["calibration_max_abs_logit_diff"] < 0.5  # it is quantized, and close
    assert report["fp32_graph"]["max_abs_logit_diff"] == pytest.approx(fp32["max_abs_logit_diff"], abs=1e-6)
    assert "dev_metrics_onnx" in report and report["checked_rows"] == 64


@pytest.fixture
def outlier_regressor(tmp_path, tiny_tokenizer_dir) -> Path:
    """A tiny STS-B regressor whose last hidden state has one outlier dimension (x1000) that the pooler ignores:
    per-tensor int8 activations of the pooler's input lose everything else, so the pooler is the node that
    must stay fp32 (real BERTs have such outlier dimensions too)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = make_tiny_teacher(tmp_path / "teacher", tiny_tokenizer_dir, num_labels=1, problem_type="regression")
    model = AutoModelForSequenceClassification.from_pretrained(source)
    with torch.no_grad():
        model.bert.encoder.layer[-1].output.LayerNorm.weight[5] = 1000.0
        model.bert.pooler.dense.weight[:, 5] = 0.0
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(source).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("mode, pooler", [("dynamic", "/model/bert/pooler/dense/Gemm_MatMul"),
                                          ("static", "/model/bert/pooler/dense/Gemm")])
def test_auto_fallback_keeps_the_sensitive_node_in_fp32(tmp_path, outlier_regressor, mode, pooler):
    report = export(outlier_regressor, tmp_path / "onnx", task="stsb", int8=mode, fp32_fallback="auto",
                    calibrate=64)
    q = report["int8"]
    assert q["steps"][0]["fp32_nodes"] == 0 and q["steps"][0]["disagreement"] > 0.1  # all-int8 is far off
    assert next(iter(q["sensitivity"])) == pooler and q["fp32_nodes"][0] == pooler
    assert q["calibration_disagreement"] <= q["tolerance"] == 0.003
    assert 0 < len(q["fp32_nodes"]) < q["quantizable_nodes"]
    ref = calibration_logits(tmp_path / "onnx" / "model.onnx", outlier_regressor, "stsb", 64)  # int8 file
    plain = export(outlier_regressor, tmp_path / "fp32", task="stsb")
    fp32 = calibration_logits(tmp_path / "fp32" / "model.onnx", outlier_regressor, "stsb", 64)
    from distilkit.data.tasks import load_split, load_task

    gold = np.asarray(load_split(load_task("stsb"), "train", data_dir=GLUE, max_examples=64, seed=0)["label"],
                      dtype=np.float64)  # the calibration rows' gold scores: the measure counts their change too
    assert q["calibration_gold_scores"] is True
    assert disagreement(ref, fp32, gold) == pytest.approx(q["calibration_disagreement"], abs=1e-5)
    assert plain["max_abs_logit_diff"] < 1e-4
    graph = onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph
    assert any(node.name.startswith("/model/bert/pooler/dense/Gemm") and node.op_type in ("MatMul", "Gemm")
               for node in graph.node)  # still a float op
    assert any(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "QuantizeLinear")
               for node in graph.node)  # the rest is integer


def test_named_fallback_nodes_stay_float_and_unknown_names_are_named(tmp_path, tiny_teacher_dir):
    target = "/model/bert/encoder/layer.0/intermediate/dense/MatMul"
    report = export(tiny_teacher_dir, tmp_path / "onnx", int8="dynamic", fp32_fallback=target)
    assert report["int8"]["fp32_nodes"] == [target]
    kinds = {node.name: node.op_type for node in onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph.node}
    assert kinds[target] == "MatMul"
    assert kinds.get("/model/bert/encoder/layer.1/intermediate/dense/MatMul") != "MatMul"  # quantized
    with pytest.raises(ExportError, match=r"--fp32-fallback: \['nope'\] are not quantizable nodes"):
        export(tiny_teacher_dir, tmp_path / "bad", int8="dynamic", fp32_fallback="nope")
    assert not (tmp_path / "bad").exists()


def test_session_threads_and_predict_time(tmp_path, capsys):
    before = torch.get_num_threads()
    export(SAVED / "bilstm", tmp_path / "onnx")
    one = OnnxClassifier(tmp_path / "onnx", threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    TorchClassifier(SAVED / "bilstm").logits(["a film"])
    assert torch.get_num_threads() == before  # the library leaves torch's process-wide setting alone
    assert cli_main(["predict", str(tmp_path / "onnx"), "a fine film", "--time", "--rounds", "1",
                     "--batch-size", "4", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith("label")  # predictions still on stdout
    lines = captured.err.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("model ")):]
    assert table[0].split()[:3] == ["model", "b1", "ms"] and "b4" in table[0]
    assert "(ORT fp32)" in table[1] and "(PyTorch)" in table[2]  # the ONNX folder and the model it came from
    ms = [float(v) for v in table[1].split(")")[1].split()[:2]]
    assert all(v > 0 for v in ms)
    assert cli_main(["predict", str(tmp_path / "onnx"), "x", "--time", "--against", str(tmp_path / "no")]) == 2


# ---- BiLSTM: the unpadded fast path computes what the packed forward computed --------------------------------

def reference_encode(model, input_ids, attention_mask):
    """distilkit 0.1's BiLSTM ``encode``, kept verbatim as the independent computation."""
    batch = input_ids.shape[0]
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if input_ids.shape[1] == 0:
        input_ids = input_ids.new_full((batch, 1), model.config.pad_token_id or 0)
        attention_mask = torch.zeros_like(input_ids)
    mask = attention_mask.bool()
    if (mask[:, 1:] & ~mask[:, :-1]).any():
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        input_ids, mask = input_ids.gather(1, order), mask.gather(1, order)
    embedded = model.dropout(model.embeddings(input_ids))
    if bool(mask.all()):
        _, (hidden, _) = model.lstm(embedded)
    else:
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        _, (hidden, _) = model.lstm(pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False))
    return torch.cat([hidden[-2], hidden[-1]], dim=-1)


def reference_logits(model, a, ma, b=None, mb=None):
    h1 = reference_encode(model, a, ma)
    if b is None:
        features = h1
    else:
        h2 = reference_encode(model, b, mb)
        features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1)
    return model.classifier(model.dropout(torch.relu(model.mlp(model.dropout(features)))))


@pytest.mark.parametrize("layers", [1, 2])
def test_bilstm_forward_equals_the_packed_reference(layers):
    from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification

    torch.manual_seed(0)
    models = {pair: BiLSTMForSequenceClassification(BiLSTMConfig(
        vocab_size=50, embedding_dim=12, hidden_size=7, mlp_hidden_size=9, num_labels=3, is_pair=pair,
        num_lstm_layers=layers)).eval() for pair in (False, True)}

    def ids(batch, width, pad_from=None, left=False):
        x, m = torch.randint(1, 50, (batch, width)), torch.ones((batch, width), dtype=torch.long)
        for row, start in enumerate(pad_from or []):
            if left:
                x[row, :width - start], m[row, :width - start] = 0, 0
            else:
                x[row, start:], m[row, start:] = 0, 0
        return x, m

    cases = [ids(1, 9), ids(3, 6), ids(3, 8, [8, 3, 5]), ids(2, 7, [4, 7], left=True), ids(2, 5, [0, 5]),
             (torch.zeros((2, 0), dtype=torch.long), torch.zeros((2, 0), dtype=torch.long)), (ids(1, 4)[0], None)]
    with torch.inference_mode():
        for a, ma in cases:
            single = models[False](input_ids=a, attention_mask=ma).logits
            torch.testing.assert_close(single, reference_logits(models[False], a, ma), atol=1e-6, rtol=0)
            for b, mb in (ids(a.shape[0], 4), ids(a.shape[0], 6, [2] * a.shape[0])):
                pair = models[True](input_ids=a, attention_mask=ma, input_ids_b=b, attention_mask_b=mb).logits
                torch.testing.assert_close(pair, reference_logits(models[True], a, ma, b, mb), atol=1e-6, rtol=0)
    # Training mode still applies dropout on the fast path (the same masks as the reference, given the seed).
    model = models[False].train()
    a, ma = ids(1, 9)
    torch.manual_seed(3)
    new = model(input_ids=a, attention_mask=ma).logits
    torch.manual_seed(3)
    torch.testing.assert_close(new, reference_logits(model, a, ma), atol=1e-6, rtol=0)


def test_without_a_train_split_plain_dynamic_int8_still_exports_and_static_is_named(tmp_path):
    import shutil

    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    shutil.copy(FIXTURES / "glue" / "SST-2" / "dev.tsv", tmp_path / "glue" / "SST-2" / "dev.tsv")
    data = str(tmp_path / "glue")
    report = export_onnx(SAVED / "bilstm-int8", tmp_path / "onnx", task="sst2", data_dir=data, max_examples=32)
    assert report["precision"] == "int8" and report["int8"]["calibration"] == {"source": None, "rows": 0}
    assert report["int8"]["calibration_disagreement"] is None and report["max_abs_logit_diff"] < 0.05
    with pytest.raises(ExportError, match="--calibrate: cannot read the sst2 train split"):
        export_onnx(SAVED / "bilstm", tmp_path / "static", task="sst2", data_dir=data, int8="static")
    assert not (tmp_path / "static").exists()


@pytest.mark.parametrize("pooling", ["last", "max"])
def test_pair_bilstm_exports_one_bidirectional_lstm_node_per_layer(tmp_path, tiny_tokenizer_dir, pooling):
    """A pair BiLSTM's graph runs both sentences, both directions, through one ONNX ``LSTM`` node per layer
    (``sequence_lens`` from the masks; issue 26), and its dynamic int8 form agrees with PyTorch on pairs of
    different lengths."""
    from transformers import AutoTokenizer

    from distilkit.deploy.ort_quantize import unshare_weights
    from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    model = BiLSTMForSequenceClassification(BiLSTMConfig(vocab_size=len(tokenizer), embedding_dim=12, hidden_size=6,
                                                         mlp_hidden_size=8, num_labels=2, is_pair=True,
                                                         num_lstm_layers=2, pooling=pooling)).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    export(tmp_path / "model", tmp_path / "fp32", task="mrpc")
    graph = tmp_path / "fp32" / "model.onnx"
    lstms = [n for n in onnx.load(str(graph)).graph.node if n.op_type == "LSTM"]
    assert len(lstms) == 2 and all(len(n.input) == 5 and n.input[4] for n in lstms)  # sequence_lens given
    assert all(onnx.helper.get_attribute_value(a) == b"bidirectional" for n in lstms for a in n.attribute
               if a.name == "direction")
    unshare_weights(graph)  # the exporter merges equal initializers (the two layers' biases start equal)
    private = [i for n in onnx.load(str(graph)).graph.node if n.op_type == "LSTM" for i in n.input[1:4]]
    assert len(set(private)) == len(private) == 6
    report = export(tmp_path / "model", tmp_path / "int8", task="mrpc", int8="dynamic", calibrate=64)
    assert report["precision"] == "int8" and report["int8"]["calibration_disagreement"] <= 0.05
    ops = {n.op_type for n in onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    texts, pairs = ["a film", "an unusually long sentence about nothing"], ["x y", "a film"]
    assert abs(OnnxClassifier(tmp_path / "int8").logits(texts, pairs)
               - TorchClassifier(tmp_path / "model").logits(texts, pairs)).max() < 0.05


def test_lstm_nodes_that_share_weights_get_copies_before_int8(tmp_path):
    """Two LSTM nodes reading one ``W``/``R``/``B`` (as a graph exported elsewhere may hold): ORT's LSTM quantizer
    rewrites those initializers in place, so each node first gets its own copy, and the int8 graph then runs
    (before: "Input W must have shape {1,24,12}" at the first run) and stays near fp32."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import quantize_dynamic

    from distilkit.deploy.ort_quantize import unshare_weights

    rng = np.random.default_rng(0)
    hidden, width = 6, 12
    weights = [numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
               for name, shape in (("W", (1, 4 * hidden, width)), ("R", (1, 4 * hidden, hidden)),
                                   ("B", (1, 8 * hidden)))]
    nodes = [helper.make_node("LSTM", [x, "W", "R", "B"], ["", h], hidden_size=hidden, name=f"lstm_{x}")
             for x, h in (("xa", "ha"), ("xb", "hb"))]
    inputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["T", 1, width]) for x in ("xa", "xb")]
    outputs = [helper.make_tensor_value_info(h, TensorProto.FLOAT, None) for h in ("ha", "hb")]
    graph = tmp_path / "shared.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, weights),
                                opset_imports=[helper.make_opsetid("", 17)]), str(graph))
    feeds = {"xa": rng.standard_normal((5, 1, width)).astype(np.float32),
             "xb": rng.standard_normal((3, 1, width)).astype(np.float32)}
    reference = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert unshare_weights(graph) == 6  # both nodes' W, R and B
    inputs = [list(n.input[1:4]) for n in onnx.load(str(graph)).graph.node]
    assert len({name for names in inputs for name in names}) == 6
    quantize_dynamic(str(graph), str(tmp_path / "int8.onnx"))
    quantized = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert all(np.abs(q - r).max() < 0.05 for q, r in zip(quantized, reference))


def test_regression_disagreement_counts_the_change_against_gold_scores():
    """int8 errors that follow the gold scores: the two score lists correlate at 0.999 while Pearson r against
    gold moves by more; with the labels, auto-fallback's measure is that change (the metric's own)."""
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 512)
    fp32 = (gold + rng.normal(0, 1.5, 512))[:, None]
    int8 = fp32 + 0.04 * (gold - gold.mean())[:, None]  # a shift that follows the score: r(int8, fp32) stays high
    plain = disagreement(int8, fp32)
    with_gold = disagreement(int8, fp32, gold)
    change = abs(np.corrcoef(int8[:, 0], gold)[0, 1] - np.corrcoef(fp32[:, 0], gold)[0, 1])
    assert plain < 0.003 < change and with_gold == pytest.approx(change)
    noise = fp32 + rng.normal(0, 0.5, (512, 1))  # far apart but no systematic change: 1 - r dominates
    assert disagreement(noise, fp32) > 0.01
    assert disagreement(noise, fp32, gold) == pytest.approx(disagreement(noise, fp32))
    assert disagreement(fp32, fp32, gold) == 0.0
