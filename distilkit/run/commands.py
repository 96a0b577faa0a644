"""The ``distilkit augment`` and ``distilkit quantize`` commands: data and methods put together for the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

from accelerate import Accelerator

from distilkit.core.atomic import atomic_directory
from distilkit.core.errors import RecipeError
from distilkit.core.measure import count_parameters, size_on_disk
from distilkit.data.augment import augment_for_run
from distilkit.data.tasks import load_split, load_task
from distilkit.methods.distillation.ensemble import label_with_ensemble
from distilkit.methods.quantization.config import QuantizeConfig
from distilkit.methods.quantization.convert import quantize_directory
from distilkit.models.inference import encoder_for, evaluate_model, load_saved
from distilkit.run.recipe_io import format_validation_error
from distilkit.run.teachers import load_teacher


def augment_command(recipe, out: str | None = None) -> Path:
    """``distilkit augment RECIPE``: build the transfer set, label it with the teacher, save the table.

    The saved ``datasets`` table has ``id, text_a, text_b, label, teacher_logits``, keyed by ``id``.
    """
    if recipe.data.augment is None:
        raise RecipeError("data.augment: the recipe has no augment section (add `augment: {}` under data)")
    accelerator = Accelerator()
    task, data = load_task(recipe.task), recipe.data
    train_ds = load_split(task, data.train_split or task.train_split, data_dir=data.dir,
                          max_examples=data.max_train_examples, seed=recipe.train.seed)
    eval_split = (data.eval_splits or task.eval_splits)[0]
    eval_ds = load_split(task, eval_split, data_dir=data.dir, max_examples=data.max_eval_examples,
                         seed=recipe.train.seed)
    teacher = load_teacher(recipe, task, train_ds, eval_ds, accelerator)
    cache_dir = recipe.cache.dir if recipe.cache.enabled else None
    table, counts = augment_for_run(train_ds, data.augment, teacher, cache_dir, accelerator)
    start = time.perf_counter()
    # An ensemble labels the transfer set with its combined targets (each teacher cached under its own key).
    logits = label_with_ensemble(teacher, table, cache_dir=cache_dir,
                                 batch_size=[cfg.batch_size for cfg in recipe.teachers],
                                 accelerator=accelerator, desc="teacher logits (transfer set)")
    labelling = time.perf_counter() - start
    target = Path(out or Path(recipe.output_dir) / "transfer_set")
    if accelerator.is_main_process:
        labelled = table.add_column("teacher_logits", logits.aligned(table["id"]).tolist())
        with atomic_directory(target) as tmp:
            labelled.save_to_disk(str(tmp))
            (tmp / "counts.json").write_text(json.dumps({**counts, "labelling_seconds": round(labelling, 2)}, indent=2))
        accelerator.print(f"Labelled {len(table):,} rows in {labelling:.1f} s -> {target}")
    accelerator.wait_for_everyone()
    return target


def quantize_command(args) -> None:
    """``distilkit quantize MODEL_DIR --out DIR [...]``: quantize a saved model; evaluate it on a task."""

    fields = {"linear": None if args.linear == "none" else args.linear,
              "embedding": None if args.embedding == "none" else args.embedding,
              "backend": args.backend, "symmetric": not args.asymmetric}
    if args.skip:
        fields["skip_modules"] = args.skip
    try:
        cfg = QuantizeConfig(**fields)
    except Exception as err:  # pydantic's ValidationError, reworded with the option names
        raise RecipeError(format_validation_error(err, "distilkit quantize", QuantizeConfig)) from None
    src = Path(args.model_dir)
    if not (src / "config.json").is_file():
        raise RecipeError(f"distilkit quantize: {src} is not a saved model directory (no config.json)")
    model = quantize_directory(src, args.out, cfg)
    before, after = size_on_disk(src), size_on_disk(args.out)
    print(f"{src} -> {args.out}: {before / 2**20:.1f} MB -> {after / 2**20:.1f} MB on disk "
          f"({before / max(after, 1):.2f}x smaller), {count_parameters(model):,} weights")
    if args.task:
        task = load_task(args.task)
        ds = load_split(task, task.eval_splits[0], data_dir=args.data_dir, max_examples=args.max_examples)
        reloaded, tokenizer = load_saved(args.out)
        encode = encoder_for(model)
        for name, m in (("float", load_saved(src, tokenizer=False)[0]), ("quantized", reloaded)):
            print(f"{name:>9}: {evaluate_model(m, encode, tokenizer, args.max_length, ds, task)}")
