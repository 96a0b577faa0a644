"""Resume: a run killed with SIGKILL and resumed ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .test_distill import tiny_recipe


def resume_recipe(tmp_path: Path, teacher: Path, name: str) -> dict:
    tree = tiny_recipe(tmp_path, teacher, train={"epochs": 3, "checkpoint_every": 4, "keep_checkpoints": 10,
                                                 "record_batch_ids": True, "grad_accum": 2})
    tree["output_dir"] = str(tmp_path / name)
    tree["measure"] = {"latency": False}
    return tree


def final_weights(out: Path) -> str:
    return json.loads((out / "logs" / "rank-0.json").read_text())["weights"]


def test_resume_from_mid_epoch_checkpoint_matches_uninterrupted(tmp_path, tiny_teacher_dir):
    reference = resume_recipe(tmp_path, tiny_teacher_dir, "uninterrupted")
    ref_metrics = run(validate_recipe(reference))
    ref_out = Path(reference["output_dir"])
    checkpoints = sorted(p.name for p in (ref_out / "checkpoints").glob("step-*"))
    # 160 examples / 16 = 10 batches, grad_accum 2 -> 5 steps an epoch: step 4 is mid-epoch.
    assert "step-00000004" in checkpoints and "step-00000015" in checkpoints

    resumed = resume_recipe(tmp_path, tiny_teacher_dir, "resumed")
    resumed["train"]["resume_from"] = str(ref_out / "checkpoints" / "step-00000004")
    metrics = run(validate_recipe(resumed))
    assert final_weights(Path(resumed["output_dir"])) == final_weights(ref_out)
    assert metrics["history"] == ref_metrics["history"]
    # The resumed run trained only on what was left: 3 epochs x 10 batches x 16, minus 4 steps x 2 x 16.
    ids = json.loads((Path(resumed["output_dir"]) / "logs" / "rank-0.json").read_text())["ids"]
    assert len(ids) == 3 * 160 - 4 * 2 * 16


def test_sigkill_then_resume_latest(tmp_path, tiny_teacher_dir):
    reference = resume_recipe(tmp_path, tiny_teacher_dir, "reference")
    run(validate_recipe(reference))

    victim = resume_recipe(tmp_path, tiny_teacher_dir, "victim")
    path = tmp_path / "victim.yaml"
    path.write_text(yaml.safe_dump(victim))
    out = Path(victim["output_dir"])
    proc = subprocess.Popen([sys.executable, "-m", "distilkit", "run", str(path)], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (out / "checkpoints" / "step-00000004").is_dir():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert (out / "checkpoints" / "step-00000004").is_dir()

    victim["train"]["resume_from"] = "latest"
    run(validate_recipe(victim))
    assert final_weights(out) == final_weights(Path(reference["output_dir"]))
    assert not list(out.glob(".*.tmp")) and not list((out / "checkpoints").glob(".*.tmp"))
