"""Teachers: Hugging Face checkpoints, plug-ins by dotted path, and the errors users hit."""

from __future__ import annotations

import textwrap

import pytest
import torch

from distilkit.core.errors import TeacherError
from distilkit.core.plugins import is_plugin_path
from distilkit.models.model_names import TEACHER_ALIASES, resolve_model_name
from distilkit.models.teachers import HFTeacher, load_hf_teacher, load_plugin_teacher

PLUGIN = textwrap.dedent('''
    import torch
    from transformers import AutoModelForSequenceClassification

    class KeywordTeacher:
        num_labels = 2
        def __init__(self, weight=3.0):
            self.weight = weight
        def __call__(self, texts, text_pairs=None):
            good = torch.tensor([float("good" in t) for t in texts])
            return torch.stack([-self.weight * good, self.weight * good], dim=1)
        def fingerprint(self):
            return f"keyword-{self.weight}"

    class NoFingerprint:
        num_labels = 2
        def __call__(self, texts, text_pairs=None):
            return torch.zeros(len(texts), 2)

    class ModuleTeacher(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(1, 3)
        def forward(self, texts, text_pairs=None):
            return self.linear(torch.tensor([[float(len(t))] for t in texts]))

    def hf_model(path):
        return AutoModelForSequenceClassification.from_pretrained(path)
''')


@pytest.fixture()
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "my_teachers.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_teachers"


def test_plugin_detection():
    assert is_plugin_path("my_pkg.teachers:MyTeacher")
    assert not is_plugin_path("bert-base-uncased")
    assert not is_plugin_path("yoshitomo-matsubara/bert-large-uncased-sst2")


def test_plugin_teacher_few_lines(plugin_module):
    teacher = load_plugin_teacher(f"{plugin_module}:KeywordTeacher", {"weight": 2.0}, num_labels=2)
    logits = teacher(["a good one", "meh"])
    assert logits.tolist() == [[-2.0, 2.0], [0.0, 0.0]]
    assert teacher.fingerprint() == "keyword-2.0"


def test_plugin_errors(plugin_module):
    with pytest.raises(TeacherError, match="cannot import module 'nope_pkg'"):
        load_plugin_teacher("nope_pkg:T", {}, num_labels=2)
    with pytest.raises(TeacherError, match="has no attribute 'Missing'"):
        load_plugin_teacher(f"{plugin_module}:Missing", {}, num_labels=2)
    with pytest.raises(TeacherError, match="teacher.kwargs"):
        load_plugin_teacher(f"{plugin_module}:KeywordTeacher", {"bogus": 1}, num_labels=2)
    with pytest.raises(TeacherError, match="predicts 2 labels but the task has 3"):
        load_plugin_teacher(f"{plugin_module}:KeywordTeacher", {}, num_labels=3)
    with pytest.raises(TeacherError, match="must define fingerprint"):
        load_plugin_teacher(f"{plugin_module}:NoFingerprint", {}, num_labels=2)
    # Without a cache no fingerprint is needed.
    assert load_plugin_teacher(f"{plugin_module}:NoFingerprint", {}, num_labels=2, require_fingerprint=False)


def test_module_plugin_is_fingerprinted_by_weights(plugin_module):
    teacher = load_plugin_teacher(f"{plugin_module}:ModuleTeacher", {}, num_labels=3)
    before = teacher.fingerprint()
    with torch.no_grad():
        teacher.linear.weight.add_(1.0)
    assert teacher.fingerprint() != before


def test_plugin_returning_hf_model(plugin_module, tiny_teacher_dir):
    with pytest.raises(TeacherError, match="name its tokenizer"):
        load_plugin_teacher(f"{plugin_module}:hf_model", {"path": str(tiny_teacher_dir)}, num_labels=2)
    teacher = load_plugin_teacher(f"{plugin_module}:hf_model", {"path": str(tiny_teacher_dir)}, num_labels=2,
                                  tokenizer=str(tiny_teacher_dir))
    assert isinstance(teacher, HFTeacher) and teacher(["good"]).shape == (1, 2)


def test_hf_teacher_num_labels_mismatch(tiny_teacher_dir):
    with pytest.raises(TeacherError, match="predicts 2 labels but the task has 3"):
        load_hf_teacher(str(tiny_teacher_dir), num_labels=3, problem_type="single_label_classification")


def test_hf_teacher_pairs_and_batch_independence(tiny_teacher_dir):
    teacher = load_hf_teacher(str(tiny_teacher_dir), num_labels=2, problem_type="single_label_classification")
    both = teacher(["a good movie", "bad"], ["yes", "no it was not"])
    alone = teacher(["bad"], ["no it was not"])
    # Padding in a batch must not change an example's logits.
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(teacher(["bad"], ["no it was not"]), teacher(["bad"]))


def test_bare_encoder_needs_finetune(minilm):
    with pytest.raises(TeacherError, match="no sequence-classification head"):
        load_hf_teacher(str(minilm), num_labels=2, problem_type="single_label_classification")
    teacher = load_hf_teacher(str(minilm), num_labels=2, problem_type="single_label_classification",
                              allow_new_head=True)
    assert teacher.num_labels == 2


def test_alias_and_missing_model():
    assert set(TEACHER_ALIASES) == {"minilm"}
    assert resolve_model_name("not-an-alias") == "not-an-alias"
    with pytest.raises(TeacherError, match="cannot load"):
        load_hf_teacher("/nonexistent/teacher", num_labels=2, problem_type="single_label_classification")
