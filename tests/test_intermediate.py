"""Intermediate-layer distillation (issue 24): each loss against a hand computation, layer maps, the attention
probabilities, projections saved or dropped, the two-stage schedule, end-to-end runs (logit cache on and off)
and the named errors of bad recipes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from distilkit.core.errors import RecipeError
from distilkit.methods.intermediate.config import IntermediateConfig
from distilkit.methods.intermediate.hooks import IntermediateHooks, first_stage_steps
from distilkit.methods.intermediate.internals import PROBS_ATTENTION, attention_function, teacher_forward
from distilkit.methods.intermediate.layer_map import resolve_layer_map, uniform_pairs
from distilkit.methods.intermediate.losses import (
    attention_kl,
    cls_distance,
    hidden_cosine,
    hidden_mse,
    value_relation_kl,
)
from distilkit.methods.intermediate.projection import PROJECTION_MODULE, saved_projections
from distilkit.models.teachers import HFTeacher
from distilkit.models.transformer import build_transformer_student, uniform_layers
from distilkit.run.distill import run
from distilkit.run.preflight import preflight
from distilkit.run.recipe_io import validate_recipe

from .conftest import FIXTURES, make_tiny_teacher

MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def real_positions(mask):
    return [(b, t) for b in range(mask.shape[0]) for t in range(mask.shape[1]) if mask[b, t]]


# ---------------------------------------------------------------- losses against hand computations


def test_hidden_mse_and_cosine_by_hand():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    positions = real_positions(MASK)
    squared = sum(float(((s[b, i] - t[b, i]) ** 2).sum()) for b, i in positions)
    assert hidden_mse(s, t, MASK).item() == pytest.approx(squared / (len(positions) * 4), rel=1e-6)
    cosines = [float(s[b, i] @ t[b, i]) / (float(s[b, i].norm()) * float(t[b, i].norm())) for b, i in positions]
    assert hidden_cosine(s, t, MASK).item() == pytest.approx(sum(1 - c for c in cosines) / len(positions), rel=1e-6)
    # Padding does not count: changing the student's padded positions changes nothing.
    s2 = s.clone()
    s2[1, 3:] += 100
    assert hidden_mse(s2, t, MASK).item() == pytest.approx(hidden_mse(s, t, MASK).item())


def test_cls_distance_by_hand():
    torch.manual_seed(1)
    s, t = torch.randn(3, 6), torch.randn(3, 6)
    by_hand = sum(float(((s[b] / s[b].norm() - t[b] / t[b].norm()) ** 2).sum()) for b in range(3)) / 3
    assert cls_distance(s, t).item() == pytest.approx(by_hand, rel=1e-6)
    assert cls_distance(2.5 * t, t).item() == pytest.approx(0.0, abs=1e-6)  # scale-free (normalised)


def masked_rows(batch, heads, mask, seed):
    """Random attention-like rows: a softmax over the real keys, 0 on padded keys."""
    torch.manual_seed(seed)
    scores = torch.randn(batch, heads, mask.shape[1], mask.shape[1])
    scores = scores.masked_fill((mask == 0)[:, None, None, :], float("-inf"))
    return scores.softmax(-1)


def kl_by_hand(t_rows, s_rows, mask):
    """mean over heads and real queries of sum over real keys t log(t / s)."""
    total, count = 0.0, 0
    for b, q in real_positions(mask):
        for h in range(t_rows.shape[1]):
            keys = [k for k in range(mask.shape[1]) if mask[b, k]]
            total += sum(float(t_rows[b, h, q, k]) * math.log(float(t_rows[b, h, q, k]) / float(s_rows[b, h, q, k]))
                         for k in keys)
            count += 1
    return total / count


def test_attention_kl_by_hand():
    t_rows, s_rows = masked_rows(2, 3, MASK, 2), masked_rows(2, 3, MASK, 3)
    assert attention_kl(t_rows, s_rows, MASK).item() == pytest.approx(kl_by_hand(t_rows, s_rows, MASK), rel=1e-5)
    assert attention_kl(t_rows, t_rows, MASK).item() == pytest.approx(0.0, abs=1e-6)


def test_attention_kl_with_other_head_counts_compares_head_means():
    t_rows, s_rows = masked_rows(2, 4, MASK, 4), masked_rows(2, 2, MASK, 5)
    by_hand = kl_by_hand(t_rows.mean(1, keepdim=True), s_rows.mean(1, keepdim=True), MASK)
    assert attention_kl(t_rows, s_rows, MASK).item() == pytest.approx(by_hand, rel=1e-5)


def relation_by_hand(values, mask, heads):
    """VR[b][h][q][k] over the real keys only, with explicit exp/sum."""
    batch, seq, width = values.shape
    size = width // heads
    out = torch.zeros(batch, heads, seq, seq)
    for b in range(batch):
        keys = [k for k in range(seq) if mask[b, k]]
        for h in range(heads):
            v = values[b, :, h * size:(h + 1) * size]
            for q in range(seq):
                logits = [float(v[q] @ v[k]) / math.sqrt(size) for k in keys]
                top = max(logits)
                z = sum(math.exp(x - top) for x in logits)
                for k, x in zip(keys, logits):
                    out[b, h, q, k] = math.exp(x - top) / z
    return out


def test_value_relation_kl_by_hand_with_different_widths():
    torch.manual_seed(6)
    teacher_values, student_values = torch.randn(2, 5, 12), torch.randn(2, 5, 6)  # 3 relation heads of 4 and 2
    by_hand = kl_by_hand(relation_by_hand(teacher_values, MASK, 3), relation_by_hand(student_values, MASK, 3), MASK)
    assert value_relation_kl(teacher_values, student_values, MASK, 3).item() == pytest.approx(by_hand, rel=1e-5)
    with pytest.raises(ValueError, match="relation heads"):
        value_relation_kl(teacher_values, student_values, MASK, 5)


# ---------------------------------------------------------------- layer maps


def test_layer_maps():
    assert uniform_pairs(2, 6) == [(0, 2), (1, 5)]  # TinyBERT's g(m) = 3m, 0-based
    for student, teacher in ((2, 6), (4, 12), (3, 4), (6, 6), (8, 4)):
        assert [t for _, t in uniform_pairs(student, teacher)] == uniform_layers(teacher, student)
    assert resolve_layer_map("uniform", 2, 6, "k") == [(0, 2), (1, 5)]
    assert resolve_layer_map("last", 2, 6, "k") == [(1, 5)]
    assert resolve_layer_map([[0, 1], [1, 3]], 2, 6, "k") == [(0, 1), (1, 3)]
    with pytest.raises(RecipeError, match=r"intermediate.hidden.layer_map: pair \[1, 6\] names teacher layer 6 "
                                          r"but the teacher has 6 layers \(valid: 0..5\)"):
        resolve_layer_map([[1, 6]], 2, 6, "intermediate.hidden.layer_map")
    with pytest.raises(RecipeError, match="student layer 2 but the student has 2 layers"):
        resolve_layer_map([[2, 0]], 2, 6, "intermediate.attention.layer_map")


# ---------------------------------------------------------------- tiny models


def tiny_bert(layers: int, width: int, heads: int, seed: int, vocab: int = 40,
              sharpen: float = 1.0) -> BertForSequenceClassification:
    """A random BERT classifier; ``sharpen`` scales queries, keys and values (a random model attends almost uniformly,
    its value relations are as flat, and KLs near 1e-6 would test float32 rounding rather than the formula)."""
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * width, max_position_embeddings=32, num_labels=2))
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.self.query.weight.mul_(sharpen)
            layer.attention.self.key.weight.mul_(sharpen)
            layer.attention.self.value.weight.mul_(sharpen)
    return model


def tiny_batch(seed: int = 7, vocab: int = 40) -> dict:
    torch.manual_seed(seed)
    return {"input_ids": torch.randint(5, vocab, (2, 5)), "attention_mask": MASK.clone(),
            "token_type_ids": torch.zeros(2, 5, dtype=torch.long)}


def test_attention_probabilities_are_the_softmax_before_dropout():
    model = tiny_bert(1, 8, 2, seed=0)
    batch = tiny_batch()
    with torch.no_grad():
        reference = model.eval()(**batch).logits  # sdpa
        with attention_function(model, PROBS_ATTENTION):
            out = model(**batch, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(out.logits, reference, atol=1e-5, rtol=1e-5)  # the same attention
    # By hand from the layer's own query and key projections: softmax(q k^T / sqrt(d)) over the real keys.
    attention = model.bert.encoder.layer[0].attention.self
    x = out.hidden_states[0]
    q = attention.query(x).view(2, 5, 2, 4).transpose(1, 2)
    k = attention.key(x).view(2, 5, 2, 4).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2) / 2.0).masked_fill((MASK == 0)[:, None, None, :], float("-inf"))
    torch.testing.assert_close(out.attentions[0], scores.softmax(-1), atol=1e-5, rtol=1e-5)
    # In training, dropout reaches the output but not the returned rows: they still sum to 1.
    model.config.attention_probs_dropout_prob = 0.5
    attention.dropout.p = 0.5
    with attention_function(model.train(), PROBS_ATTENTION):
        rows = model(**batch, output_attentions=True).attentions[0]
    torch.testing.assert_close(rows.sum(-1), torch.ones(2, 2, 5))
    assert model.config._attn_implementation == "sdpa"  # restored


def hooks_for(cfg: dict, teacher_model, student, tokenizer=None) -> IntermediateHooks:
    hooks = IntermediateHooks(IntermediateConfig.model_validate(cfg))
    hooks.attach_teacher(HFTeacher(teacher_model, tokenizer))
    hooks.prepare_student(student)
    return hooks


def test_hooks_compute_every_term_as_by_hand():
    teacher, student = tiny_bert(4, 12, 3, seed=1, sharpen=6), tiny_bert(2, 6, 2, seed=2, sharpen=6)  # 3 relation heads divide both
    cfg = {"hidden": {"weight": 2.0}, "attention": {"weight": 0.5, "layer_map": [[0, 1], [1, 3]]},
           "value_relation": {}, "embedding": {}, "cls": {"layer_map": "last"}}
    hooks = hooks_for(cfg, teacher, student.train())
    assert hooks.maps["hidden"] == [(0, 1), (1, 3)] and hooks.relation_heads == 3
    assert set(dict(student.named_children())[PROJECTION_MODULE]) == {"hidden", "embedding", "cls"}
    batch = tiny_batch()
    torch.manual_seed(0)
    outputs = student(**batch, **hooks.forward_kwargs())
    terms = hooks.extra_losses(student, batch=batch, outputs=outputs)
    assert set(terms) == {"hidden", "attention", "value_relation", "embedding", "cls"}

    # Independently: the teacher in eval mode, its states and value vectors read with plain calls.
    values = {}
    handle = teacher.bert.encoder.layer[-1].attention.self.value.register_forward_hook(
        lambda m, i, o: values.setdefault("t", o))
    teacher.eval().set_attn_implementation("eager")
    with torch.no_grad():
        t_out = teacher(**batch, output_hidden_states=True, output_attentions=True)
    handle.remove()
    teacher.set_attn_implementation("sdpa")
    proj = dict(student.named_children())[PROJECTION_MODULE]
    s_h, t_h = outputs.hidden_states, t_out.hidden_states
    positions = real_positions(MASK)

    def mse(a, b):
        return sum(float(((a[x, y] - b[x, y]) ** 2).sum()) for x, y in positions) / (len(positions) * 12)

    with torch.no_grad():
        hidden = 2.0 * (mse(proj["hidden"](s_h[1]), t_h[2]) + mse(proj["hidden"](s_h[2]), t_h[4])) / 2
        embedding = mse(proj["embedding"](s_h[0]), t_h[0])
        s_cls, t_cls = proj["cls"](s_h[2][:, 0]), t_h[4][:, 0]
        cls = sum(float(((s_cls[b] / s_cls[b].norm() - t_cls[b] / t_cls[b].norm()) ** 2).sum()) for b in range(2)) / 2
        def means(a):  # 3 teacher heads, 2 student heads: the head means are compared
            return a.mean(1, keepdim=True)

        attention = 0.5 * (kl_by_hand(means(t_out.attentions[1]), means(outputs.attentions[0]), MASK)
                           + kl_by_hand(means(t_out.attentions[3]), means(outputs.attentions[1]), MASK)) / 2
        s_values = student.bert.encoder.layer[-1].attention.self.value(s_h[1])  # the last layer's input
        relation = kl_by_hand(relation_by_hand(values["t"], MASK, 3), relation_by_hand(s_values, MASK, 3), MASK)
    # The student's value vectors are recomputed above from its last layer's input (dropout is not in the value
    # projection), so they equal the recorded ones.
    for name, expected in (("hidden", hidden), ("embedding", embedding), ("cls", cls), ("attention", attention),
                           ("value_relation", relation)):
        assert terms[name].item() == pytest.approx(expected, rel=1e-4), name
    sum(terms.values()).backward()
    assert proj["hidden"].weight.grad is not None and student.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())  # the teacher never trains


def test_layer_maps_fit_a_bottom_initialised_student():
    # The truncated-teacher baseline (init_from_teacher_layers: bottom) keeps every layer map valid: maps pair
    # layers by depth, whichever teacher layers the student started from.
    teacher = tiny_bert(4, 12, 3, seed=1)
    student = build_transformer_student(teacher_config=teacher.config, num_labels=2,
                                        problem_type="single_label_classification", num_layers=2,
                                        init_from_teacher_layers="bottom", teacher_model=teacher)
    torch.testing.assert_close(student.bert.encoder.layer[1].output.dense.weight,
                               teacher.bert.encoder.layer[1].output.dense.weight)
    hooks = hooks_for({"hidden": {}, "attention": {"layer_map": "last"}, "cls": {"layer_map": [[0, 0], [1, 1]]}},
                      teacher, student.train())
    assert hooks.maps == {"hidden": [(0, 1), (1, 3)], "attention": [(1, 3)], "cls": [(0, 0), (1, 1)]}


def test_two_stage_schedule():
    assert first_stage_steps(None, 100) == 0 and first_stage_steps(0.3, 100) == 30
    assert first_stage_steps(0.01, 10) == 1 and first_stage_steps(0.99, 10) == 9 and first_stage_steps(0.5, 1) == 0
    teacher, student = tiny_bert(2, 8, 2, seed=1), tiny_bert(1, 8, 2, seed=2)
    hooks = hooks_for({"hidden": {}, "stages": {"intermediate_fraction": 0.4}}, teacher, student.train())
    batch = tiny_batch()
    seen = []
    for step in range(10):
        weight = hooks.distillation_weight(step, 10)
        terms = hooks.extra_losses(student, batch=batch, outputs=student(**batch, **hooks.forward_kwargs()))
        seen.append((weight, sorted(terms), hooks.final_form(step, 10)))
    assert seen[:4] == [(0.0, ["hidden"], False)] * 4  # stage 1: intermediate only, no competing for best
    assert seen[4:] == [(1.0, [], True)] * 6  # stage 2: logits only, no teacher forward


@pytest.mark.parametrize("keep", [False, True])
def test_projection_saved_or_dropped(tmp_path, keep):
    teacher, student = tiny_bert(2, 12, 3, seed=1), tiny_bert(2, 8, 2, seed=2)
    hooks_for({"hidden": {}, "projection": "keep" if keep else "drop"}, teacher, student)
    assert any(n.startswith(PROJECTION_MODULE + ".hidden.") for n, _ in student.named_parameters())
    student.save_pretrained(tmp_path)
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    projected = {k for k in keys if k.startswith(PROJECTION_MODULE)}
    assert projected == ({f"{PROJECTION_MODULE}.hidden.weight", f"{PROJECTION_MODULE}.hidden.bias"} if keep else set())
    assert keys - projected == set(tiny_bert(2, 8, 2, seed=3).state_dict())  # the stock student, nothing missing
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    batch = tiny_batch()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, student.eval()(**batch).logits)
    found = saved_projections(tmp_path)
    if keep:
        torch.testing.assert_close(found["hidden"].weight, dict(student.named_children())[PROJECTION_MODULE]["hidden"].weight)
    else:
        assert found == {}


def test_no_projection_when_widths_match():
    teacher, student = tiny_bert(2, 8, 2, seed=1), tiny_bert(1, 8, 2, seed=2)
    hooks = hooks_for({"hidden": {}, "embedding": {}}, teacher, student)
    assert hooks.projected == [] and not hasattr(student, PROJECTION_MODULE)


def test_teacher_forward_leaves_the_teacher_as_it_was():
    teacher = tiny_bert(2, 8, 2, seed=1).eval()
    out, values = teacher_forward(teacher, tiny_batch(), hidden=True, attentions=True, values=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2 and values.shape == (2, 5, 8)
    assert teacher.config._attn_implementation == "sdpa" and not teacher.training
    assert not teacher.bert.encoder.layer[-1].attention.self.value._forward_hooks


# ---------------------------------------------------------------- end to end


def intermediate_recipe(tmp_path: Path, teacher: Path, intermediate: dict, **sections) -> dict:
    tree = {"task": "sst2", "output_dir": str(tmp_path / "run"),
            "data": {"dir": str(FIXTURES / "glue"), "max_train_examples": 64, "max_eval_examples": 32},
            "teacher": {"model": str(teacher), "max_length": 24, "batch_size": 32},
            "student": {"kind": "transformer", "max_length": 24, "num_layers": 2, "hidden_size": 16,
                        "num_attention_heads": 2, "intermediate_size": 32, "init_from_teacher_layers": None},
            "loss": {"kind": "kl", "temperature": 2.0},
            "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "log_every": 1, "sparse_embeddings": False},
            "cache": {"dir": str(tmp_path / "cache")}, "measure": {"latency": False},
            "intermediate": intermediate}
    for key, value in sections.items():
        tree[key] = {**tree.get(key, {}), **value}
    return tree


def logged(out: Path) -> list[dict]:
    lines = (out / "logs" / "train_log.jsonl").read_text().splitlines()
    return [rec for rec in map(json.loads, lines) if "train/loss" in rec]


ALL_TERMS = {"hidden": {}, "attention": {"layer_map": "uniform"}, "value_relation": {}, "embedding": {},
             "cls": {"weight": 0.5}}


@pytest.fixture(scope="module")
def teacher4(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("teacher4"), tiny_tokenizer_dir, num_layers=4)


@pytest.mark.parametrize("cache", [True, False])
def test_end_to_end_with_every_term(tmp_path, teacher4, cache):
    tree = intermediate_recipe(tmp_path, teacher4, ALL_TERMS, cache={"enabled": cache})
    preflight(validate_recipe(tree))
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    records = logged(out)
    for term in ("hidden", "attention", "value_relation", "embedding", "cls"):
        values = [r[f"train/{term}"] for r in records]
        assert len(values) == len(records) and all(math.isfinite(v) and v > 0 for v in values), term
    # The logit term is there too (from the cache, or from the live teacher without it).
    assert all(r["train/soft_kl"] > 0 for r in records)
    assert (tmp_path / "cache" / "teacher_logits").is_dir() == cache
    hidden = [r["train/hidden"] for r in records]
    assert sum(hidden[-2:]) < sum(hidden[:2]), "the student did not learn the teacher's hidden states"
    keys = set(load_file(str(out / "model" / "model.safetensors")))
    assert not any(k.startswith(PROJECTION_MODULE) for k in keys)  # dropped by default
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.hidden_size == 16
    assert metrics["student"]["metrics"]["accuracy"] >= 0


def test_end_to_end_two_stages(tmp_path, teacher4):
    tree = intermediate_recipe(tmp_path, teacher4, {"hidden": {}, "stages": {"intermediate_fraction": 0.5}},
                               student={"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64})
    run(validate_recipe(tree))
    records = logged(Path(tree["output_dir"]))
    first = [r for r in records if "train/hidden" in r]
    assert len(first) == len(records) // 2 and [r["step"] for r in first] == list(range(1, len(first) + 1))
    for r in first:  # stage 1: the logit loss weighs 0, so the loss is the intermediate term alone
        assert r["train/loss"] == pytest.approx(r["train/hidden"], rel=1e-5)
    assert all("train/hidden" not in r for r in records[len(first):])


# ---------------------------------------------------------------- bad input: named errors before training


def test_recipe_checks_name_the_keys(tmp_path, teacher4):
    base = intermediate_recipe(tmp_path, teacher4, {"attention": {}})
    bilstm = {**base, "student": {"kind": "bilstm", "max_length": 24}}
    with pytest.raises(RecipeError, match=r"intermediate: \['attention'\] means nothing with student.kind: \"bilstm\""):
        validate_recipe(bilstm)
    linear = {**base, "student": {"kind": "linear_attention", "max_length": 24}}
    with pytest.raises(RecipeError, match="intermediate.attention: conflicts with student.kind: \"linear_attention\""):
        validate_recipe(linear)
    validate_recipe({**linear, "intermediate": {"hidden": {}, "value_relation": {}}})  # values exist in linear layers
    with pytest.raises(RecipeError, match="intermediate: conflicts with student.vocab"):
        validate_recipe({**base, "student": {**base["student"], "vocab": {"max_tokens": 500}}})
    with pytest.raises(RecipeError, match="intermediate.*no term"):
        validate_recipe({**base, "intermediate": {"projection": "keep"}})
    with pytest.raises(RecipeError, match="intermediate.hidden.layer_map"):
        validate_recipe({**base, "intermediate": {"hidden": {"layer_map": [[0, -1]]}}})


def test_bottom_init_validates_with_layer_maps(tmp_path, teacher4):
    student = {"hidden_size": None, "num_attention_heads": None, "intermediate_size": None,
               "init_from_teacher_layers": "bottom"}
    tree = intermediate_recipe(tmp_path, teacher4, {"hidden": {}, "cls": {"layer_map": [[0, 0], [1, 1]]},
                                                    "attention": {"layer_map": "last"}}, student=student)
    recipe = validate_recipe(tree)
    assert recipe.student.init_from_teacher_layers == "bottom"
    preflight(recipe)
    with pytest.raises(RecipeError, match=r"pair \[1, 4\] names teacher layer 4"):
        preflight(validate_recipe({**tree, "intermediate": {"hidden": {"layer_map": [[1, 4]]}}}))


def test_preflight_names_layer_maps_and_relation_heads(tmp_path, teacher4):
    tree = intermediate_recipe(tmp_path, teacher4, {"hidden": {"layer_map": [[0, 1], [2, 4]]},
                                                    "cls": {"layer_map": [[1, 3]]},
                                                    "value_relation": {"relation_heads": 3}})
    with pytest.raises(RecipeError) as info:
        preflight(validate_recipe(tree), "r.yaml")
    message = str(info.value)
    assert "r.yaml: intermediate.hidden.layer_map: pair [2, 4] names student layer 2 but the student has 2 layers" in message
    assert "intermediate.hidden.layer_map: pair [2, 4] names teacher layer 4 but the teacher has 4 layers" in message
    assert "intermediate.cls" not in message  # [1, 3] fits
    assert "intermediate.value_relation.relation_heads: 3 does not divide the teacher's width 32" in message


@pytest.mark.parametrize("model_type, term, expected", [
    ("distilkit-bilstm", "hidden", "intermediate: teacher.model .* is a BiLSTM"),
    ("distilkit-linear-bert", "attention", "intermediate.attention: teacher.model .* has linear attention"),
])
def test_preflight_names_teachers_without_the_inside(tmp_path, teacher4, model_type, term, expected):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    config = json.loads((teacher4 / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (teacher / name).write_bytes((teacher4 / name).read_bytes())
    student = {"kind": "copy", "max_length": 24}
    tree = intermediate_recipe(tmp_path, teacher, {term: {}}, student=student)
    tree["student"] = student
    with pytest.raises(RecipeError, match=expected):
        preflight(validate_recipe(tree))


def test_linear_attention_student_is_refused_before_training(tmp_path, teacher4):
    """The hook's own check (a pipeline stage or a plug-in path around the recipe checks)."""
    teacher, student = tiny_bert(2, 8, 2, seed=1), tiny_bert(1, 8, 2, seed=2)
    student.config.model_type = "distilkit-linear-bert"
    with pytest.raises(RecipeError, match="intermediate.attention: the student has linear attention"):
        hooks_for({"attention": {}}, teacher, student)
    with pytest.raises(RecipeError, match="intermediate.value_relation.relation_heads: 3 does not divide"):
        hooks_for({"value_relation": {"relation_heads": 3}}, teacher, tiny_bert(1, 8, 2, seed=2))


