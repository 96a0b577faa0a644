"""The shipped BiLSTM recipes state their size, and the statement is the model they build (issue 18)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from distilkit.core.measure import count_parameters
from distilkit.data.tasks import load_task
from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification

ROOT = Path(__file__).resolve().parent.parent
TASKS = sorted(p.name for p in (ROOT / "recipes" / "glue").iterdir())


@pytest.mark.parametrize("task", TASKS)
def test_bilstm_recipe_states_the_size_it_builds(task):
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_glue_recipes import bilstm_params

    recipe = yaml.safe_load((ROOT / "recipes" / "glue" / task / "bert-large-to-bilstm.yaml").read_text())
    student, spec = recipe["student"], load_task(recipe["task"])
    model = BiLSTMForSequenceClassification(BiLSTMConfig(
        vocab_size=student["vocab"]["max_tokens"], embedding_dim=student["embedding_dim"],
        hidden_size=student["hidden_size"], mlp_hidden_size=student["mlp_hidden_size"],
        num_labels=spec.num_labels, is_pair=spec.is_pair))
    params = count_parameters(model)
    assert params == bilstm_params(task) <= 10_000_000
    stated = float(re.search(r"at most ([\d.]+)M parameters in all", recipe["description"]).group(1))
    assert stated == round(params / 1e6, 2)
    assert student["init_embeddings_from_teacher"] == "pca" and student["embedding_dim"] == 300
