"""Distil a GLUE teacher into a BiLSTM or small-transformer student on teacher logits.

This is a *recipe program*: the typed config is :class:`distilkit.config.Recipe`, and :func:`run` reads
top to bottom as the experiment does — data, teacher, cached teacher logits, student, training loop,
evaluation, measurement. There is no trainer class and no callback system; copy this file to change it.

Runs on one CPU, one GPU or many (``accelerate launch -m distilkit run recipe.yaml``). Each process
trains on its own shard of every batch; gradients are averaged, so all replicas hold identical weights.

Objective: ``(1 - alpha) * soft + alpha * hard`` where soft is the logit MSE of Tang et al. 2019 (eq. 3)
or the temperature KL of Hinton et al. 2015, see :mod:`distilkit.losses`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)

from distilkit.batches import (
    eval_loader,
    make_collate,
    model_inputs,
    optimizer_steps_per_epoch,
    predict,
    train_loader,
)
from distilkit.checkpointing import (
    atomic_directory,
    remove_stale_temporaries,
    write_json_atomic,
    write_text_atomic,
)
from distilkit.config import Recipe, TeacherConfig
from distilkit.errors import RecipeError
from distilkit.finetune import finetune_teacher
from distilkit.linear_attention import attention_transfer_loss, enable_attention_transfer, parameter_groups
from distilkit.logit_cache import label_with_teacher
from distilkit.losses import distillation_loss
from distilkit.measure import measure_run
from distilkit.metrics import compute_metrics
from distilkit.quantize_run import prepare_qat, quantize_output
from distilkit.recipe_io import dump_recipe
from distilkit.students import STUDENTS
from distilkit.tasks import TaskSpec, load_split, load_task
from distilkit.teachers import (
    HFTeacher,
    fingerprint_module,
    is_plugin_path,
    load_hf_teacher,
    load_plugin_teacher,
)
from distilkit.tracking import build_trackers


class Progress:
    """Where training is; saved in every checkpoint so a resumed run continues exactly."""

    def __init__(self):
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.best, self.best_epoch, self.history = None, None, []

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


def load_teacher(recipe: Recipe, task: TaskSpec, train_ds, eval_ds, accelerator: Accelerator):
    """The recipe's teacher, fine-tuned first when ``teacher.finetune`` is set."""
    cfg: TeacherConfig = recipe.teacher
    if is_plugin_path(cfg.model):
        return load_plugin_teacher(cfg.model, cfg.kwargs, num_labels=task.num_labels, tokenizer=cfg.tokenizer,
                                   max_length=cfg.max_length, device=accelerator.device,
                                   require_fingerprint=recipe.cache.enabled)
    model = cfg.model
    if cfg.finetune is not None:
        # The teacher learns from the labelled train split, sized by finetune.max_examples, independently of
        # the transfer set: students distilled on other transfer-set sizes then reuse the same teacher.
        limit = cfg.finetune.max_examples or recipe.data.max_train_examples
        if limit != recipe.data.max_train_examples:
            train_ds = load_split(task, recipe.data.train_split or task.train_split, data_dir=recipe.data.dir,
                                  max_examples=limit, seed=cfg.finetune.seed)
        model = str(finetune_teacher(cfg, task, train_ds, eval_ds, cache_dir=recipe.cache.dir,
                                     accelerator=accelerator))
    return load_hf_teacher(model, num_labels=task.num_labels, problem_type=task.problem_type,
                           tokenizer=None if cfg.finetune else cfg.tokenizer,
                           revision=None if cfg.finetune else cfg.revision,
                           max_length=cfg.max_length, device=accelerator.device)


