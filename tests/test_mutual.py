"""Deep mutual learning (``loss.mutual``, Zhang et al. 2018): the loss against a hand computation, the peers'
training (objective, gradient accumulation, data parallel), and end-to-end runs on tiny random teachers."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)

from distilkit.cli import main as cli_main
from distilkit.data.tasks import load_split, load_task
from distilkit.methods.distillation.config import LossConfig, MutualConfig
from distilkit.methods.distillation.hooks import MutualLearningHooks
from distilkit.methods.distillation.mutual import make_peer, mutual_loss
from distilkit.models.bilstm import encode_bilstm
from distilkit.models.bilstm_build import build_bilstm_student
from distilkit.models.inference import evaluate_model
from distilkit.run.distill import run
from distilkit.run.recipe_io import dump_recipe, validate_recipe

from .conftest import make_tiny_teacher
from .test_distill import tiny_recipe, write_recipe

CLASSIFICATION, REGRESSION = "single_label_classification", "regression"
TEXTS = ["a gorgeous , witty film", "dull and lifeless", "the plot is thin", "an utter delight",
         "i hated every minute", "warm , funny and wise", "it never takes off", "a small triumph"]


# --- plain-torch reference computations (independent of distilkit's losses) ---------------------------------------

def hand_kl(student: torch.Tensor, target: torch.Tensor, t: float) -> torch.Tensor:
    """``T^2 * mean_batch sum_c p_target log(p_target / p_student)`` at temperature ``t``."""
    p = torch.softmax(target / t, dim=-1)
    return (p * (torch.log(p) - torch.log_softmax(student / t, dim=-1))).sum(-1).mean() * t * t


def hand_mutual(student: torch.Tensor, others: list[torch.Tensor], t: float, regression: bool) -> torch.Tensor:
    """Zhang et al. eq. 10's ``1/(K-1) sum_l D(p_l || p_k)``, others detached."""
    terms = [((student - o.detach()) ** 2).sum(-1).mean() if regression else hand_kl(student, o.detach(), t)
             for o in others]
    return sum(terms) / len(terms)


