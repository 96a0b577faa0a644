"""PEFT in real use: teacher.adapter (load + merge, fingerprint, preflight), teacher.finetune.lora, and
train.lora (LoRA recovery of pruned and quantized students)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import distilkit  # noqa: F401  (registers quant_method distilkit with transformers)
from distilkit.core.errors import RecipeError, TeacherError
from distilkit.data.tasks import load_split, load_task
from distilkit.methods.lora.config import LoraRecoveryConfig
from distilkit.methods.lora.hooks import finish_lora_output, prepare_lora_student
from distilkit.methods.pruning.structural import prune_ffn, prune_heads
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.convert import prepare_qat, quantize_in_place, quantize_output
from distilkit.methods.quantization.layers import QuantLinear
from distilkit.models.config import FinetuneConfig, LoraSettings, TeacherConfig
from distilkit.models.finetune import finetune_teacher
from distilkit.models.inference import load_saved
from distilkit.models.lora_layers import ADAPTER_DIR, apply_saved_adapter
from distilkit.models.teachers import load_hf_teacher
from distilkit.run.distill import run
from distilkit.run.methods import METHODS
from distilkit.run.preflight import preflight
from distilkit.run.recipe_io import validate_recipe

from .conftest import FIXTURES, copy_student_recipe, make_tiny_teacher

peft = pytest.importorskip("peft", reason="the peft extra is not installed (pip install 'distilkit[peft]')")
LoraConfig, PeftModel, get_peft_model = peft.LoraConfig, peft.PeftModel, peft.get_peft_model

SENTENCES = ["a gorgeous , witty film", "the plot is a mess and the acting is worse", "it works"]


def _inputs(model_dir: Path) -> dict:
    tok = AutoTokenizer.from_pretrained(model_dir)
    return dict(tok(SENTENCES, padding=True, return_tensors="pt"))


def _logits(model, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).logits


def make_adapter(path: Path, teacher_dir: Path, seed: int, targets=("query", "value"), r: int = 4) -> Path:
    """A LoRA adapter with random (non-zero) A and B, saved by peft itself."""
    torch.manual_seed(seed)
    base = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    config = LoraConfig(r=r, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------ teacher.adapter
def test_adapter_merged_teacher_equals_the_peft_model_before_merging(tmp_path, tiny_teacher_dir):
    adapter = make_adapter(tmp_path / "adapter", tiny_teacher_dir, seed=1)
    inputs = _inputs(tiny_teacher_dir)
    unmerged = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir),
                                         str(adapter))
    expected = _logits(unmerged, inputs)
    teacher = load_hf_teacher(str(tiny_teacher_dir), num_labels=2, problem_type="single_label_classification",
                              adapter=str(adapter))
    assert not any("lora" in name for name, _ in teacher.model.named_modules())  # merged and unloaded
    torch.testing.assert_close(_logits(teacher.model, inputs), expected, atol=1e-5, rtol=1e-5)
    base = _logits(AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir), inputs)
    assert (expected - base).abs().max() > 1e-3  # the adapter really changes the teacher


def test_fingerprint_follows_the_adapter_weights(tmp_path, tiny_teacher_dir):
    def fingerprint(adapter):
        return load_hf_teacher(str(tiny_teacher_dir), num_labels=2, problem_type="single_label_classification",
                               adapter=adapter).fingerprint()

    one, two = (make_adapter(tmp_path / f"a{s}", tiny_teacher_dir, seed=s) for s in (1, 2))
    plain, first, second = fingerprint(None), fingerprint(str(one)), fingerprint(str(two))
    assert len({plain, first, second}) == 3
    assert fingerprint(str(one)) == first  # same adapter, same cache entry


def test_adapter_of_another_shape_is_a_teacher_error_at_load(tmp_path, tiny_tokenizer_dir, tiny_teacher_dir):
    wide = make_tiny_teacher(tmp_path / "wide", tiny_tokenizer_dir, num_layers=2)
    cfg = json.loads((wide / "config.json").read_text())
    cfg.update(hidden_size=48, intermediate_size=96)
    from transformers import BertConfig, BertForSequenceClassification
    BertForSequenceClassification(BertConfig(**{k: v for k, v in cfg.items() if k != "architectures"})
                                  ).save_pretrained(wide)
    adapter = make_adapter(tmp_path / "adapter", wide, seed=0)
    with pytest.raises(TeacherError, match="teacher.adapter"):
        load_hf_teacher(str(tiny_teacher_dir), num_labels=2, problem_type="single_label_classification",
                        adapter=str(adapter))


def _adapter_recipe(tmp_path: Path, teacher: Path, adapter: str) -> dict:
    tree = copy_student_recipe(tmp_path, teacher, "measure", {"latency": False})
    tree["teacher"]["adapter"] = adapter
    return tree


def test_preflight_names_a_missing_adapter(tmp_path, tiny_teacher_dir):
    recipe = validate_recipe(_adapter_recipe(tmp_path, tiny_teacher_dir, str(tmp_path / "nowhere")))
    with pytest.raises(RecipeError, match=r"teacher.adapter: .*nowhere' does not exist"):
        preflight(recipe, "r.yaml")


def test_preflight_names_an_adapter_made_for_another_architecture(tmp_path, tiny_teacher_dir):
    adapter = make_adapter(tmp_path / "adapter", tiny_teacher_dir, seed=0)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "v_proj"]  # a Llama-style adapter
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    recipe = validate_recipe(_adapter_recipe(tmp_path, tiny_teacher_dir, str(adapter)))
    with pytest.raises(RecipeError, match=r"r.yaml: teacher.adapter: target modules \['q_proj', 'v_proj'\]"):
        preflight(recipe, "r.yaml")


def test_preflight_names_an_adapter_whose_base_differs(tmp_path, tiny_tokenizer_dir, tiny_teacher_dir):
    deep = make_tiny_teacher(tmp_path / "deep", tiny_tokenizer_dir, num_layers=3)
    adapter = make_adapter(tmp_path / "adapter", deep, seed=0)  # same module names, base has 3 layers
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(deep)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    recipe = validate_recipe(_adapter_recipe(tmp_path, tiny_teacher_dir, str(adapter)))
    with pytest.raises(RecipeError, match=r"made for base model .*num_hidden_layers 3 vs 2"):
        preflight(recipe, "r.yaml")
    # The teacher's own adapter passes.
    good = make_adapter(tmp_path / "good", tiny_teacher_dir, seed=0)
    preflight(validate_recipe(_adapter_recipe(tmp_path, tiny_teacher_dir, str(good))), "r.yaml")


def test_adapter_and_finetune_conflict(tmp_path, tiny_teacher_dir):
    tree = _adapter_recipe(tmp_path, tiny_teacher_dir, str(tmp_path))
    tree["teacher"]["finetune"] = {"epochs": 1}
    with pytest.raises(RecipeError, match="teacher.adapter: .* conflicts with teacher.finetune"):
        validate_recipe(tree)


# ------------------------------------------------------------------------------------ teacher.finetune.lora
def test_lora_finetune_trains_only_adapters_and_head(tmp_path, tiny_teacher_dir):
    task = load_task("sst2")
    train = load_split(task, "train", data_dir=str(FIXTURES / "glue"), max_examples=32, seed=0)
    lora = LoraSettings(r=4, alpha=8, target_modules=["query", "value"])
    cfg = TeacherConfig(model=str(tiny_teacher_dir), finetune=FinetuneConfig(epochs=1, batch_size=8, lr=1e-2,
                                                                             max_length=24, lora=lora))
    out = finetune_teacher(cfg, task, train, None, cache_dir=tmp_path / "cache")
    report = json.loads((out / "finetune.json").read_text())
    base = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    n_layers, hidden = base.config.num_hidden_layers, base.config.hidden_size
    head = sum(p.numel() for p in base.classifier.parameters())
    assert report["method"] == "lora"
    assert report["trainable_parameters"] == n_layers * 2 * lora.r * (hidden + hidden) + head
    assert report["trainable_parameters"] < 0.1 * report["total_parameters"]
    merged = load_file(str(out / "model.safetensors"))
    original = base.state_dict()
    assert set(merged) <= set(original)  # an ordinary model: no adapter keys
    for key, value in merged.items():
        changed = not torch.equal(value, original[key])
        should = ".query.weight" in key or ".value.weight" in key or key.startswith("classifier.")
        assert changed == should, key  # targets and head moved, everything else frozen


def test_finetune_key_is_unchanged_without_lora_and_differs_with_it():
    """Teachers cached before finetune.lora existed keep their key; a LoRA fine-tune gets its own entry."""
    from types import SimpleNamespace

    from distilkit.data.logit_cache import data_fingerprint
    from distilkit.models.finetune import finetune_key

    task = load_task("sst2")
    train = load_split(task, "train", data_dir=str(FIXTURES / "glue"), max_examples=8, seed=0)
    teacher = SimpleNamespace(fingerprint=lambda: "base")
    import hashlib
    digest = hashlib.blake2b(digest_size=12)
    old_settings = ('{"epochs":1.0,"batch_size":32,"lr":0.00005,"weight_decay":0.01,"warmup_ratio":0.1,'
                    '"max_length":128,"max_examples":null,"seed":42,"group_by_length":false}')
    for part in ("base", task.name, data_fingerprint(train), old_settings):
        digest.update(part.encode())
    assert finetune_key(teacher, task, train, FinetuneConfig()) == digest.hexdigest()
    assert finetune_key(teacher, task, train, FinetuneConfig(lora=LoraSettings())) != digest.hexdigest()


# --------------------------------------------------------------------------------------------- train.lora
def test_lora_runs_last_so_it_wraps_the_compressed_student():
    assert list(METHODS)[-1] == "lora"
    assert list(METHODS).index("quantization") < list(METHODS).index("lora")


def _train_steps(model: torch.nn.Module, inputs: dict, steps: int = 2) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**inputs, labels=torch.tensor([0, 1, 1])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_pruned_student_frozen_weights_merge_and_reload_identically(tmp_path, tiny_teacher_dir):
    student = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    prune_heads(student, {0: [1], 1: [0]})  # a structurally pruned student: half the heads, half the FFN
    prune_ffn(student, {0: list(range(32)), 1: list(range(0, 64, 2))})
    cfg = LoraRecoveryConfig(r=4, alpha=8)
    report = prepare_lora_student(student, cfg)
    adapters = sum(m.lora_A.weight.numel() + m.lora_B.weight.numel() for n, m in student.named_modules()
                   if hasattr(m, "lora_A"))
    head = sum(p.numel() for p in student.classifier.parameters())
    assert report["trainable_parameters"] == adapters + head
    frozen = {k: v.clone() for k, v in student.state_dict().items() if "lora_" not in k and "classifier" not in k}
    inputs = _inputs(tiny_teacher_dir)
    _train_steps(student, inputs)
    after = student.state_dict()
    assert all(torch.equal(after[k], v) for k, v in frozen.items())  # compressed weights untouched
    assert any(after[k].abs().sum() > 0 for k in after if k.endswith("lora_B.weight"))  # adapters trained
    expected = _logits(student, inputs)
    student.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_teacher_dir).save_pretrained(tmp_path / "model")
    assert finish_lora_output(tmp_path, cfg, report) == "merged"
    assert not any("lora" in k for k in load_file(str(tmp_path / "model" / "model.safetensors")))
    reloaded, _ = load_saved(tmp_path / "model")
    assert not any("lora" in name for name, _ in reloaded.named_modules())
    torch.testing.assert_close(_logits(reloaded, inputs), expected, atol=1e-5, rtol=1e-5)
    assert finish_lora_output(tmp_path, cfg, report) == "done"  # idempotent
    (tmp_path / "model").rename(tmp_path / "model-merged")  # a crash between the two renames
    assert finish_lora_output(tmp_path, cfg, report) == "done"
    torch.testing.assert_close(_logits(load_saved(tmp_path / "model")[0], inputs), expected, atol=1e-5, rtol=1e-5)


def test_quantized_student_keeps_integers_and_reloads_with_its_adapter(tmp_path, tiny_teacher_dir):
    qcfg = QuantizeConfig(linear="int4", qat=True, backend="int_mm")
    student = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    prepare_qat(student, qcfg)
    cfg = LoraRecoveryConfig(r=4, alpha=8)
    report = prepare_lora_student(student, cfg)
    inputs = _inputs(tiny_teacher_dir)
    _train_steps(student, inputs)
    expected = _logits(student, inputs)  # QAT eval forward: nearest rounding, what the conversion stores
    student.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_teacher_dir).save_pretrained(tmp_path / "model")
    quantize_output(tmp_path, qcfg)
    assert finish_lora_output(tmp_path, cfg, report) == "adapter"
    assert (tmp_path / "model" / ADAPTER_DIR / "adapter_config.json").is_file()

    reloaded, _ = load_saved(tmp_path / "model")
    # Integer weights are those of the untrained teacher on the int4 grid: LoRA never moved them.
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    quantize_in_place(reference, qcfg)
    ints = {n: m for n, m in reloaded.named_modules() if isinstance(m, QuantLinear)}
    assert len(ints) == 13  # 12 encoder linears and the pooler (the head stays float)
    for name, module in ints.items():
        assert torch.equal(module.qweight, reference.get_submodule(name).qweight), name
    # Reloaded (integer kernels + adapter) computes the in-memory trained student's logits (QAT's float
    # simulation of the int4 grid vs torch._int_mm's integer products: equal up to float rounding) ...
    torch.testing.assert_close(_logits(reloaded, inputs), expected, atol=1e-4, rtol=1e-4)
    # ... and exactly what the trained weights converted in memory compute with the adapter attached.
    in_memory = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model-float")
    quantize_in_place(in_memory, qcfg)
    apply_saved_adapter(in_memory, tmp_path / "model" / ADAPTER_DIR)
    torch.testing.assert_close(_logits(reloaded, inputs), _logits(in_memory, inputs), atol=0, rtol=0)
    without, _ = load_saved(tmp_path / "model", adapter=False)
    assert (_logits(without, inputs) - expected).abs().max() > 1e-4  # the adapter is what recovers
    # The folder is a real PEFT adapter: peft puts it on the float weights exactly as distilkit does.
    float_base = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model-float")
    ours, _ = load_saved(tmp_path / "model-float", tokenizer=False)
    apply_saved_adapter(ours, tmp_path / "model" / ADAPTER_DIR)
    theirs = PeftModel.from_pretrained(float_base, str(tmp_path / "model" / ADAPTER_DIR))
    torch.testing.assert_close(_logits(theirs, inputs), _logits(ours, inputs), atol=1e-6, rtol=1e-6)

    # A later pipeline stage that takes this student as its teacher gets the adapter too.
    as_teacher = load_hf_teacher(str(tmp_path / "model"), num_labels=2, problem_type="single_label_classification")
    torch.testing.assert_close(_logits(as_teacher.model, inputs), _logits(reloaded, inputs), atol=0, rtol=0)
    # ONNX export puts the adapter into the graph beside the dequantized weights (ORT re-quantizes to int8).
    from distilkit.deploy.onnx_export import export_onnx
    from distilkit.deploy.ort_runner import OnnxClassifier
    export_onnx(tmp_path / "model", tmp_path / "onnx", task="sst2", data_dir=str(FIXTURES / "glue"),
                max_examples=16, max_length=24)
    onnx_logits = torch.from_numpy(OnnxClassifier(tmp_path / "onnx", max_length=24).logits(SENTENCES))
    reloaded_logits, base_logits = _logits(reloaded, inputs), _logits(without, inputs)
    assert (onnx_logits - reloaded_logits).abs().max() < 0.5 * (onnx_logits - base_logits).abs().max()


def _lora_recipe(tmp_path: Path, teacher: Path, **extra) -> dict:
    tree = copy_student_recipe(tmp_path, teacher, "measure", {"latency": False}, lora={"r": 4, "alpha": 8})
    tree.update(extra)
    return tree


def test_recipe_recovers_a_qat_int4_student_with_lora(tmp_path, tiny_teacher_dir):
    tree = _lora_recipe(tmp_path, tiny_teacher_dir, quantize={"linear": "int4", "qat": True, "backend": "int_mm"})
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    lora = json.loads((out / "model" / "lora.json").read_text())
    assert lora["adapters"] == "adapter" and lora["trainable_parameters"] < lora["total_parameters"] * 0.2
    reloaded, tok = load_saved(out / "model")
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    quantize_in_place(reference, QuantizeConfig(linear="int4", qat=True, backend="int_mm"))
    for name, module in reloaded.named_modules():
        if isinstance(module, QuantLinear):
            assert torch.equal(module.qweight, reference.get_submodule(name).qweight), name
    assert metrics["student"]["params"] > 0
    from distilkit.report.hub import prepare_push_folder
    pushed = prepare_push_folder(out, tmp_path / "push", "me/int4-lora")
    assert (pushed / ADAPTER_DIR / "adapter_model.safetensors").is_file()  # the Hub copy keeps its adapter


def test_recipe_recovers_a_pruned_student_and_saves_it_merged(tmp_path, tiny_teacher_dir):
    tree = _lora_recipe(tmp_path, tiny_teacher_dir)
    tree["student"] = {"kind": "pruned", "heads": 0.5, "ffn": 0.5, "max_length": 24, "importance_examples": 16}
    run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    assert json.loads((out / "model" / "lora.json").read_text())["adapters"] == "merged"
    assert not (out / "model" / ADAPTER_DIR).exists()
    saved = load_file(str(out / "model" / "model.safetensors"))
    assert not any("lora" in k for k in saved)
    unmerged = load_file(str(out / "model-lora" / "model.safetensors"))
    # Frozen: every weight without an adapter (embeddings, LayerNorms) is the pruned student's as built,
    # identical in the merged and unmerged files; the adapted ones moved by exactly alpha/r * B A.
    key = "bert.encoder.layer.0.attention.self.query.weight"
    prefix = key[: -len(".weight")]
    delta = 2.0 * unmerged[f"{prefix}.lora_B.weight"] @ unmerged[f"{prefix}.lora_A.weight"]
    torch.testing.assert_close(saved[key], unmerged[key] + delta)
    torch.testing.assert_close(saved["bert.embeddings.word_embeddings.weight"],
                               unmerged["bert.embeddings.word_embeddings.weight"], atol=0, rtol=0)


@pytest.mark.parametrize("extra, message", [
    ({"quantize": {"linear": "int8"}}, "train.lora: .* conflicts with quantize.qat"),
    ({"student": {"kind": "bilstm"}}, "train.lora: .* conflicts with student.kind"),
    ({"deep_compression": {"prune": {"sparsity": 0.5}}}, "train.lora: .* conflicts with deep_compression"),
])
def test_lora_recovery_combinations_that_cannot_work_are_named(tmp_path, extra, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(_lora_recipe(tmp_path, tmp_path / "teacher", **extra))


def test_lora_section_rejects_unknown_keys(tmp_path):
    tree = _lora_recipe(tmp_path, tmp_path / "teacher")
    tree["train"]["lora"]["rank"] = 8
    with pytest.raises(RecipeError, match="rank"):
        validate_recipe(tree)


def test_target_modules_that_match_nothing_are_named(tiny_teacher_dir):
    student = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    with pytest.raises(RecipeError, match=r"train.lora.target_modules: \['q_proj'\] match no module"):
        prepare_lora_student(student, LoraRecoveryConfig(target_modules=["q_proj"]))


def test_minilm_adapter_configs_are_checked_against_the_real_model(tmp_path, minilm):
    """The real MiniLM (config only, no weights read): its own LoRA targets pass, a Llama's do not."""
    from distilkit.models.teacher_adapters import adapter_problems

    def adapter(targets) -> str:
        folder = tmp_path / "-".join(targets)
        LoraConfig(r=8, lora_alpha=16, target_modules=targets).save_pretrained(str(folder))
        return str(folder)

    assert adapter_problems(adapter(["query", "value", "dense"]), str(minilm)) == []
    assert adapter_problems(adapter(["q_proj", "v_proj"]), str(minilm))


