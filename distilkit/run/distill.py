"""Distil a GLUE teacher into a BiLSTM or small-transformer student on teacher logits.

This is a *recipe program*: the typed config is :class:`distilkit.run.schema.Recipe`, and :func:`run` reads
top to bottom as the experiment does — data, teacher, cached teacher logits, student, training loop,
evaluation, measurement. There is no trainer class and no callback system; copy this file to change it.
Compression methods join the loop through one small interface, :class:`distilkit.core.method_hooks.MethodHooks`
(see :data:`distilkit.run.methods.METHODS`), at fixed, numbered points. Steps whose inside the loop does not
need are named calls to small sibling modules: loading the teacher (:mod:`distilkit.run.teachers`), labelling
the transfer set and scoring the teacher (:mod:`distilkit.run.teacher_labels`), checkpoints and resume
(:mod:`distilkit.run.checkpoints`). One recipe is one run; iterative pruning's rounds are several, run as
pipeline stages by :func:`distilkit.run.pipeline.run_recipe`.

Runs on one CPU, one GPU or many (``accelerate launch -m distilkit run recipe.yaml``). Each process
trains on its own shard of every batch; gradients are averaged, so all replicas hold identical weights.

Objective: ``(1 - alpha) * soft + alpha * hard`` where soft is the logit MSE of Tang et al. 2019 (eq. 3)
or the temperature KL of Hinton et al. 2015, see :mod:`distilkit.methods.distillation.losses`.
"""

from __future__ import annotations

import time
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from distilkit.core.atomic import (
    atomic_directory,
    remove_stale_temporaries,
    write_json_atomic,
    write_text_atomic,
)
from distilkit.core.errors import RecipeError
from distilkit.core.faults import fault_point
from distilkit.core.saved_files import read_json
from distilkit.core.tracking import build_trackers
from distilkit.data.batches import (
    eval_loader,
    make_collate,
    model_inputs,
    optimizer_steps_per_epoch,
    predict,
    train_loader,
)
from distilkit.data.metrics import compute_metrics
from distilkit.data.tasks import TaskSpec, load_split, load_task
from distilkit.methods.distillation.ensemble import teacher_loss
from distilkit.methods.pruning.rounds import pruning_rounds
from distilkit.models.inference import encoder_for
from distilkit.models.teachers import fingerprint_module
from distilkit.report.hub import push
from distilkit.report.run_metrics import measure_run
from distilkit.run.checkpoints import Progress, resume, save_checkpoint
from distilkit.run.methods import METHODS, active_methods, parameter_groups
from distilkit.run.optimizer import build_optimizer, clip_gradients
from distilkit.run.recipe_io import dump_recipe
from distilkit.run.schema import Recipe
from distilkit.run.students import make_student
from distilkit.run.teacher_labels import label_transfer_set, score_teacher
from distilkit.run.teachers import load_teacher


