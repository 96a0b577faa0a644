"""Deep mutual learning: several students trained together, each distilling from the others (``loss.mutual``).

Zhang, Xiang, Hospedales and Lu 2018, "Deep Mutual Learning" (CVPR). A cohort of ``K`` networks trains at once;
network ``k`` minimises its own supervised loss plus the mean KL divergence from every other network's
prediction to its own (eq. 2 for two networks, eq. 10 for ``K``)::

    L_k = L_C(p_k) + 1 / (K - 1) * sum_{l != k} D_KL(p_l || p_k)

Here ``L_C`` is the recipe's distillation loss against the teacher (:mod:`losses`: logit MSE, temperature KL, the
hard-label mix, an ensemble's per-teacher sum), so a student learns from the teacher *and* its peers -- the
"collaborative learning" of the compression literature. For regression (STS-B), where there is no class
distribution, ``D`` is the squared error between the two predictions.

The main student is the one the recipe program trains, evaluates and saves; :class:`Peers` holds the ``K - 1``
others, each with its own AdamW and learning-rate schedule shaped like the main one. All predictions of a step
come from the same weights (the students update simultaneously, as common DML implementations do, rather than
Zhang et al.'s alternating Algorithm 1, which recomputes ``p_1`` after updating ``Theta_2``); the targets are
always detached, so each student's gradient flows through its own prediction only.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from transformers import get_linear_schedule_with_warmup

from distilkit.core.atomic import atomic_directory
from distilkit.methods.distillation.losses import REGRESSION, logit_mse_loss, soft_kl_loss

#: What a peer redraws from its own seed (:func:`make_peer`), chosen per student kind by ``hooks.peer_scope``.
SCOPES = ("all", "all_but_embeddings", "head", "none")


def mutual_loss(logits: torch.Tensor, others: list[torch.Tensor], *, temperature: float = 1.0,
                problem_type: str = "single_label_classification") -> torch.Tensor:
    """Zhang et al. 2018's mutual term for one student: ``1 / (K - 1) * sum_l D(p_l || p_k)`` (eq. 10).

    Classification: ``T^2 * KL(softmax(z_l / T) || softmax(z_k / T))`` (:func:`soft_kl_loss`, batch mean; the
    paper's ``T = 1``). Regression: the squared error between the predictions (:func:`logit_mse_loss`).

    Args:
        logits: ``[batch, num_labels]``, the student being trained (``z_k``).
        others: The other students' logits ``z_l``, ``K - 1`` tensors of the same shape; detached here, since a
            student learns from its peers' predictions but does not push them.
        temperature: Softening temperature of the KL.
        problem_type: ``"regression"`` or a classification.

    Returns:
        A scalar tensor attached to ``logits`` only.

    Raises:
        ValueError: ``others`` is empty (a cohort of one has nobody to learn from).
    """
    if not others:
        raise ValueError("mutual_loss needs the logits of at least one other student")
    if problem_type == REGRESSION:
        terms = [logit_mse_loss(logits, other.detach()) for other in others]
    else:
        terms = [soft_kl_loss(logits, other.detach(), temperature) for other in others]
    return torch.stack(terms).mean()


@torch.no_grad()
def make_peer(student: nn.Module, scope: str, seed: int) -> nn.Module:
    """A deep copy of ``student`` whose weights in ``scope`` are redrawn by its own initialiser from ``seed``.

    Zhang et al. start the cohort from different initialisations; a distilled student, though, often takes part
    of its weights from the teacher (word vectors, transformer layers), and redrawing those would discard them.
    ``scope`` says what is fresh: ``all`` (every module), ``all_but_embeddings`` (all but the input embedding,
    e.g. a BiLSTM's teacher word vectors), ``head`` (the modules outside the base model, e.g. a transformer's
    classifier over teacher layers), ``none`` (an exact copy: peers differ only by their dropout masks). The
    global random state is left untouched, so the main student trains exactly as it would have.

    Args:
        student: The freshly built main student (a ``PreTrainedModel`` with ``_init_weights``).
        scope: One of :data:`SCOPES`.
        seed: The peer's own seed.

    Returns:
        The peer, in train mode.

    Raises:
        ValueError: an unknown ``scope``; a scope that redraws but a student without ``_init_weights``.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown peer scope {scope!r}; choose from {', '.join(SCOPES)}")
    peer = copy.deepcopy(student).train()
    if scope == "none":
        return peer
    if not hasattr(peer, "_init_weights"):
        raise ValueError(f"a {type(peer).__name__} has no _init_weights to draw a peer's fresh weights with; "
                         "use loss.mutual.init: copy")
    embedding = peer.get_input_embeddings() if scope == "all_but_embeddings" else None
    base = getattr(peer, "base_model_prefix", "")
    chosen = []
    for name, module in peer.named_modules():
        if not any(True for _ in module.parameters(recurse=False)) or module is embedding:
            continue
        if scope == "head" and (name == base or name.startswith(base + ".")):
            continue
        chosen.append(module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in chosen:
            # transformers 5 skips weights flagged as loaded from a checkpoint; a peer's must be drawn anew.
            for param in module.parameters(recurse=False):
                if hasattr(param, "_is_hf_initialized"):
                    del param._is_hf_initialized
            module.__dict__.pop("_is_hf_initialized", None)
            peer._init_weights(module)
    return peer


class Peers:
    """The ``K - 1`` peers of the main student, their optimizers and schedules (see the module docstring).

    The recipe program steps the main student's optimizer; the peers' mirror it: gradients accumulate over
    ``grad_accum`` forwards (each loss divided by it, as Accelerate does for the main one), and :meth:`step`,
    called once per optimizer step of the main student, averages them over the data-parallel processes (so the
    peers stay identical everywhere), clips them at ``max_grad_norm``, steps AdamW and the linear schedule
    (``num_processes`` times, as Accelerate's scheduler does for the main one).
    """

    def __init__(self, peers: list[nn.Module], seeds: list[int], *, lr: float, weight_decay: float,
                 warmup_ratio: float = 0.0, max_grad_norm: float | None = None, grad_accum: int = 1):
        self.models, self.seeds = peers, seeds
        self.lr, self.weight_decay, self.warmup_ratio = lr, weight_decay, warmup_ratio
        self.max_grad_norm, self.grad_accum = max_grad_norm, grad_accum
        self.optimizers: list[torch.optim.Optimizer] = []
        self.schedulers: list = []

    @staticmethod
    def world_size() -> int:
        """Number of data-parallel processes (1 unless ``torch.distributed`` is initialised)."""
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def started(self) -> bool:
        return bool(self.optimizers)

    def start(self, device: torch.device, total_steps: int | None) -> None:
        """Move the peers to the main student's device and make their optimizers (once, at the first batch:
        the recipe program moves the main student only after the methods prepared it)."""
        for peer in self.models:
            peer.to(device)
            params = [p for p in peer.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay,
                                          fused=device.type in ("cpu", "cuda"))
            if total_steps:
                scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total_steps),
                                                            total_steps)
            else:  # no schedule known (hooks driven outside the recipe program): a constant rate
                scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
            self.optimizers.append(optimizer)
            self.schedulers.append(scheduler)

    def forward(self, inputs: dict) -> list[torch.Tensor]:
        """Every peer's float logits on the batch's model inputs (train mode, with graphs)."""
        return [peer.train()(**inputs).logits.float() for peer in self.models]

    def backward(self, losses: list[torch.Tensor]) -> None:
        """Accumulate each peer's loss gradient (divided by ``grad_accum``)."""
        total = sum(loss / self.grad_accum for loss in losses)
        total.backward()

    def step(self) -> None:
        """One optimizer step of every peer (see the class docstring)."""
        world = self.world_size()
        for peer, optimizer, scheduler in zip(self.models, self.optimizers, self.schedulers):
            params = [p for p in peer.parameters() if p.grad is not None]
            if world > 1:
                for param in params:  # the mean gradient, as DDP gives the main student
                    dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                    param.grad.div_(world)
            if self.max_grad_norm and params:
                torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            optimizer.step()
            for _ in range(world):
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)

    def save(self, output_dir: Path, tokenizer=None) -> list[Path]:
        """Each peer (and the student's tokenizer) to ``output_dir/peers/<k>/``, atomically; ``k`` from 1."""
        paths = []
        for k, peer in enumerate(self.models, start=1):
            path = Path(output_dir) / "peers" / str(k)
            with atomic_directory(path) as tmp:
                peer.save_pretrained(tmp)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
            paths.append(path)
        return paths