def make_student(recipe: Recipe, task: TaskSpec, teacher, train_rows: list[dict] | None = None):
    """Build the student and its tokenizer from ``recipe.student`` (teacher's tokenizer by default).

    ``train_rows`` (the labelled transfer set) is where a pruned student's importance scores come from, and
    whose tokens a ``student.vocab`` trimming keeps (the returned tokenizer is then the trimmed one).
    """
    spec = recipe.student
    hf_teacher = teacher if isinstance(teacher, HFTeacher) else None
    if spec.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer)
    elif hf_teacher is not None:
        tokenizer = hf_teacher.tokenizer
    else:
        raise RecipeError("student.tokenizer: the teacher is a plug-in without a Hugging Face tokenizer; name one")
    common = {"num_labels": task.num_labels, "problem_type": task.problem_type}
    if spec.kind == "bilstm":
        embeddings = None
        if spec.init_embeddings_from_teacher and hf_teacher is not None and not spec.tokenizer:
            embeddings = hf_teacher.model.get_input_embeddings().weight.detach().float().cpu().clone()
        model = STUDENTS["bilstm"].build(
            tokenizer=tokenizer, is_pair=task.is_pair, embedding_dim=spec.embedding_dim,
            hidden_size=spec.hidden_size, mlp_hidden_size=spec.mlp_hidden_size, dropout=spec.dropout,
            teacher_embeddings=embeddings, freeze_embeddings=spec.freeze_embeddings,
            project_embeddings=spec.init_embeddings_from_teacher == "pca", **common)
    elif spec.kind == "copy":
        model = STUDENTS["copy"].build(teacher_model=hf_teacher.model if hf_teacher else None)
    elif spec.kind == "pruned":
        model = STUDENTS["pruned"].build(spec=spec, hf_teacher=hf_teacher, task=task, rows=train_rows)
    elif spec.kind == "linear_attention":
        model = STUDENTS["linear_attention"].build(spec=spec, hf_teacher=hf_teacher, task=task)
    else:
        if hf_teacher is not None and not spec.config_from:
            teacher_config, teacher_model = hf_teacher.model.config, hf_teacher.model
        elif spec.config_from:
            teacher_config, teacher_model = AutoConfig.from_pretrained(spec.config_from), None
        else:
            raise RecipeError("student.config_from: the teacher is a plug-in; name a base config for the student")
        init = spec.init_from_teacher_layers if teacher_model is not None else None
        model = STUDENTS["transformer"].build(
            teacher_config=teacher_config, num_layers=spec.num_layers, hidden_size=spec.hidden_size,
            num_attention_heads=spec.num_attention_heads, intermediate_size=spec.intermediate_size,
            init_from_teacher_layers=init, teacher_model=teacher_model, **common)
    if task.label_names:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    if getattr(spec, "vocab", None) is not None and train_rows:  # last: it picks among built rows
        from distilkit.vocab import apply_vocab
        tokenizer = apply_vocab(spec.vocab, model, tokenizer, train_rows)
    return model, tokenizer


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


def evaluate_and_keep_best(accelerator: Accelerator, student, tokenizer, eval_dls: dict, task: TaskSpec,
                           progress: Progress, recipe: Recipe) -> dict:
    """Evaluate on every eval split; save the student atomically to ``output_dir/model`` if it is the best."""
    record = {"epoch": progress.epoch, "step": progress.global_step}
    for split, dl in eval_dls.items():
        logits, labels = predict(accelerator, student, dl)
        record.update({f"{split}/{k}": v for k, v in compute_metrics(task, logits, labels).items()})
    progress.history.append(record)
    accelerator.log(record, step=progress.global_step)
    accelerator.print(f"epoch {progress.epoch}: {record}")
    score = record[f"{next(iter(eval_dls))}/{task.main_metric}"]
    if progress.best is None or score > progress.best:
        progress.best, progress.best_epoch = score, progress.epoch
        if accelerator.is_main_process:
            with atomic_directory(Path(recipe.output_dir) / "model") as tmp:
                accelerator.unwrap_model(student).save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                (tmp / "recipe.yaml").write_text(dump_recipe(recipe))
        accelerator.wait_for_everyone()
    return record


