"""Fine-tune a teacher on a task (``teacher.finetune`` in a recipe), on Accelerate.

Used when the teacher is a bare pretrained encoder, e.g. the offline MiniLM of the quickstart. The result
is cached under ``<cache_dir>/finetuned_teachers/<key>``, where the key hashes the base weights, the
tokenizer, the training data and every fine-tuning hyper-parameter, so students distilled later (or in
another run) reuse the same teacher and the same logit cache entry.

``finetune.lora`` trains LoRA adapters through peft (``get_peft_model``; Hu et al. 2021, eq. 3) plus the
classification head (``modules_to_save``) instead of every weight -- how a BERT-large teacher is fine-tuned
where its full optimizer state does not fit -- then merges them (``merge_and_unload``): the cached folder is
an ordinary classifier, and that merged teacher is what labels, is cached and is fingerprinted.
``finetune.json`` states the trainable and total parameter counts either way.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from distilkit.core.atomic import write_json_atomic
from distilkit.core.cache_entries import cache_entry, open_entry
from distilkit.core.errors import TeacherError
from distilkit.core.faults import fault_point
from distilkit.data.batches import (
    eval_loader,
    make_collate,
    model_inputs,
    optimizer_steps_per_epoch,
    predict,
    train_loader,
)
from distilkit.data.logit_cache import data_fingerprint
from distilkit.data.metrics import compute_metrics
from distilkit.data.tasks import TaskSpec
from distilkit.models.config import FinetuneConfig, LoraSettings, TeacherConfig
from distilkit.models.teachers import HFTeacher, load_hf_teacher
from distilkit.models.transformer import encode_transformer


def finetune_key(teacher: HFTeacher, task: TaskSpec, train_ds: Dataset, cfg: FinetuneConfig) -> str:
    """Cache key of a fine-tuned teacher: base weights + tokenizer + data + hyper-parameters."""
    digest = hashlib.blake2b(digest_size=12)
    # Without finetune.lora the key is the one written before that key existed: cached teachers stay valid.
    settings = cfg.model_dump_json(exclude={"lora"} if cfg.lora is None else None)
    for part in (teacher.fingerprint(), task.name, data_fingerprint(train_ds), settings):
        digest.update(part.encode())
    return digest.hexdigest()


def finetune_teacher(teacher_cfg: TeacherConfig, task: TaskSpec, train_ds: Dataset, eval_ds: Dataset | None,
                     *, cache_dir: str | Path, accelerator: Accelerator | None = None) -> Path:
    """Fine-tune ``teacher_cfg.model`` on ``train_ds`` (or reuse a cached result) and return its directory.

    Args:
        teacher_cfg: The recipe's teacher section; ``teacher_cfg.finetune`` holds the hyper-parameters.
        task: The task (number of labels, regression or not, metrics).
        train_ds: Normalized training examples with gold labels.
        eval_ds: Optional normalized eval examples, scored after training (stored in ``finetune.json``).
        cache_dir: Cache root.
        accelerator: Shared accelerator (a fresh single-process one if ``None``).

    Returns:
        Directory of the fine-tuned classifier (loadable with ``AutoModelForSequenceClassification``).
    """
    cfg = teacher_cfg.finetune or FinetuneConfig()
    accelerator = accelerator or Accelerator()
    if cfg.max_examples and len(train_ds) > cfg.max_examples:
        train_ds = train_ds.shuffle(seed=cfg.seed).select(range(cfg.max_examples))
    # A new classification head is randomly initialised and hashed into the cache key: seed it first, or
    # the same recipe would miss its own cache entry whenever the global RNG state differs.
    set_seed(cfg.seed)
    base = load_hf_teacher(teacher_cfg.model, num_labels=task.num_labels, problem_type=task.problem_type,
                           tokenizer=teacher_cfg.tokenizer, revision=teacher_cfg.revision,
                           max_length=cfg.max_length, allow_new_head=True)
    out_dir = Path(cache_dir).expanduser() / "finetuned_teachers" / finetune_key(base, task, train_ds, cfg)
    if open_entry(out_dir, "fine-tuned teacher") is not None and (out_dir / "finetune.json").exists():
        accelerator.print(f"Reusing fine-tuned teacher {out_dir}")
        return out_dir

    set_seed(cfg.seed)
    model, tokenizer = base.model.train(), base.tokenizer
    if task.label_names:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    if cfg.lora is not None:
        model = with_lora(model, cfg.lora)
    counts = {"trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "total_parameters": sum(p.numel() for p in model.parameters())}
    collate = make_collate(encode_transformer, tokenizer, cfg.max_length, task.problem_type)
    train_dl = train_loader(list(train_ds), collate, cfg.batch_size, cfg.seed, cfg.group_by_length)
    total_steps = max(1, int(cfg.epochs * optimizer_steps_per_epoch(len(train_dl), 1)))
    # fused: one kernel for all parameters (the step over MiniLM's 22.7M weights took 118 ms unfused on 2 cores).
    # Only what trains goes to AdamW: with finetune.lora the frozen base has no optimizer state (the memory saved).
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, train_dl, scheduler = accelerator.prepare(model, optimizer, train_dl, scheduler)

    step, start = 0, time.perf_counter()
    bar = tqdm(total=total_steps, desc=f"fine-tune teacher on {task.name}", disable=not accelerator.is_main_process)
    epoch = 0
    while step < total_steps:
        train_dl.set_epoch(epoch)
        for batch in train_dl:
            # The model's own loss: cross-entropy, or MSE when problem_type is regression.
            loss = model(**model_inputs(batch), labels=batch["labels"]).loss
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            fault_point("finetune.step")
            if step >= total_steps:
                break
        epoch += 1
    bar.close()

    report = {"base_model": teacher_cfg.model, "task": task.name, "train_examples": len(train_ds),
              "steps": step, "seconds": round(time.perf_counter() - start, 1), "config": cfg.model_dump(),
              "method": "lora" if cfg.lora is not None else "full", **counts}
    if eval_ds is not None:
        eval_dl = accelerator.prepare(eval_loader(list(eval_ds), collate, 2 * cfg.batch_size))
        logits, labels = predict(accelerator, model, eval_dl)
        report["eval_metrics"] = compute_metrics(task, logits, labels)
        accelerator.print(f"Fine-tuned teacher eval: {report['eval_metrics']}")
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        if cfg.lora is not None:  # W0 + alpha/r B A into the weights: the cached teacher is an ordinary model
            final = final.merge_and_unload()
        with cache_entry(out_dir, "fine-tuned teacher") as tmp:
            final.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json_atomic(tmp / "finetune.json", report)
    fault_point("finetune.done")
    accelerator.wait_for_everyone()
    return out_dir


def with_lora(model: torch.nn.Module, lora: LoraSettings) -> torch.nn.Module:
    """``model`` wrapped by peft with LoRA adapters on ``lora.target_modules``; only the adapters and
    ``lora.modules_to_save`` (the classification head) train.

    Raises:
        TeacherError: no module of the teacher matches ``target_modules``.
    """
    from peft import LoraConfig, get_peft_model  # the [peft] extra: imported only when a recipe asks for LoRA

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=list(lora.target_modules), modules_to_save=list(lora.modules_to_save),
                        task_type="SEQ_CLS")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # peft: "Target modules ... not found in the base model"
        raise TeacherError(f"teacher.finetune.lora.target_modules: {lora.target_modules}: "
                           f"{str(exc).splitlines()[0][:300]}") from None
