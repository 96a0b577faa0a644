"""Benchmark: distilkit vs torchdistill distilling the same MiniLM teacher into the same BiLSTM on SST-2.

One run of this script trains the same student twice, one framework after the other, and measures both:

  * distilkit: the normal recipe entry point, ``distilkit.run.distill.run(validate_recipe(tree))``. The teacher
    labels the transfer set once (logit cache, in a fresh cache directory so that the labelling is timed in
    this run), then the student trains on the cached logits.
  * torchdistill: its ``DistillationBox`` (``torchdistill.core.distillation.get_distillation_box``) built from
    a Python config dict with the already-built teacher and student, a torchdistill train data loader, its
    forward hooks on both models' ``classifier`` layers, its ``KDLoss`` inside a ``WeightedSumLoss``, its
    AdamW/scheduler/grad-clipping setup and its pre/post forward and epoch processes, driven by the loop of
    torchdistill's own example scripts. torchdistill 1.1.5 has no teacher-output cache: it runs the teacher
    (tokenization + forward) on every training batch.

Same for both: teacher (the fine-tuned MiniLM of ``bench_common.sst2_minilm_teacher``), transfer set (the same
seeded random subset of SST-2 train), student (Tang et al. BiLSTM with the teacher's word embeddings, with the
*same initial weights*: the ones distilkit's run built are copied into torchdistill's student, and the
global RNG state at that point too, so both draw the same dropout masks), loss (Hinton KD,
``T^2 * KL(teacher_T || student_T)``, no hard labels), AdamW (lr 1e-3, no weight decay), linear decay to 0,
gradient-norm clipping at 1.0, batch 50, max_length 64, the same example order per epoch (distilkit's
``EpochShuffleSampler``), and the same evaluation (distilkit's eval loader with ``encode_bilstm`` inputs, then
``compute_metrics``) on SST-2 dev after every epoch. The two trained students come out equal up to rounding
(the script prints their largest weight difference). Timed: the training loop of each epoch (data loading,
tokenization, forwards, backward, optimizer); evaluation and checkpointing are left out on both sides.

Writes a Markdown section to docs/benchmarks.md (between markers) and prints it.

    python scripts/bench_torchdistill.py --data-dir ../shared/glue                  # ~10 min on 2 CPU threads
    python scripts/bench_torchdistill.py --data-dir ../shared/glue --quick --no-write  # smoke run (<1 min)

Needs torchdistill. Its PyPI dependencies pull a CUDA torch and torchvision; over a CPU-only torch install
it with ``pip install --no-deps torchdistill`` (its other runtime needs, numpy/pyyaml/scipy, come with
distilkit) and leave torchvision out: see :func:`_stub_torchvision`.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

# bench_common sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE before transformers is first imported.
import torch
from bench_common import bench_parser, command_line, publish, require_sst2, sst2_minilm_teacher, sst2_splits
from safetensors.torch import load_file
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)

import distilkit.run.distill as distill
from distilkit.data.batches import EpochShuffleSampler, eval_loader, make_collate, model_inputs
from distilkit.data.metrics import compute_metrics
from distilkit.data.tasks import load_task
from distilkit.models.bilstm import encode_bilstm
from distilkit.models.teachers import load_hf_teacher
from distilkit.run.recipe_io import validate_recipe

BEGIN, END = "<!-- bench_torchdistill:begin -->", "<!-- bench_torchdistill:end -->"
MAX_LENGTH, BATCH_SIZE, LR, SEED, MAX_GRAD_NORM = 64, 50, 1e-3, 42, 1.0


def _stub_torchvision() -> list[str]:
    """Put a minimal stand-in for torchvision into ``sys.modules``; returns the module names added.

    torchdistill imports torchvision at import time for its image models and datasets (CIFAR ResNet/DenseNet
    building blocks, the torchvision model and dataset registries); distilling a text model never touches
    any of it. PyPI has no CPU torchvision wheel, and its CUDA wheels over a CPU-only torch fail on import
    (``operator torchvision::nms does not exist``), which also breaks ``import transformers`` (it imports
    torchvision when installed). So on such machines torchdistill is installed without torchvision and the
    names it imports resolve to placeholders that raise if anything ever builds an image model. The stand-in
    lives in ``sys.modules`` only while torchdistill is imported, so nothing else (transformers) sees it.
    """
    import importlib.machinery
    import types

    def unavailable(*args, **kwargs):
        raise ImportError("torchvision is not installed; this benchmark stubs it for torchdistill's imports only")

    class Unavailable(torch.nn.Module):
        expansion = 1

        def __init__(self, *args, **kwargs):
            unavailable()

    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    placeholders = {name: type(name, (Unavailable,), {}) for name in ("BasicBlock", "_DenseBlock", "_Transition")}
    models = module("torchvision.models", detection=module("torchvision.models.detection"),
                    segmentation=module("torchvision.models.segmentation"),
                    quantization=module("torchvision.models.quantization"),
                    resnet=module("torchvision.models.resnet", BasicBlock=placeholders["BasicBlock"],
                                  conv1x1=unavailable),
                    densenet=module("torchvision.models.densenet", _DenseBlock=placeholders["_DenseBlock"],
                                    _Transition=placeholders["_Transition"]))
    module("torchvision", __version__="stub", models=models, datasets=module("torchvision.datasets"))
    return [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]


def import_torchdistill():
    """Import torchdistill's modules this benchmark uses (with the torchvision stand-in when needed)."""
    import importlib.util

    if importlib.util.find_spec("torchdistill") is None:
        sys.exit("torchdistill is not installed; on a CPU-only torch: pip install --no-deps torchdistill")
    stubbed = _stub_torchvision() if importlib.util.find_spec("torchvision") is None else []
    try:
        import torchdistill
        import torchdistill.core.distillation  # noqa: F401  (imports its models, datasets, losses, optim)
    finally:
        for name in stubbed:
            sys.modules.pop(name, None)
    return torchdistill