def start_run(recipe: Recipe) -> Accelerator:
    """The run's accelerator (mixed precision, gradient accumulation, trackers), seeded; ``output_dir`` cleared of
    a crashed run's temporaries and given the resolved ``recipe.yaml``."""
    out, tcfg = Path(recipe.output_dir), recipe.train
    accelerator = Accelerator(
        mixed_precision=tcfg.mixed_precision, gradient_accumulation_steps=tcfg.grad_accum,
        log_with=build_trackers(tcfg.log_with, out.name, out / "logs"),
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")))
    set_seed(tcfg.seed)
    if accelerator.is_main_process:
        remove_stale_temporaries(out)
        remove_stale_temporaries(out / "checkpoints")
        write_text_atomic(out / "recipe.yaml", dump_recipe(recipe))
    accelerator.init_trackers(out.name, config=recipe.model_dump(mode="json"))
    return accelerator


def load_data(recipe: Recipe, task: TaskSpec) -> tuple:
    """The train split (the transfer set before augmentation) and ``{split: dataset}`` of the eval splits.

    Raises:
        RecipeError: ``loss.kind: kl`` on a regression task (no class probabilities to soften).
    """
    data, seed = recipe.data, recipe.train.seed
    train_ds = load_split(task, data.train_split or task.train_split, data_dir=data.dir,
                          max_examples=data.max_train_examples, seed=seed)
    eval_sets = {split: load_split(task, split, data_dir=data.dir, max_examples=data.max_eval_examples, seed=seed)
                 for split in (data.eval_splits or task.eval_splits)}
    if recipe.loss.kind == "kl" and task.problem_type == "regression":
        raise RecipeError(f"loss.kind: 'kl' needs class probabilities but task {task.name} is a regression; use mse")
    return train_ds, eval_sets


def evaluate_and_keep_best(accelerator: Accelerator, student, tokenizer, eval_dls: dict, task: TaskSpec,
                           progress: Progress, recipe: Recipe, eligible: bool = True) -> dict:
    """Evaluate on every eval split; save the student atomically to ``output_dir/model`` if it is the best
    (only an ``eligible`` one competes: a student whose pruning schedule is still running does not)."""
    record = {"epoch": progress.epoch, "step": progress.global_step}
    for split, dl in eval_dls.items():
        logits, labels = predict(accelerator, student, dl)
        record.update({f"{split}/{k}": v for k, v in compute_metrics(task, logits, labels).items()})
    progress.history.append(record)
    accelerator.log(record, step=progress.global_step)
    accelerator.print(f"epoch {progress.epoch}: {record}")
    score = record[f"{next(iter(eval_dls))}/{task.main_metric}"]
    if eligible and (progress.best is None or score > progress.best):
        progress.best, progress.best_epoch = score, progress.epoch
        if accelerator.is_main_process:
            with atomic_directory(Path(recipe.output_dir) / "model") as tmp:
                accelerator.unwrap_model(student).save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                (tmp / "recipe.yaml").write_text(dump_recipe(recipe))
        accelerator.wait_for_everyone()
    return record


def save_results(recipe: Recipe, out: Path, metrics: dict, accelerator: Accelerator) -> None:
    """Write ``metrics.json`` beside the run and inside its saved model, then push the model to the Hugging Face
    Hub when ``hub.push`` asks (main process only)."""
    write_json_atomic(out / "model" / "metrics.json", metrics)
    write_json_atomic(out / "metrics.json", metrics)
    if recipe.hub is not None and recipe.hub.push:
        accelerator.print(f"Pushed to {push(out, recipe.hub.repo, private=recipe.hub.private)}")


def run(recipe: Recipe) -> dict:
    """Run a distillation recipe end to end and return the metrics written to ``metrics.json``.

    Raises:
        RecipeError: iterative pruning (``student.rounds > 1``) is several runs, a pipeline: run it with
            :func:`distilkit.run.pipeline.run_recipe` (what ``distilkit run`` does).
    """
    if pruning_rounds(recipe.model_dump(mode="json")) > 1:
        raise RecipeError(f"student.rounds: {recipe.student.rounds} rounds are {recipe.student.rounds} runs, a "
                          "pipeline; run the recipe with distilkit.run.pipeline.run_recipe (as `distilkit run` does)")
    out, tcfg = Path(recipe.output_dir), recipe.train
    methods = active_methods(recipe)  # the compression methods this recipe uses (run/methods.py)
    accelerator = start_run(recipe)

    # 1. Data: the transfer set (train split) and eval splits, normalized to id / text_a / text_b / label.
    task = load_task(recipe.task)
    train_ds, eval_sets = load_data(recipe, task)

    # 2. Teacher(s): the transfer set labelled with their logits (cached), and their scores on the eval splits.
    teacher = load_teacher(recipe, task, train_ds, next(iter(eval_sets.values())), accelerator)
    for method in methods:  # intermediate-layer distillation reads the teacher's hidden states per batch
        method.attach_teacher(teacher)
    transfer = label_transfer_set(recipe, teacher, train_ds, accelerator)
    teacher_scores = score_teacher(recipe, task, teacher, eval_sets, accelerator)
    accelerator.print(f"Teacher: {teacher_scores.splits}")

    # 3. Student, loaders, optimizer and schedule.
    set_seed(tcfg.seed)  # the student's initial weights must not depend on whether the teacher came from a cache
    student, tokenizer = make_student(recipe, task, teacher, transfer.rows)
    for method in methods:  # QAT: fake-quantized weights; linear attention: record attention transfer
        method.prepare_student(student)
    # How texts become inputs follows the network, not the kind: a copy of a BiLSTM reads words as a BiLSTM.
    collate = make_collate(encoder_for(student), tokenizer, recipe.student.max_length, task.problem_type)
    train_dl = train_loader(transfer.rows, collate, tcfg.batch_size, tcfg.seed, tcfg.group_by_length)
    eval_dls = {split: eval_loader(list(ds), collate, 2 * tcfg.batch_size) for split, ds in eval_sets.items()}
    steps_per_epoch = optimizer_steps_per_epoch(len(train_dl), tcfg.grad_accum)
    total_steps = min(tcfg.max_steps or 10**12, tcfg.epochs * steps_per_epoch)
    optimizer = build_optimizer(student, parameter_groups(student, methods), tcfg.lr, tcfg.weight_decay,
                                tcfg.sparse_embeddings)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tcfg.warmup_ratio * total_steps), total_steps)
    student, optimizer, train_dl, scheduler, *prepared = accelerator.prepare(
        student, optimizer, train_dl, scheduler, *eval_dls.values())
    eval_dls = dict(zip(eval_dls, prepared))
    progress = Progress()
    accelerator.register_for_checkpointing(progress)

    # 4. Resume: restores weights, optimizer, scheduler, RNG states and progress, then skips seen batches.
    if tcfg.resume_from:
        ckpt = resume(accelerator, out, tcfg.resume_from)
        accelerator.print(f"Resumed from {ckpt} at epoch {progress.epoch}, step {progress.global_step}")
        for method in methods:  # re-derive what a method keeps beside the weights (masks, codebooks) from them
            method.after_step(accelerator.unwrap_model(student), progress.global_step, total_steps)

    # 5. Training loop.
    main_split = next(iter(eval_sets))
    seen_ids, examples, train_seconds = [], 0, 0.0
    bar_total = total_steps - progress.global_step
    bar = tqdm(total=bar_total, desc=f"distil {task.name} -> {recipe.student.kind}", unit="step",
               disable=not accelerator.is_main_process)
    forward_kwargs = {k: v for method in methods for k, v in method.forward_kwargs().items()}
    student.train()
    while progress.epoch < tcfg.epochs and progress.global_step < total_steps:
        train_dl.set_epoch(progress.epoch)
        loader = train_dl
        if progress.batch_in_epoch:
            loader = accelerator.skip_first_batches(train_dl, progress.batch_in_epoch)
            loader.set_epoch(progress.epoch)
        tick = time.perf_counter()
        for batch in loader:
            with accelerator.accumulate(student):
                outputs = student(**model_inputs(batch), **forward_kwargs)
                student_logits = outputs.logits.float()
                teacher_logits = batch.get("teacher_logits")
                if teacher_logits is None:  # cache disabled: run the teacher on this very batch
                    teacher_logits = teacher(batch["texts"], batch["text_pairs"]).to(student_logits.device)
                # loss.ensemble: each -- one weighted soft loss per teacher (methods/distillation/ensemble.py)
                loss, parts = teacher_loss(teacher, student_logits, teacher_logits, batch["labels"],
                                           kind=recipe.loss.kind, temperature=recipe.loss.temperature,
                                           alpha=recipe.loss.alpha, problem_type=task.problem_type)
                weight = 1.0
                for method in methods:  # e.g. TinyBERT's first stage: intermediate layers only, no logit loss
                    weight *= method.distillation_weight(progress.global_step, total_steps)
                if weight != 1.0:
                    loss = weight * loss
                for method in methods:  # e.g. attention transfer of linear-attention layers
                    unwrapped = accelerator.unwrap_model(student)
                    for name, term in method.extra_losses(unwrapped, batch=batch, outputs=outputs).items():
                        loss, parts[name] = loss + term, term.item()
                accelerator.backward(loss)
                if accelerator.sync_gradients and tcfg.max_grad_norm:
                    if tcfg.sparse_embeddings:  # torch's clipping cannot take the norm of a sparse gradient
                        clip_gradients(student.parameters(), tcfg.max_grad_norm)
                    else:
                        accelerator.clip_grad_norm_(student.parameters(), tcfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            progress.batch_in_epoch += 1
            examples += len(batch["ids"]) * accelerator.num_processes
            if tcfg.record_batch_ids:
                seen_ids.extend(batch["ids"])
            if not accelerator.sync_gradients:
                continue
            progress.global_step += 1
            for method in methods:  # e.g. Deep Compression: pruned weights back to zero, the sparsity schedule
                method.after_step(accelerator.unwrap_model(student), progress.global_step, total_steps)
            bar.update(1)
            fault_point("train.step")
            if progress.global_step % tcfg.log_every == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
                accelerator.log({"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0],
                                 **{f"train/{k}": v for k, v in parts.items()}}, step=progress.global_step)
            if tcfg.checkpoint_every and progress.global_step % tcfg.checkpoint_every == 0:
                train_seconds += time.perf_counter() - tick
                save_checkpoint(accelerator, out, progress, tcfg.keep_checkpoints)
                tick = time.perf_counter()
            if progress.global_step >= total_steps:
                break
        train_seconds += time.perf_counter() - tick

        # 6. Evaluate (every epoch, or the last only: train.eval_every_epoch), keep the best student (atomically),
        # checkpoint the epoch.
        last_epoch = progress.epoch + 1 >= tcfg.epochs or progress.global_step >= total_steps
        if tcfg.eval_every_epoch or last_epoch:
            eligible = all(method.final_form(progress.global_step, total_steps) for method in methods)
            evaluate_and_keep_best(accelerator, student, tokenizer, eval_dls, task, progress, recipe, eligible)
        progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
        save_checkpoint(accelerator, out, progress, tcfg.keep_checkpoints)
        fault_point("train.epoch")
    bar.close()
    if progress.best is None:  # train.epochs: 0 -- keep the student as built (a copy to quantize, say)
        evaluate_and_keep_best(accelerator, student, tokenizer, eval_dls, task, progress, recipe)

    # 7. Methods' post-processing of the best student (quantization on the grids QAT trained through).
    if accelerator.is_main_process:
        for method in methods:
            method.after_training(out)
    accelerator.wait_for_everyone()

    if tcfg.record_batch_ids:  # which rows each process saw, and the weights it ended with (tests/test_distributed.py)
        write_json_atomic(out / "logs" / f"rank-{accelerator.process_index}.json",
                          {"rank": accelerator.process_index, "ids": seen_ids,
                           "weights": fingerprint_module(accelerator.unwrap_model(student))})

    # 8. Measure the best student (reloaded from disk, which also proves it round-trips) against the teacher.
    metrics = None
    fault_point("measure.start")
    if accelerator.is_main_process:
        metrics = measure_run(recipe, task, teacher, eval_sets[main_split], teacher_scores.splits, progress,
                              {"examples": len(transfer.rows), "examples_seen": examples,
                               "seconds": round(train_seconds, 2),
                               "examples_per_second": round(examples / max(train_seconds, 1e-9), 1),
                               "teacher_labelling_seconds": round(transfer.labelling_seconds, 2),
                               "augment": transfer.augment_counts, "num_processes": accelerator.num_processes},
                              METHODS.values())
        if teacher_scores.members:  # an ensemble: metrics["teacher"] is the ensemble's own; here each teacher's
            metrics["teachers"] = teacher_scores.members
        save_results(recipe, out, metrics, accelerator)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics if metrics is not None else read_json(out / "metrics.json")