def hand_distill(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    return hand_kl(student, teacher, t)  # loss.kind: kl, alpha 0


# --- tiny students and batches ------------------------------------------------------------------------------------

def tiny_bilstm(tokenizer_dir: Path, num_labels: int = 2, seed: int = 0):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    model = build_bilstm_student(tokenizer=tokenizer, num_labels=num_labels,
                                 problem_type=REGRESSION if num_labels == 1 else CLASSIFICATION, is_pair=False,
                                 embedding_dim=16, hidden_size=8, mlp_hidden_size=8, dropout=0.0)
    return model, tokenizer


def batch_of(tokenizer, texts: list[str], num_labels: int = 2, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = dict(encode_bilstm(tokenizer, texts, None, 16))
    batch["teacher_logits"] = 3 * torch.randn(len(texts), num_labels, generator=g)
    batch["labels"] = torch.randint(0, max(num_labels, 2), (len(texts),), generator=g)
    batch["texts"], batch["text_pairs"], batch["ids"] = texts, None, list(range(len(texts)))
    return batch


def inputs_of(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits", "ids", "texts", "text_pairs")}


def make_hooks(students: int = 2, weight: float = 1.0, temperature: float = 2.0, problem_type: str = CLASSIFICATION,
               grad_accum: int = 1, lr: float = 1e-2, max_grad_norm: float | None = None) -> MutualLearningHooks:
    loss = LossConfig(kind="kl" if problem_type == CLASSIFICATION else "mse", temperature=3.0)
    cfg = MutualConfig(students=students, weight=weight, temperature=temperature)
    return MutualLearningHooks(cfg, loss, problem_type=problem_type, scope="all_but_embeddings", seed=42, lr=lr,
                               max_grad_norm=max_grad_norm, grad_accum=grad_accum)


class Out:
    def __init__(self, logits):
        self.logits = logits


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


# --- the loss ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("students", [2, 3])
@pytest.mark.parametrize("problem_type", [CLASSIFICATION, REGRESSION])
def test_mutual_loss_matches_hand_computation(students, problem_type):
    g = torch.Generator().manual_seed(students)
    width = 1 if problem_type == REGRESSION else 3
    cohort = [torch.randn(5, width, generator=g) * 2 for _ in range(students)]
    student = cohort[0].clone().requires_grad_()
    got = mutual_loss(student, cohort[1:], temperature=2.0, problem_type=problem_type)
    want = hand_mutual(student, cohort[1:], 2.0, problem_type == REGRESSION)
    torch.testing.assert_close(got, want)
    # The targets are detached: the gradient reaches the student being trained only.
    others = [z.clone().requires_grad_() for z in cohort[1:]]
    mutual_loss(student, others, temperature=2.0, problem_type=problem_type).backward()
    assert student.grad.abs().sum() > 0 and all(o.grad is None for o in others)
    with pytest.raises(ValueError, match="at least one other student"):
        mutual_loss(student, [], problem_type=problem_type)


@pytest.mark.parametrize("students", [2, 3])
def test_hooks_return_main_term_and_train_peers_on_their_own_objective(tiny_tokenizer_dir, students):
    student, tokenizer = tiny_bilstm(tiny_tokenizer_dir)
    hooks = make_hooks(students=students, weight=0.7)
    hooks.prepare_student(student)
    before = [copy.deepcopy(p) for p in hooks.peers.models]  # untouched copies for the hand computation
    batch = batch_of(tokenizer, TEXTS)
    main = student(**inputs_of(batch)).logits
    hooks.distillation_weight(0, 10)
    terms = hooks.extra_losses(student, batch=batch, outputs=Out(main))

    peer_logits = [p(**inputs_of(batch)).logits for p in before]
    torch.testing.assert_close(terms["mutual"], 0.7 * hand_mutual(main, peer_logits, 2.0, False))
    # Each peer's gradient is that of its own loss: distillation from the teacher (KL at loss.temperature 3)
    # plus 0.7 x its mean KL to the other students, the main one included.
    for k, (copy_k, peer) in enumerate(zip(before, hooks.peers.models)):
        cohort = [main, *peer_logits]
        own = copy_k(**inputs_of(batch)).logits
        hand = hand_distill(own, batch["teacher_logits"], 3.0) + 0.7 * hand_mutual(
            own, [z for j, z in enumerate(cohort) if j != k + 1], 2.0, False)
        grads = torch.autograd.grad(hand, [copy_k.classifier.weight, copy_k.lstm.weight_hh_l0])
        torch.testing.assert_close(peer.classifier.weight.grad, grads[0])
        torch.testing.assert_close(peer.lstm.weight_hh_l0.grad, grads[1])
    assert student.classifier.weight.grad is None, "the hooks must leave the main student's backward to the loop"


def test_main_gradient_includes_the_mutual_term(tiny_tokenizer_dir):
    student, tokenizer = tiny_bilstm(tiny_tokenizer_dir)
    batch = batch_of(tokenizer, TEXTS)
    grads, peer_logits = {}, None
    for weight in (0.0, 1.5):
        main_student = copy.deepcopy(student)
        hooks = make_hooks(weight=weight)
        hooks.prepare_student(main_student)
        if peer_logits is None:
            peer_logits = [p(**inputs_of(batch)).logits.detach() for p in hooks.peers.models]
        main = main_student(**inputs_of(batch)).logits
        loss = hand_distill(main, batch["teacher_logits"], 3.0)
        for term in hooks.extra_losses(main_student, batch=batch, outputs=Out(main)).values():
            loss = loss + term
        loss.backward()
        grads[weight] = main_student.classifier.weight.grad.clone()
    # The difference is exactly the gradient of 1.5 x KL(p_peer || p_main), computed by hand.
    main = student(**inputs_of(batch)).logits
    (want,) = torch.autograd.grad(1.5 * hand_mutual(main, peer_logits, 2.0, False), [student.classifier.weight])
    assert want.abs().sum() > 0
    torch.testing.assert_close(grads[1.5] - grads[0.0], want)


def test_peers_start_different_and_train(tiny_tokenizer_dir):
    student, tokenizer = tiny_bilstm(tiny_tokenizer_dir)
    start = params(student)
    hooks = make_hooks(students=3)
    hooks.prepare_student(student)
    peers = [params(p) for p in hooks.peers.models]
    assert params(student).keys() == start.keys() and all(torch.equal(v, start[k]) for k, v in params(student).items())
    for peer in peers:  # the teacher's word vectors are kept; everything else drawn from the peer's own seed
        assert torch.equal(peer["embeddings.weight"], start["embeddings.weight"])
        for name in ("lstm.weight_ih_l0", "lstm.weight_hh_l0", "mlp.weight", "classifier.weight"):
            assert not torch.equal(peer[name], start[name]), name
    assert not torch.equal(peers[0]["mlp.weight"], peers[1]["mlp.weight"])
    # Same seed, same peer: the draw is reproducible and leaves the global random state alone.
    state = torch.get_rng_state()
    again = make_peer(student, "all_but_embeddings", 43)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(v, peers[0][k]) for k, v in params(again).items())

    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    for step in range(3):
        batch = batch_of(tokenizer, TEXTS, seed=step)
        hooks.distillation_weight(step, 3)
        main = student(**inputs_of(batch)).logits
        loss = hand_distill(main, batch["teacher_logits"], 3.0) + sum(
            hooks.extra_losses(student, batch=batch, outputs=Out(main)).values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        hooks.after_step(student, step + 1, 3)
    for before, peer in zip(peers, hooks.peers.models):
        now = params(peer)
        assert not torch.equal(now["classifier.weight"], before["classifier.weight"]), "a peer did not train"
        assert not torch.equal(now["embeddings.weight"], before["embeddings.weight"])
        assert all(p.grad is None for p in peer.parameters()), "peer gradients must be cleared after the step"
    assert not torch.equal(params(hooks.peers.models[0])["mlp.weight"], params(student)["mlp.weight"])


def test_transformer_peers_over_teacher_layers_redraw_the_head_only():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=2)
    student = BertForSequenceClassification(config)
    for param in student.parameters():  # as after from_pretrained: transformers 5 marks weights as loaded
        param._is_hf_initialized = True
    peer, start = make_peer(student, "head", 7), params(student)
    now = params(peer)
    assert all(torch.equal(now[k], start[k]) for k in start if k.startswith("bert."))
    assert not torch.equal(now["classifier.weight"], start["classifier.weight"])
    assert all(torch.equal(v, start[k]) for k, v in params(make_peer(student, "none", 7)).items())


def run_peers(student, tokenizer, chunks: list[list[str]], grad_accum: int) -> dict[str, torch.Tensor]:
    """One optimizer step of a peer over ``chunks`` (one forward each): the gradients its AdamW stepped on
    (``grad/<name>``: AdamW's first step ignores their scale, so they are compared themselves) and the weights."""
    hooks = make_hooks(grad_accum=grad_accum, max_grad_norm=1e3)
    hooks.prepare_student(student)
    hooks.distillation_weight(0, 4)
    seen = {}
    for chunk in chunks:
        batch = batch_of(tokenizer, chunk, seed=len(chunk))
        index = torch.tensor([float(TEXTS.index(text)) for text in chunk])  # each sentence its own target
        batch["teacher_logits"] = 3 * torch.stack([index.sin(), index.cos()], dim=1)
        main = student(**inputs_of(batch)).logits
        hooks.extra_losses(student, batch=batch, outputs=Out(main))
    peer = hooks.peers.models[0]
    hooks.peers.optimizers[0].register_step_pre_hook(lambda *_: seen.update(
        {f"grad/{k}": v.grad.clone() for k, v in peer.named_parameters()}))
    hooks.after_step(student, 1, 4)
    return {**seen, **params(hooks.peers.models[0])}


def test_gradient_accumulation_matches_one_large_batch(tiny_tokenizer_dir):
    student, tokenizer = tiny_bilstm(tiny_tokenizer_dir)
    whole = run_peers(copy.deepcopy(student), tokenizer, [TEXTS], grad_accum=1)
    halves = run_peers(copy.deepcopy(student), tokenizer, [TEXTS[:4], TEXTS[4:]], grad_accum=2)
    start = params(make_peer(student, "all_but_embeddings", 43))
    assert not torch.equal(whole["mlp.weight"], start["mlp.weight"])
    assert "grad/mlp.weight" in whole
    for name, value in whole.items():  # one step, on the mean gradient of the two halves
        torch.testing.assert_close(halves[name], value, msg=name)


def _data_parallel_worker(rank: int, port: int, tokenizer_dir: str, result: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        student, tokenizer = tiny_bilstm(Path(tokenizer_dir))
        weights = run_peers(student, tokenizer, [TEXTS[4 * rank:4 * rank + 4]], grad_accum=1)
        torch.save(weights, f"{result}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes (gloo)
def test_data_parallel_peers_match_one_process_on_the_global_batch(tiny_tokenizer_dir, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = str(tmp_path / "peer")
    mp.spawn(_data_parallel_worker, args=(port, str(tiny_tokenizer_dir), result), nprocs=2, join=True)
    ranks = [torch.load(f"{result}.{rank}") for rank in range(2)]
    student, tokenizer = tiny_bilstm(tiny_tokenizer_dir)
    single = run_peers(student, tokenizer, [TEXTS], grad_accum=1)
    # Each rank saw half the batch; both step on the whole batch's mean gradient and stay identical.
    for name, value in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the two processes"
        torch.testing.assert_close(ranks[0][name], value, msg=name)


# --- end to end ---------------------------------------------------------------------------------------------------

def train_records(out: Path) -> list[dict]:
    lines = (out / "logs" / "train_log.jsonl").read_text().splitlines()
    return [rec for rec in map(json.loads, lines) if "train/loss" in rec]


def test_end_to_end_logs_mutual_and_saves_peers(tmp_path, tiny_teacher_dir):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, loss={"kind": "kl", "temperature": 2.0,
                                                         "mutual": {"students": 2, "save_peers": True}},
                       train={"epochs": 1}, measure={"latency": False})
    metrics = run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    records = train_records(out)
    assert records and all(rec["train/mutual"] > 0 for rec in records)
    assert all(rec["train/loss"] == pytest.approx(rec["train/soft_kl"] + rec["train/mutual"], rel=1e-5)
               for rec in records)
    report = json.loads((out / "mutual.json").read_text())
    assert report["students"] == 2 and report["peer_init"] == "all_but_embeddings"
    assert [p["path"] for p in report["peers"]] == ["peers/1"]
    assert metrics["student"]["mutual"] == report  # the method's part of metrics.json (Method.metrics)

    peer = AutoModelForSequenceClassification.from_pretrained(out / "peers" / "1", trust_remote_code=True)
    main = AutoModelForSequenceClassification.from_pretrained(out / "model", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(out / "peers" / "1")
    inputs = encode_bilstm(tokenizer, TEXTS, None, 32)
    with torch.no_grad():
        assert not torch.allclose(peer(**inputs).logits, main(**inputs).logits)
    # mutual.json's score is the saved peer's, evaluated independently here.
    task = load_task("sst2")
    dev = load_split(task, "validation", data_dir=tree["data"]["dir"], max_examples=64, seed=42)
    assert report["peers"][0]["metrics"] == evaluate_model(peer, encode_bilstm, tokenizer, 32, dev, task)
    assert set(metrics["student"]["metrics"]) == {"accuracy"}


def test_end_to_end_regression_three_students_without_cache(tmp_path, tiny_tokenizer_dir):
    teacher = make_tiny_teacher(tmp_path / "reg-teacher", tiny_tokenizer_dir, num_labels=1, problem_type=REGRESSION)
    tree = tiny_recipe(tmp_path, teacher, task="stsb", data={"max_train_examples": 32, "max_eval_examples": 24},
                       loss={"kind": "mse", "mutual": {"students": 3, "weight": 0.5}}, cache={"enabled": False},
                       train={"epochs": 1}, measure={"latency": False})
    run(validate_recipe(tree))
    out = Path(tree["output_dir"])
    assert all(rec["train/mutual"] > 0 for rec in train_records(out))
    report = json.loads((out / "mutual.json").read_text())
    assert [p["seed"] for p in report["peers"]] == [43, 44] and not (out / "peers").exists()
    assert all({"pearson", "spearmanr"} <= set(p["metrics"]) for p in report["peers"])


def test_validate_names_bad_mutual_keys(tmp_path, tiny_teacher_dir, capsys):
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, loss={"mutual": {"students": 1}})
    assert cli_main(["validate", write_recipe(tmp_path, tree)]) == 2
    assert "loss.mutual.students: Value error, mutual learning trains at least 2 students" in capsys.readouterr().err
    tree["loss"]["mutual"] = {"students": 2}
    path = write_recipe(tmp_path, tree)
    assert cli_main(["validate", path]) == 0
    capsys.readouterr()
    assert cli_main(["validate", path, "--set", "train.resume_from=latest"]) == 2
    assert "train.resume_from: \"latest\" conflicts with loss.mutual" in capsys.readouterr().err
    assert cli_main(["validate", path, "--set", "train.epochs=0"]) == 2
    assert "loss.mutual: {\"students\": 2} means nothing with train.epochs: 0" in capsys.readouterr().err
    assert cli_main(["validate", path, "--set", "train.epochs=0", "--set", "loss.mutual=null"]) == 0
    capsys.readouterr()
    tree["train"]["epochs"], tree["loss"]["mutual"] = 1, {"students": 2, "init": "copy", "seed": 3}
    assert cli_main(["validate", write_recipe(tmp_path, tree)]) == 2
    assert "loss.mutual.seed: 3 means nothing with loss.mutual.init: \"copy\"" in capsys.readouterr().err
    # The resolved dump (output_dir/recipe.yaml writes every default, seed: null included) validates again.
    tree["loss"]["mutual"] = {"students": 2, "init": "copy"}
    recipe = validate_recipe(tree)
    assert validate_recipe(yaml.safe_load(dump_recipe(recipe))) == recipe
    assert not Path(tree["output_dir"]).exists()


def test_example_recipe_validates():
    from distilkit.run.recipe_io import load_recipe

    root = Path(__file__).resolve().parent.parent
    recipe = load_recipe(root / "recipes" / "sst2-mutual-bilstm.yaml", ["data.dir=tests/fixtures/glue"])
    assert recipe.loss.mutual.students == 2


def test_kl_on_hand_formula_is_torch_kl():
    # The reference itself, against torch's own KL (so a wrong reference cannot pass the tests above).
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    torch_kl = F.kl_div(torch.log_softmax(a / 2, -1), torch.softmax(b / 2, -1), reduction="batchmean") * 4
    torch.testing.assert_close(hand_kl(a, b, 2.0), torch_kl)


@pytest.mark.slow
def test_two_process_accelerate_run_with_peers(tmp_path, tiny_teacher_dir):
    import shutil
    import subprocess
    import sys

    from .test_distributed import free_port

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate CLI not on PATH")
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, loss={"mutual": {"students": 2, "save_peers": True}},
                       train={"epochs": 1}, measure={"latency": False})
    path = write_recipe(tmp_path, tree)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--main_process_port", str(free_port()), "-m", "distilkit", "run", path]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = Path(tree["output_dir"])
    assert json.loads((out / "metrics.json").read_text())["train"]["num_processes"] == 2
    assert all(rec["train/mutual"] > 0 for rec in train_records(out))
    assert (out / "peers" / "1" / "model.safetensors").is_file()
    assert 0 <= json.loads((out / "mutual.json").read_text())["peers"][0]["metrics"]["accuracy"] <= 1


def test_mutual_is_switched_on_by_its_section_and_comes_first(tmp_path, tiny_teacher_dir):
    from distilkit.run.methods import active_methods

    tree = tiny_recipe(tmp_path, tiny_teacher_dir, quantize={"linear": "int8", "qat": True},
                       loss={"mutual": {"students": 3}})
    assert [m.name for m in active_methods(validate_recipe(tree))] == ["mutual", "quantization"]
    del tree["loss"]["mutual"]
    assert [m.name for m in active_methods(validate_recipe(tree))] == ["quantization"]