def run(recipe: Recipe) -> dict:
    """Run a distillation recipe end to end and return the metrics written to ``metrics.json``."""
    if recipe.student.kind == "pruned" and recipe.student.rounds > 1:  # iterative: one run per round
        from distilkit.prune_run import run_iterative
        return run_iterative(recipe)
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

    # 1. Data: the transfer set (train split) and eval splits, normalized to id / text_a / text_b / label.
    task = load_task(recipe.task)
    data = recipe.data
    train_ds = load_split(task, data.train_split or task.train_split, data_dir=data.dir,
                          max_examples=data.max_train_examples, seed=tcfg.seed)
    eval_sets = {split: load_split(task, split, data_dir=data.dir, max_examples=data.max_eval_examples,
                                   seed=tcfg.seed) for split in (data.eval_splits or task.eval_splits)}
    if recipe.loss.kind == "kl" and task.problem_type == "regression":
        raise RecipeError(f"loss.kind: 'kl' needs class probabilities but task {task.name} is a regression; use mse")

    # 2. Teacher and its logits, computed once and cached (keyed by teacher and data fingerprints).
    first_eval = next(iter(eval_sets.values()))
    teacher = load_teacher(recipe, task, train_ds, first_eval, accelerator)
    cache_dir = recipe.cache.dir if recipe.cache.enabled else None
    augment_counts = None
    if data.augment is not None:  # Tang et al. transfer set, labelled below by the teacher like any other
        from distilkit.augment import augment_for_run
        train_ds, augment_counts = augment_for_run(train_ds, data.augment, teacher, cache_dir, accelerator)
    start = time.perf_counter()
    train_rows = list(train_ds)
    if recipe.cache.enabled:
        cached = label_with_teacher(teacher, train_ds, cache_dir=cache_dir, batch_size=recipe.teacher.batch_size,
                                    accelerator=accelerator, desc="teacher logits (train)")
        for row, logits in zip(train_rows, cached.aligned(train_ds["id"]).tolist()):
            row["teacher_logits"] = logits
    labelling_seconds = time.perf_counter() - start
    if data.labels == "none":
        for row in train_rows:
            row["label"] = None
    teacher_metrics = {}
    for split, ds in eval_sets.items():
        logits = label_with_teacher(teacher, ds, cache_dir=cache_dir, batch_size=recipe.teacher.batch_size,
                                    accelerator=accelerator, desc=f"teacher logits ({split})")
        teacher_metrics[split] = compute_metrics(task, logits.aligned(ds["id"]), ds["label"])
    accelerator.print(f"Teacher: {teacher_metrics}")

    # 3. Student, loaders, optimizer and schedule.
    student, tokenizer = make_student(recipe, task, teacher, train_rows)
    if recipe.quantize is not None and recipe.quantize.qat:  # the float teacher teaches a fake-quant student
        prepare_qat(student, recipe.quantize)
    if recipe.loss.attention_weight:  # linear-attention layers also learn to mimic softmax attention
        enable_attention_transfer(student)
    kind = STUDENTS[recipe.student.kind]
    collate = make_collate(kind.encode, tokenizer, recipe.student.max_length, task.problem_type)
    train_dl = train_loader(train_rows, collate, tcfg.batch_size, tcfg.seed)
    eval_dls = {split: eval_loader(list(ds), collate, 2 * tcfg.batch_size) for split, ds in eval_sets.items()}
    steps_per_epoch = optimizer_steps_per_epoch(len(train_dl), tcfg.grad_accum)
    total_steps = min(tcfg.max_steps or 10**12, tcfg.epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(parameter_groups(student, recipe), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tcfg.warmup_ratio * total_steps), total_steps)
    student, optimizer, train_dl, scheduler, *prepared = accelerator.prepare(
        student, optimizer, train_dl, scheduler, *eval_dls.values())
    eval_dls = dict(zip(eval_dls, prepared))
    progress = Progress()
    accelerator.register_for_checkpointing(progress)

    # 4. Resume: restores weights, optimizer, scheduler, RNG states and progress, then skips seen batches.
    if tcfg.resume_from:
        ckpt = latest_checkpoint(out) if tcfg.resume_from == "latest" else Path(tcfg.resume_from)
        if ckpt is None or not ckpt.is_dir():
            raise RecipeError(f"train.resume_from: no checkpoint at '{tcfg.resume_from}' (looked in {out / 'checkpoints'})")
        accelerator.load_state(str(ckpt))
        accelerator.print(f"Resumed from {ckpt} at epoch {progress.epoch}, step {progress.global_step}")

    # 5. Training loop.
    main_split = next(iter(eval_sets))
    seen_ids, examples, train_seconds = [], 0, 0.0
    bar_total = total_steps - progress.global_step
    bar = tqdm(total=bar_total, desc=f"distil {task.name} -> {recipe.student.kind}", unit="step",
               disable=not accelerator.is_main_process)
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
                student_logits = student(**model_inputs(batch)).logits.float()
                teacher_logits = batch.get("teacher_logits")
                if teacher_logits is None:  # cache disabled: run the teacher on this very batch
                    teacher_logits = teacher(batch["texts"], batch["text_pairs"]).to(student_logits.device)
                loss, parts = distillation_loss(
                    student_logits, teacher_logits, batch["labels"], kind=recipe.loss.kind,
                    temperature=recipe.loss.temperature, alpha=recipe.loss.alpha, problem_type=task.problem_type)
                if recipe.loss.attention_weight:
                    transfer = attention_transfer_loss(accelerator.unwrap_model(student))
                    loss, parts["attention"] = loss + recipe.loss.attention_weight * transfer, transfer.item()
                accelerator.backward(loss)
                if accelerator.sync_gradients and tcfg.max_grad_norm:
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
            bar.update(1)
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

        # 6. Evaluate, keep the best student (atomically), checkpoint the epoch.
        evaluate_and_keep_best(accelerator, student, tokenizer, eval_dls, task, progress, recipe)
        progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
        save_checkpoint(accelerator, out, progress, tcfg.keep_checkpoints)
    bar.close()
    if progress.best is None:  # train.epochs: 0 -- keep the student as built (a copy to quantize, say)
        evaluate_and_keep_best(accelerator, student, tokenizer, eval_dls, task, progress, recipe)

    # 7. Quantize the best student on the recipe's grids (the same grids QAT trained through).
    if recipe.quantize is not None and accelerator.is_main_process:
        quantize_output(out, recipe.quantize)
    accelerator.wait_for_everyone()

    if tcfg.record_batch_ids:
        audit = {"rank": accelerator.process_index, "ids": seen_ids,
                 "weights": fingerprint_module(accelerator.unwrap_model(student))}
        write_json_atomic(out / "logs" / f"rank-{accelerator.process_index}.json", audit)

    # 8. Measure the best student (reloaded from disk, which also proves it round-trips) against the teacher.
    metrics = None
    if accelerator.is_main_process:
        metrics = measure_run(recipe, task, teacher, eval_sets[main_split], teacher_metrics, progress,
                              {"examples": len(train_rows), "examples_seen": examples,
                               "seconds": round(train_seconds, 2),
                               "examples_per_second": round(examples / max(train_seconds, 1e-9), 1),
                               "teacher_labelling_seconds": round(labelling_seconds, 2), "augment": augment_counts,
                               "num_processes": accelerator.num_processes})
        write_json_atomic(out / "model" / "metrics.json", metrics)
        write_json_atomic(out / "metrics.json", metrics)
        if recipe.hub is not None and recipe.hub.push:
            from distilkit.hub import push
            accelerator.print(f"Pushed to {push(out, recipe.hub.repo, private=recipe.hub.private)}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return metrics if metrics is not None else json.loads((out / "metrics.json").read_text())
