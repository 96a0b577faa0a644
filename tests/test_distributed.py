"""A real two-process run on CPU (gloo): ranks see different data and end with identical weights."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .test_distill import tiny_recipe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_run(tmp_path, tiny_teacher_dir):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate CLI not on PATH")
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, train={"epochs": 2, "record_batch_ids": True},
                       measure={"latency": False})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    # `accelerate launch --cpu --num_processes 2` starts ONE process; this is how to get two gloo ranks.
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--main_process_port", str(free_port()), "-m", "distilkit", "run", str(path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    out = Path(tree["output_dir"])
    ranks = [json.loads((out / "logs" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    ids0, ids1 = ranks[0]["ids"], ranks[1]["ids"]
    # Each rank trained on its own half: 160 examples, 2 epochs -> 160 ids per rank, disjoint within an epoch.
    assert len(ids0) == len(ids1) == 160
    assert set(ids0[:80]).isdisjoint(ids1[:80])
    assert set(ids0[:80]) | set(ids1[:80]) == set(ids0[80:]) | set(ids1[80:])
    assert len(set(ids0[:80]) | set(ids1[:80])) == 160
    # Gradients were all-reduced: both replicas end with bit-identical weights.
    assert ranks[0]["weights"] == ranks[1]["weights"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["num_processes"] == 2
    assert (out / "model" / "model.safetensors").is_file()
