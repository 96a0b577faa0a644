"""Training checkpoints of the recipe program: where training is (:class:`Progress`), saving one atomically
(:func:`save_checkpoint`) and resuming from one (:func:`resume`).

A checkpoint is accelerate's ``save_state`` folder (weights, optimizer, scheduler, RNG states and the registered
:class:`Progress`), written under a temporary name and renamed into ``output_dir/checkpoints/step-<n>`` only once
complete, so a crash never leaves a half-written checkpoint that looks finished.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from distilkit.core.errors import RecipeError


class Progress:
    """Where training is; saved in every checkpoint so a resumed run continues exactly."""

    def __init__(self):
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.best, self.best_epoch, self.history = None, None, []

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint under ``out/checkpoints`` (temporaries are never complete)."""
    found = sorted((out / "checkpoints").glob("step-*"))
    return found[-1] if found else None


def save_checkpoint(accelerator: Accelerator, out: Path, progress: Progress, keep: int) -> None:
    """Save model, optimizer, scheduler, RNG states and progress; publish atomically; keep the newest."""
    root = out / "checkpoints"
    final, tmp = root / f"step-{progress.global_step:08d}", root / f".step-{progress.global_step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(root.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def resume(accelerator: Accelerator, out: Path, resume_from: str) -> Path:
    """Restore everything :func:`save_checkpoint` saved (the registered :class:`Progress` included) from
    ``train.resume_from``: a checkpoint folder, or ``latest`` for the newest under ``out/checkpoints``.

    Returns:
        The checkpoint restored.

    Raises:
        RecipeError: there is no such checkpoint, or it is damaged (a truncated or zeroed file), named with
            what to do instead of a torch traceback.
    """
    ckpt = latest_checkpoint(out) if resume_from == "latest" else Path(resume_from)
    if ckpt is None or not ckpt.is_dir():
        raise RecipeError(f"train.resume_from: no checkpoint at '{resume_from}' (looked in {out / 'checkpoints'})")
    try:
        accelerator.load_state(str(ckpt))
    except Exception as exc:
        raise RecipeError(f"train.resume_from: checkpoint {ckpt} is damaged ({type(exc).__name__}: "
                          f"{str(exc).strip()[:200]}); resume from an older one under {out / 'checkpoints'} "
                          "or start over without resume_from") from None
    return ckpt