def test_a_pipeline_stage_carries_the_section(tmp_path, teacher4):
    from distilkit.run.pipeline_config import stage_tree, validate_pipeline

    tree = intermediate_recipe(tmp_path, teacher4, {})
    pipeline = validate_pipeline({
        "task": "sst2", "output_dir": str(tmp_path / "pipe"), "data": tree["data"], "teacher": tree["teacher"],
        "stages": [{"name": "small", "student": tree["student"], "intermediate": {"hidden": {"layer_map": "last"}}},
                   {"name": "plain", "student": {"kind": "copy", "max_length": 24}}]})
    first, second = (validate_recipe(stage_tree(pipeline, i)) for i in range(2))
    assert first.intermediate.hidden.layer_map == "last" and second.intermediate is None


def test_resume_restores_the_projection(tmp_path, teacher4):
    """A checkpoint holds the projection with the student (it is a student submodule), so a resumed run
    continues it instead of starting a fresh one."""
    tree = intermediate_recipe(tmp_path, teacher4, {"hidden": {}}, train={"epochs": 1, "checkpoint_every": 2})
    run(validate_recipe(tree))
    checkpoint = sorted((Path(tree["output_dir"]) / "checkpoints").glob("step-*"))[-1]
    state = load_file(str(checkpoint / "model.safetensors"))
    assert f"{PROJECTION_MODULE}.hidden.weight" in state
    resumed = {**tree, "train": {**tree["train"], "epochs": 2, "resume_from": "latest"}}
    run(validate_recipe(resumed))
    assert logged(Path(tree["output_dir"]))[-1]["train/hidden"] > 0


