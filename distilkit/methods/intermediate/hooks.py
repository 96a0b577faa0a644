"""Intermediate-layer distillation in the recipe program (``intermediate:``): the student learns the teacher's
inside as well as its logits.

Terms (each weighted, added to the logit loss and logged as ``train/<term>``;
:mod:`distilkit.methods.intermediate.losses` has the equations):

* ``hidden``: hidden states of mapped layers, MSE through a learned projection when the widths differ (TinyBERT,
  Jiao et al. 2020, eq. 8) or DistilBERT's cosine loss;
* ``attention``: KL of the self-attention distributions of mapped layers (MiniLM, Wang et al. 2020, eq. 6);
* ``value_relation``: KL of the last layers' value relations ``softmax(V V^T / sqrt(d_r))`` (MiniLM, eq. 7-9);
* ``embedding``: MSE of the embedding outputs through a projection (TinyBERT, eq. 9);
* ``cls``: squared distance of the normalised ``[CLS]`` states of mapped layers (BERT-PKD, Sun et al. 2019, eq. 3).

``stages.intermediate_fraction`` is TinyBERT's two-stage schedule: the first steps train the intermediate terms
alone (logit-loss weight 0, :meth:`IntermediateHooks.distillation_weight`; those evaluations do not compete for
the best model), the rest the logit loss alone.

Where the teacher's inside comes from: the teacher runs once per step, without gradient, on the student's
very batch (the student reads the teacher's token ids -- a recipe check -- so the teacher sees the same
tokens, truncated at ``student.max_length``). Its hidden states are not cached on disk: they would take
``(layers + 1) x tokens x width x 4`` bytes per example, 0.69 MB for MiniLM-L6 at 64 tokens, 46 GB for SST-2's
67k sentences. The logit term is unchanged: with ``cache.enabled: true`` (the default) its teacher logits come
from the logit cache, so the only teacher forward per step is this one; with the cache off the loop runs the
teacher once more for the logits (two teacher forwards per step). The second stage of ``stages`` runs no teacher
forward here.

Cost, measured (approximate: a busy 2-core machine, ``OMP_NUM_THREADS=1``, 20 interleaved steps of 32 SST-2
sentences at ``max_length`` 64, MiniLM-L6 teacher, 2-layer 384-wide student): one teacher forward with hidden
states costs about 0.7x a logits-only student step, so a step with ``hidden`` takes about 1.7x a logits-only
step, with ``hidden + attention + value_relation`` about 1.8x.

Not done: with several processes and ``stages``, the projections get no gradient in the second stage, which
DDP reports as unused parameters (single-process runs are unaffected).
"""

from __future__ import annotations

import torch
from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.core.method_hooks import MethodHooks
from distilkit.methods.intermediate.checks import (
    BILSTM_MODEL_TYPE,
    LINEAR_PREFIX,
    config_depth,
    config_heads,
    config_width,
)
from distilkit.methods.intermediate.config import PROJECTED_TERMS, IntermediateConfig
from distilkit.methods.intermediate.internals import (
    PROBS_ATTENTION,
    ValueRecorder,
    last_value_module,
    teacher_forward,
)
from distilkit.methods.intermediate.layer_map import resolve_layer_map
from distilkit.methods.intermediate.losses import (
    attention_kl,
    cls_distance,
    hidden_cosine,
    hidden_mse,
    value_relation_kl,
)
from distilkit.methods.intermediate.projection import PROJECTION_MODULE, add_projections, projection
from distilkit.models.teachers import HFTeacher


def first_stage_steps(fraction: float | None, total_steps: int) -> int:
    """Optimizer steps of TinyBERT's first (intermediate-only) stage: ``round(fraction * total)``, at least one
    step in each stage when there are two steps or more; 0 without ``stages``."""
    if not fraction or total_steps < 2:
        return 0
    return min(total_steps - 1, max(1, int(fraction * total_steps + 0.5)))


