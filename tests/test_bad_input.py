"""Bad input (issue 17): mutated GLUE files and hypothesis-mutated recipes each end in a named error or in
something that runs -- never a raw traceback, never a silent empty run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distilkit.core.errors import DistilkitError
from distilkit.data.batches import make_collate
from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, encode_bilstm
from distilkit.models.transformer import encode_transformer
from distilkit.run.pipeline_config import is_pipeline, validate_pipeline
from distilkit.run.preflight import preflight
from distilkit.run.recipe_io import dump_recipe, validate_recipe

from .fault_matrix import data_cases, must_fail

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))
CASES = data_cases()


@pytest.fixture(scope="module")
def exercise(tiny_tokenizer_dir):
    """Encode valid rows for both student kinds and run a tiny BiLSTM on every batch (pairs included)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    models = {pair: BiLSTMForSequenceClassification(BiLSTMConfig(
        vocab_size=len(tokenizer), embedding_dim=8, hidden_size=4, mlp_hidden_size=4, num_labels=3,
        is_pair=pair)).eval() for pair in (False, True)}

    def run(rows: list[dict], task) -> None:
        assert rows, "a valid split must hold examples"
        for encode in (encode_bilstm, encode_transformer):
            collate = make_collate(encode, tokenizer, 32, task.problem_type)
            for start in range(0, len(rows), 16):
                batch = collate(rows[start:start + 16])
                if encode is encode_bilstm:
                    with torch.no_grad():
                        model = models["input_ids_b" in batch]
                        logits = model(**{k: v for k, v in batch.items() if k.startswith(("input_ids", "attention"))}).logits
                    assert torch.isfinite(logits).all()
    return run


def test_the_matrix_is_big_enough():
    assert len(CASES) >= 150 and len({c.mutation.name for c in CASES}) == 14


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_mutated_file_gives_a_named_error_or_valid_rows(case, tmp_path, exercise):
    from .fault_matrix import check

    outcome, detail = check(case, tmp_path, exercise)
    if must_fail(case):
        assert outcome == "named_error", f"{case.name} was accepted: {detail}"


# --------------------------------------------------------------------------------------- recipe mutations
def _paths(tree, prefix=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=True),
                   st.text(max_size=12), st.lists(st.integers(-3, 40), max_size=3),
                   st.dictionaries(st.text(max_size=6), st.integers(), max_size=2),
                   st.sampled_from(["minilm", "pca", "uniform", "int8", "bnb8", "kl", "mse", "-1", "1e9", "",
                                    "my_pkg.mod:Thing", "/no/such/dir", "latest"]))


@st.composite
def mutated_recipe(draw):
    path = draw(st.sampled_from(RECIPES))
    tree = yaml.safe_load(path.read_text())
    paths = list(_paths(tree))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths))
        if draw(st.booleans()):  # an unknown key next to a real one
            where = (*where[:-1], draw(st.sampled_from(["epocs", "lr_rate", "kind2", "dir_", "x"])))
        node = tree
        for part in where[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[where[-1]] = draw(VALUES)
    return path, tree


OUTCOMES: dict[str, int] = {"named_error": 0, "valid": 0}


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(mutated_recipe())
def check_mutated_recipe(case):
    path, tree = case
    try:
        if is_pipeline(tree):
            validate_pipeline(tree, str(path))
        else:
            recipe = validate_recipe(tree, str(path))
            assert validate_recipe(yaml.safe_load(dump_recipe(recipe)), "dump") is not None  # round trip
            preflight(recipe, str(path))
    except DistilkitError as exc:
        assert str(path) in str(exc) or "dump" in str(exc), exc
        OUTCOMES["named_error"] += 1
        return
    OUTCOMES["valid"] += 1


def test_mutated_recipe_gives_a_named_error_or_a_valid_recipe(record_property):
    """Up to 300 hypothesis examples, each a named error or a valid recipe. The examples that passed go into the junit
    report (``hypothesis_examples_passed``), where scripts/bench_reliability.py counts them as cases, and both
    outcomes must occur: mutations that are all rejected (or all accepted) would test one path only."""
    OUTCOMES.update(named_error=0, valid=0)
    try:
        check_mutated_recipe()
    finally:  # a failure too reports what ran before it
        record_property("hypothesis_examples_passed", sum(OUTCOMES.values()))
    assert OUTCOMES["named_error"] > 0 and OUTCOMES["valid"] > 0, OUTCOMES