def recipe_tree(out: Path, logit_cache: Path, teacher_dir: Path, args, online: bool = False) -> dict:
    return {
        "task": "sst2",
        "output_dir": str(out),
        "data": {"dir": args.data_dir, "max_train_examples": args.train_examples,
                 "max_eval_examples": args.eval_examples},
        "teacher": {"model": str(teacher_dir), "max_length": MAX_LENGTH, "batch_size": 128},
        "student": {"kind": "bilstm", "max_length": MAX_LENGTH, "hidden_size": 300, "mlp_hidden_size": 400,
                    "dropout": 0.1},
        "loss": {"kind": "kl", "temperature": args.temperature, "alpha": 0.0},
        "train": {"epochs": args.epochs, "batch_size": BATCH_SIZE, "lr": LR, "weight_decay": 0.0,
                  "warmup_ratio": 0.0, "max_grad_norm": MAX_GRAD_NORM, "seed": SEED, "log_with": []},
        "cache": {"enabled": not online, "dir": str(logit_cache)},
        "measure": {"latency": False},
    }


@contextlib.contextmanager
def record_initial_student(store: dict):
    """Record the student distilkit's run builds (weights, and the global RNG state right after building).

    Only observes: ``distill.run`` looks ``make_student`` up in its module, so wrapping it there lets the
    torchdistill side start from exactly the same weights instead of from "the same seed".
    """
    original = distill.make_student

    def wrapper(*args, **kwargs):
        model, tokenizer = original(*args, **kwargs)
        store["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        store["rng"] = torch.get_rng_state()
        return model, tokenizer

    distill.make_student = wrapper
    try:
        yield store
    finally:
        distill.make_student = original


def dev_logits(model, tokenizer, rows: list[dict]) -> torch.Tensor:
    """Logits on ``rows`` through distilkit's own eval loader and collate (``encode_bilstm`` inputs).

    Going through a DataLoader matters beyond sameness: creating its iterator draws one number from the
    global torch RNG, as distilkit's per-epoch evaluation does, so both sides' dropout streams stay aligned.
    """
    collate = make_collate(encode_bilstm, tokenizer, MAX_LENGTH, "single_label_classification")
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        logits = [model(**model_inputs(batch)).logits.float() for batch in eval_loader(rows, collate, 2 * BATCH_SIZE)]
    model.train(was_training)
    return torch.cat(logits)


def dev_accuracy(model, tokenizer, rows: list[dict], task) -> float:
    """The one evaluation both students get: :func:`dev_logits`, then distilkit's compute_metrics."""
    return compute_metrics(task, dev_logits(model, tokenizer, rows).numpy(), [r["label"] for r in rows])["accuracy"]


def run_distilkit(work: Path, teacher_dir: Path, args, task, dev_rows, online: bool = False) -> dict:
    """distilkit's recipe entry point; returns timings and the best/last-epoch dev accuracy."""
    name = "distilkit-online" if online else "distilkit"
    store: dict = {}
    recipe = validate_recipe(recipe_tree(work / name, work / f"{name}-logit-cache", teacher_dir, args, online))
    with record_initial_student(store):
        metrics = distill.run(recipe)
    train = metrics["train"]
    best = AutoModelForSequenceClassification.from_pretrained(work / name / "model")
    tokenizer = AutoTokenizer.from_pretrained(work / name / "model")
    last = copy.deepcopy(best)
    checkpoint = sorted((work / name / "checkpoints").glob("step-*"))[-1]
    last.load_state_dict(load_file(checkpoint / "model.safetensors"))
    return {"recipe": recipe, "init": store, "metrics": metrics, "model": last, "tokenizer": tokenizer,
            "seconds": train["seconds"], "examples_per_second": train["examples_per_second"],
            "examples_seen": train["examples_seen"], "teacher_seconds": train["teacher_labelling_seconds"],
            "best": dev_accuracy(best, tokenizer, dev_rows, task), "last": dev_accuracy(last, tokenizer, dev_rows, task),
            "own_best": metrics["student"]["metrics"]["accuracy"], "best_epoch": metrics["student"]["best_epoch"],
            "teacher_accuracy": metrics["teacher"]["metrics"]["accuracy"],
            "history": [r[f"{metrics['eval_split']}/accuracy"] for r in metrics["history"]]}


def run_torchdistill(recipe, init: dict, teacher_dir: Path, args, task, train_rows, dev_rows) -> dict:
    """The same distillation through torchdistill's DistillationBox; teacher online every step."""
    torchdistill = import_torchdistill()
    from torchdistill.core.distillation import get_distillation_box
    from torchdistill.core.interfaces.registry import register_forward_proc_func
    from torchdistill.datasets.registry import register_collate_func
    from torchdistill.optim.registry import register_scheduler

    teacher = load_hf_teacher(str(teacher_dir), num_labels=task.num_labels, problem_type=task.problem_type,
                              max_length=MAX_LENGTH)
    student, tokenizer = distill.make_student(recipe, task, teacher, train_rows)  # distilkit's builder and arguments
    student.load_state_dict(init["state"])  # ... and the very weights distilkit's run started from
    clock = {"teacher": 0.0}

    # torchdistill's extension points: a collate function, forward procs and a scheduler, registered by key.
    @register_collate_func(key="bench_sst2_teacher_student_collate")
    def collate(items):
        texts = [row["text_a"] for row, _, _ in items]
        tick = time.perf_counter()  # the teacher's tokenization is teacher work (distilkit does it when labelling)
        teacher_inputs = dict(teacher.tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding=True,
                                                return_tensors="pt"))
        clock["teacher"] += time.perf_counter() - tick
        sample_batch = {"student": encode_bilstm(tokenizer, texts, None, MAX_LENGTH), "teacher": teacher_inputs}
        return sample_batch, torch.tensor([target for _, target, _ in items]), {}

    @register_forward_proc_func(key="bench_teacher_inputs")
    def forward_teacher(model, sample_batch, targets=None, supp_dict=None, **kwargs):
        tick = time.perf_counter()
        out = model(**sample_batch["teacher"])
        clock["teacher"] += time.perf_counter() - tick
        return out

    @register_forward_proc_func(key="bench_student_inputs")
    def forward_student(model, sample_batch, targets=None, supp_dict=None, **kwargs):
        return model(**sample_batch["student"])

    register_scheduler(key="get_linear_schedule_with_warmup")(get_linear_schedule_with_warmup)

    def epoch_sampler(dataset, seed):
        return EpochShuffleSampler(len(dataset), seed)

    steps_per_epoch = -(-len(train_rows) // BATCH_SIZE)
    hooks = {"input": [], "output": ["classifier"]}  # classifier output = logits, for both models
    train_config = {
        "num_epochs": args.epochs,
        "train_data_loader": {
            "dataset_id": "train", "requires_supp": True, "collate_fn": "bench_sst2_teacher_student_collate",
            "sampler": {"class_or_func": epoch_sampler, "kwargs": {"seed": SEED}},
            "kwargs": {"batch_size": BATCH_SIZE, "num_workers": 0,
                       "generator": torch.Generator().manual_seed(SEED)},
        },
        "teacher": {"forward_proc": "bench_teacher_inputs", "forward_hook": hooks, "requires_grad": False},
        "student": {"forward_proc": "bench_student_inputs", "forward_hook": hooks, "requires_grad": True},
        "optimizer": {"key": "AdamW", "kwargs": {"lr": LR, "weight_decay": 0.0}, "max_grad_norm": MAX_GRAD_NORM},
        "scheduler": {"key": "get_linear_schedule_with_warmup", "scheduling_step": 1,
                      "kwargs": {"num_warmup_steps": 0, "num_training_steps": args.epochs * steps_per_epoch}},
        "criterion": {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": {
            "criterion": {"key": "KDLoss", "kwargs": {
                "student_module_path": "classifier", "student_module_io": "output",
                "teacher_module_path": "classifier", "teacher_module_io": "output",
                "temperature": args.temperature, "alpha": 0.0, "reduction": "batchmean"}},
            # KDLoss with alpha 0 returns the bare KL; Hinton's (and distilkit's) T^2 factor goes in the weight.
            "weight": args.temperature ** 2}}}},
    }

    class Rows(torch.utils.data.Dataset):  # (sample, target) pairs, as torchdistill's dataset wrapper expects
        def __len__(self):
            return len(train_rows)

        def __getitem__(self, index):
            return train_rows[index], train_rows[index]["label"]

    box = get_distillation_box(teacher.model, student, {"train": Rows()}, train_config, torch.device("cpu"),
                               None, False, 1)
    torch.set_rng_state(init["rng"])  # dropout draws continue from where distilkit's started training
    epoch_seconds, accuracies, best_acc, best_epoch, examples = [], [], -1.0, None, 0
    for epoch in range(args.epochs):
        tick = time.perf_counter()
        box.train_data_loader.sampler.set_epoch(epoch)  # what torchdistill does for its DistributedSampler
        box.pre_epoch_process(epoch=epoch)
        for sample_batch, targets, supp_dict in box.train_data_loader:
            box.pre_forward_process(sample_batch, targets, supp_dict)
            loss = box.forward_process(sample_batch, targets, supp_dict)
            box.post_forward_process(loss)
            examples += len(targets)
        box.post_epoch_process()
        epoch_seconds.append(time.perf_counter() - tick)
        accuracies.append(dev_accuracy(box.student_model, tokenizer, dev_rows, task))
        if accuracies[-1] > best_acc:
            best_acc, best_epoch = accuracies[-1], epoch
    seconds = sum(epoch_seconds)
    return {"version": torchdistill.__version__, "seconds": seconds, "epoch_seconds": epoch_seconds,
            "examples_seen": examples, "examples_per_second": examples / seconds, "teacher_seconds": clock["teacher"],
            "best": best_acc, "best_epoch": best_epoch, "last": accuracies[-1], "history": accuracies,
            "teacher_steps": args.epochs * steps_per_epoch, "model": box.student_model, "tokenizer": tokenizer}


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--train-examples", type=int, default=20000, help="SST-2 train sentences (transfer set)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-examples", type=int, default=None, help="SST-2 dev subset (default: all 872)")
    parser.add_argument("--temperature", type=float, default=2.0, help="KD temperature of both frameworks")
    parser.add_argument("--distilkit-online", action="store_true",
                        help="also run distilkit with cache.enabled: false (teacher every step, like torchdistill)")
    args = parser.parse_args()
    if args.quick:
        args.train_examples, args.epochs, args.eval_examples = 400, 1, 200
    require_sst2(args.data_dir)
    import_torchdistill()  # fail before any training if it is missing

    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-torchdistill-"))
    task = load_task("sst2")
    teacher_dir = sst2_minilm_teacher(args.data_dir, args.cache_dir)
    train, dev = sst2_splits(args.data_dir, train_examples=args.train_examples, eval_examples=args.eval_examples,
                             seed=SEED)  # the very subsets distilkit's run loads (same sizes and seed)
    train_rows, dev_rows = list(train), list(dev)

    dk = run_distilkit(work, teacher_dir, args, task, dev_rows)
    dk_online = run_distilkit(work, teacher_dir, args, task, dev_rows, online=True) if args.distilkit_online else None
    td = run_torchdistill(dk["recipe"], dk["init"], teacher_dir, args, task, train_rows, dev_rows)
    total = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    # How alike the two trained students are: same predictions on dev, largest weight difference.
    dk_logits, td_logits = (dev_logits(r["model"], r["tokenizer"], dev_rows) for r in (dk, td))
    agreement = (dk_logits.argmax(-1) == td_logits.argmax(-1)).float().mean().item()
    td_state = td["model"].state_dict()
    weight_diff = max((v.float() - td_state[k].float()).abs().max().item() for k, v in dk["model"].state_dict().items())

    dk_end_to_end = dk["teacher_seconds"] + dk["seconds"]
    n_dev = len(dev_rows)

    def row(label, r, teacher_cell, end_to_end):
        per_epoch = r["seconds"] / args.epochs
        return (f"| {label} | {args.epochs} | {per_epoch:.1f} | {r['examples_per_second']:,.0f} | {teacher_cell} | "
                f"{r['best']:.4f} | {r['last']:.4f} | {td['seconds'] / r['seconds']:.2f}× | "
                f"{td['seconds'] / end_to_end:.2f}× |")

    lines = [
        "## distilkit vs torchdistill: the same MiniLM → BiLSTM distillation on SST-2",
        "",
        command_line(total, details=(f"torch {torch.__version__}", f"torchdistill {td['version']}"))
        + " The frameworks ran one after the other in the same process.",
        "",
        f"Both train the same Tang et al. BiLSTM (teacher's 384-d WordPiece embeddings, 300 hidden per direction, "
        f"400-unit ReLU layer, dropout 0.1; identical initial weights) from the same fine-tuned MiniLM teacher "
        f"(dev accuracy {dk['teacher_accuracy']:.4f}) on the same {args.train_examples:,} SST-2 train sentences in "
        f"the same order, for {args.epochs} epoch{'s' if args.epochs > 1 else ''}: Hinton KD loss T² · KL at T = {args.temperature:g} (no gold "
        f"labels), AdamW lr {LR:g} without weight decay, linear decay to 0, gradient norm clipped at "
        f"{MAX_GRAD_NORM:g}, batch {BATCH_SIZE}, max_length {MAX_LENGTH}. Both students are scored by one function "
        f"on SST-2 dev ({n_dev} sentences) after every epoch; \"best\" is the best epoch (what distilkit keeps), "
        "\"last\" the final one.",
        "",
        "| framework | epochs | wall time per epoch (s) | examples/s | teacher time (s) | dev acc (best) | "
        "dev acc (last) | per-epoch speed-up vs torchdistill | end-to-end speed-up vs torchdistill |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        row("distilkit (cached teacher logits)", dk,
            f"{dk['teacher_seconds']:.1f} (once, before training)", dk_end_to_end),
    ]
    if dk_online is not None:
        lines.append(row("distilkit (`cache.enabled: false`, teacher every step)", dk_online,
                         "in the loop (not split out)", dk_online["seconds"]))
    lines += [
        row("torchdistill (teacher every step)", td,
            f"{td['teacher_seconds']:.1f} (in the loop, all epochs)", td["seconds"]),
        "",
        "What each side did. **distilkit**: `distilkit.run.distill.run(validate_recipe(tree))`, the `distilkit run` "
        "code path, with `loss: {kind: kl, temperature: "
        f"{args.temperature:g}, alpha: 0}}`; the teacher labelled the {args.train_examples:,} sentences once "
        f"(batch 128, in a fresh logit cache, so the labelling was timed: {dk['teacher_seconds']:.1f} s, shown as "
        "teacher time and not part of the per-epoch time), then each epoch trained on the cached logits; per-epoch "
        "time and examples/s are `train.seconds` / epochs and `train.examples_per_second` of its metrics.json "
        "(training loop only, evaluation and checkpoints excluded). **torchdistill**: "
        "`torchdistill.core.distillation.get_distillation_box` with a config dict built in Python and the "
        "already-built teacher and student objects: its train data loader (the same `EpochShuffleSampler`, a "
        "registered collate function that tokenizes each batch for both models), registered forward procs that "
        "pass each model its own inputs (the student's word ids, the teacher's `[CLS] … [SEP]` ids), forward hooks "
        "on both `classifier` layers, `KDLoss` (alpha 0) in a `WeightedSumLoss` with weight T², its AdamW, "
        "`max_grad_norm` clipping and a step-wise registered `get_linear_schedule_with_warmup`, and its "
        "pre/post-epoch and post-forward processes (backward, clipping, optimizer and scheduler steps), driven by "
        "the loop of torchdistill's example scripts. torchdistill has no teacher-output cache, so its teacher "
        f"tokenized and ran forward on every batch ({td['teacher_steps']:,} times, batch {BATCH_SIZE}); "
        f"{td['teacher_seconds']:.1f} s of its {td['seconds']:.1f} s went to that, leaving "
        f"{(td['seconds'] - td['teacher_seconds']) / args.epochs:.1f} s per epoch of student work against "
        f"distilkit's {dk['seconds'] / args.epochs:.1f} s. Speed-ups are torchdistill's time over the row's: "
        "per epoch (training loops only), and end to end (teacher labelling + all epochs; for torchdistill and "
        "an online row that is the training loops). distilkit's own score of its best epoch: "
        f"{dk['own_best']:.4f} (epoch {dk['best_epoch']}); per-epoch dev accuracy distilkit "
        f"{', '.join(f'{a:.4f}' for a in dk['history']) or 'n/a'}, torchdistill "
        f"{', '.join(f'{a:.4f}' for a in td['history'])}. The two final students predict the same class for "
        f"{100 * agreement:.1f}% of the dev sentences; their largest weight difference is {weight_diff:.2g} (same "
        "initial weights, example order and dropout masks: what differs is rounding, from teacher logits computed "
        "in batches of 128 vs 50 and from the two KL implementations).",
    ]
    publish(BEGIN, END, lines, args)


if __name__ == "__main__":
    main()