@pytest.mark.parametrize("where", ["train", "teacher"])
def test_preflight_names_lora_targets_the_teacher_does_not_have(tmp_path, tiny_teacher_dir, where):
    tree = _lora_recipe(tmp_path, tiny_teacher_dir)
    if where == "train":
        tree["train"]["lora"]["target_modules"] = ["q_proj", "v_proj"]
        key = "train.lora.target_modules"
    else:
        del tree["train"]["lora"]
        tree["teacher"]["finetune"] = {"lora": {"target_modules": ["q_lin"]}}
        key = "teacher.finetune.lora.target_modules"
    with pytest.raises(RecipeError, match=rf"r.yaml: {key}: .* match no module of teacher.model"):
        preflight(validate_recipe(tree), "r.yaml")
    preflight(validate_recipe(_lora_recipe(tmp_path, tiny_teacher_dir)), "r.yaml")  # the defaults match BERT


def test_a_lora_run_resumes_from_its_checkpoint(tmp_path, tiny_teacher_dir):
    """Checkpoints hold the adapters (their keys sit beside the frozen weights); a resumed run continues them."""
    tree = _lora_recipe(tmp_path, tiny_teacher_dir, quantize={"linear": "int4", "qat": True, "backend": "int_mm"})
    run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    (checkpoint,) = sorted((out / "checkpoints").glob("step-*"))[-1:]
    saved = load_file(str(next(checkpoint.glob("model*.safetensors"))))
    assert any(k.endswith("lora_B.weight") for k in saved)
    tree["train"].update(epochs=2, resume_from="latest")
    metrics = run(validate_recipe(tree))
    assert [r["epoch"] for r in metrics["history"]] == [0, 1]
    assert (out / "model" / ADAPTER_DIR / "adapter_config.json").is_file()
    reloaded, _ = load_saved(out / "model")
    assert any(hasattr(m, "lora_A") for m in reloaded.modules())