def test_linear_pruned_and_distilbert_students():
    """Value relations need only the value projection (linear-attention students have it); a pruned student's
    layers keep other head counts (head means compared); DistilBERT names its value projection v_lin."""
    import copy

    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from distilkit.methods.linear_attention.swap import swap_attention
    from distilkit.methods.pruning.structural import prune_heads

    teacher, batch = tiny_bert(2, 8, 2, seed=1, sharpen=6), tiny_batch()
    linear = swap_attention(copy.deepcopy(teacher), "elu").train()
    pruned = prune_heads(copy.deepcopy(teacher), {0: [0]}).train()
    torch.manual_seed(3)
    distil_teacher = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=40, dim=8, n_layers=2, n_heads=2, hidden_dim=16, max_position_embeddings=32))
    distil = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=40, dim=8, n_layers=1, n_heads=2, hidden_dim=16, max_position_embeddings=32)).train()
    no_types = {k: v for k, v in batch.items() if k != "token_type_ids"}
    cases = [(teacher, linear, {"hidden": {}, "value_relation": {}}, batch),
             (teacher, pruned, {"attention": {"layer_map": "uniform"}, "value_relation": {"relation_heads": 1}}, batch),
             (distil_teacher, distil, {"hidden": {}, "attention": {}, "value_relation": {}}, no_types)]
    for source, student, cfg, inputs in cases:
        hooks = hooks_for(cfg, source, student)
        terms = hooks.extra_losses(student, batch=inputs, outputs=student(**inputs, **hooks.forward_kwargs()))
        assert set(terms) == set(cfg) and all(torch.isfinite(t) and t > 0 for t in terms.values()), terms
    assert [layer.attention.self.value.out_features for layer in pruned.bert.encoder.layer] == [4, 8]