def _mean(terms: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(terms).mean()


class IntermediateHooks(MethodHooks):
    """``intermediate:`` in a recipe (see the module docstring).

    Args:
        cfg: The validated section.
        lora_modules_to_save: ``train.lora.modules_to_save`` when LoRA recovery is on (it freezes everything
            else, projections included), else ``None``.
    """

    name = "intermediate"

    def __init__(self, cfg: IntermediateConfig, lora_modules_to_save: list[str] | None = None):
        self.cfg, self.lora_modules_to_save = cfg, lora_modules_to_save
        self.teacher: HFTeacher | None = None
        self.maps: dict[str, list[tuple[int, int]]] = {}
        self.relation_heads: int | None = None
        self.student_values: ValueRecorder | None = None
        self.projected: list[str] = []
        self._states = any(getattr(cfg, t) is not None for t in PROJECTED_TERMS)
        self._second_stage = False

    def attach_teacher(self, teacher) -> None:
        members = getattr(teacher, "members", None)  # an ensemble: its first teacher, whose tokenizer the student has
        teacher = members[0] if members else teacher
        if not isinstance(teacher, HFTeacher):
            raise RecipeError("intermediate: the teacher is a plug-in without Hugging Face hidden states or attention")
        model_type = str(teacher.model.config.model_type)
        if model_type == BILSTM_MODEL_TYPE:
            raise RecipeError(f"intermediate: teacher '{teacher.name}' is a BiLSTM: it has no transformer layers")
        if self.cfg.attention is not None and model_type.startswith(LINEAR_PREFIX):
            raise RecipeError(f"intermediate.attention: teacher '{teacher.name}' has linear attention ({model_type}); "
                              "it never forms the attention matrix the term compares")
        self.teacher = teacher

    def prepare_student(self, student: nn.Module) -> None:
        cfg = self.cfg
        if self.teacher is None:
            raise RuntimeError("intermediate: attach_teacher must run before prepare_student")
        config = getattr(student, "config", None)
        model_type = str(getattr(config, "model_type", ""))
        if config is None or model_type == BILSTM_MODEL_TYPE or config_depth(config.to_dict()) is None:
            raise RecipeError(f"intermediate: the student ({type(student).__name__}) is not a transformer")
        student_cfg, teacher_cfg = config.to_dict(), self.teacher.model.config.to_dict()
        depths = config_depth(student_cfg), config_depth(teacher_cfg)
        for term in ("hidden", "attention", "cls"):
            spec = getattr(cfg, term)
            if spec is not None:
                self.maps[term] = resolve_layer_map(spec.layer_map, *depths, f"intermediate.{term}.layer_map")
        if cfg.attention is not None:
            if model_type.startswith(LINEAR_PREFIX):
                raise RecipeError("intermediate.attention: the student has linear attention; it never forms the "
                                  "attention matrix the term compares")
            student.set_attn_implementation(PROBS_ATTENTION)  # probabilities before dropout (internals.py)
        if cfg.value_relation is not None:
            self._prepare_value_relation(student, teacher_cfg)
        needs = [t for t in PROJECTED_TERMS if getattr(cfg, t) is not None]
        self.projected = add_projections(student, needs, config_width(student_cfg), config_width(teacher_cfg),
                                         keep=cfg.projection == "keep")
        if self.projected and self.lora_modules_to_save is not None \
                and PROJECTION_MODULE not in self.lora_modules_to_save:
            raise RecipeError(f"intermediate: the student is {config_width(student_cfg)} wide and the teacher "
                              f"{config_width(teacher_cfg)}, so {', '.join(self.projected)} train a projection, "
                              "but train.lora freezes every weight outside its adapters and modules_to_save; add "
                              f"'{PROJECTION_MODULE}' to train.lora.modules_to_save")

    def _prepare_value_relation(self, student: nn.Module, teacher_cfg: dict) -> None:
        key = "intermediate.value_relation"
        teacher_values = last_value_module(self.teacher.model, key)
        student_values = last_value_module(student, key)
        heads = self.cfg.value_relation.relation_heads or config_heads(teacher_cfg)
        for side, module in (("teacher", teacher_values), ("student", student_values)):
            if module.out_features % heads:
                raise RecipeError(f"{key}.relation_heads: {heads} does not divide the {side}'s last-layer value "
                                  f"width {module.out_features}; give relation_heads dividing both "
                                  f"({teacher_values.out_features} and {student_values.out_features})")
        self.relation_heads = heads
        self.student_values = ValueRecorder(student_values)

    def forward_kwargs(self) -> dict:
        kwargs = {}
        if self._states:
            kwargs["output_hidden_states"] = True
        if self.cfg.attention is not None:
            kwargs["output_attentions"] = True
        return kwargs

    def distillation_weight(self, step: int, total_steps: int) -> float:
        # Called before extra_losses on every forward: it also tells which stage this step is in.
        fraction = self.cfg.stages.intermediate_fraction if self.cfg.stages else None
        first = first_stage_steps(fraction, total_steps)
        self._second_stage = bool(first) and step >= first
        return 0.0 if step < first else 1.0

    def final_form(self, step: int, total_steps: int) -> bool:
        fraction = self.cfg.stages.intermediate_fraction if self.cfg.stages else None
        return step >= first_stage_steps(fraction, total_steps)

    def extra_losses(self, student: nn.Module, batch: dict | None = None, outputs=None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if self._second_stage:  # TinyBERT's prediction-layer stage: the logit loss alone, no teacher forward
            return {}
        teacher_out, teacher_values = teacher_forward(
            self.teacher.model, batch, hidden=self._states, attentions=cfg.attention is not None,
            values=cfg.value_relation is not None)
        mask = batch["attention_mask"]
        states = getattr(outputs, "hidden_states", None)
        if self._states and states is None:
            raise RuntimeError("intermediate: the student's forward returned no hidden_states")
        terms: dict[str, torch.Tensor] = {}
        if cfg.hidden is not None:
            loss = hidden_mse if cfg.hidden.loss == "mse" else hidden_cosine
            project = projection(student, "hidden")
            terms["hidden"] = cfg.hidden.weight * _mean(
                [loss(project(states[s + 1]), teacher_out.hidden_states[t + 1], mask) for s, t in self.maps["hidden"]])
        if cfg.attention is not None:
            attentions = getattr(outputs, "attentions", None)
            if not attentions or attentions[0] is None:
                raise RuntimeError("intermediate.attention: the student's forward returned no attention weights")
            terms["attention"] = cfg.attention.weight * _mean(
                [attention_kl(teacher_out.attentions[t], attentions[s], mask) for s, t in self.maps["attention"]])
        if cfg.value_relation is not None:
            terms["value_relation"] = cfg.value_relation.weight * value_relation_kl(
                teacher_values, self.student_values.take(), mask, self.relation_heads)
        if cfg.embedding is not None:
            terms["embedding"] = cfg.embedding.weight * hidden_mse(
                projection(student, "embedding")(states[0]), teacher_out.hidden_states[0], mask)
        if cfg.cls is not None:
            project = projection(student, "cls")
            terms["cls"] = cfg.cls.weight * _mean(
                [cls_distance(project(states[s + 1][:, 0]), teacher_out.hidden_states[t + 1][:, 0])
                 for s, t in self.maps["cls"]])
        return terms


def from_recipe(recipe) -> IntermediateHooks | None:
    """Active when the recipe has an ``intermediate:`` section."""
    cfg = getattr(recipe, "intermediate", None)
    if cfg is None:
        return None
    lora = getattr(recipe.train, "lora", None)
    return IntermediateHooks(cfg, list(lora.modules_to_save) if lora is not None else None)
