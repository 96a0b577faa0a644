"""Pruning as a recipe student (``student.kind: pruned``): score, remove, recover by distillation.

One-shot: :func:`build_pruned_student` copies the teacher, scores units on a few transfer-set batches and
removes them structurally; :func:`distilkit.run.distill.run` then distils the pruned copy from the unpruned
teacher (recovery; ``train.epochs: 0`` skips it). Iterative (``rounds > 1``, Michel et al. 2019 sec. 5 and
the prune-retrain loop of Han et al. 2015): :mod:`distilkit.methods.pruning.rounds` reaches the targets in
equal steps, each a full distillation run (a pipeline stage) in ``output_dir/rounds/<r>`` starting from the
previous round's model, always taught by the unpruned teacher. Block pruning (``student.blocks``, :mod:`distilkit.methods.pruning.blocks`) masks rows,
columns or blocks during the recovery distillation and removes emptied heads and neurons after it.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification

from distilkit.core.errors import RecipeError
from distilkit.core.measure import count_parameters
from distilkit.methods.pruning.config import PrunedStudentConfig
from distilkit.methods.pruning.pruned import encoder_layers, ffn_parts, num_heads
from distilkit.methods.pruning.select import _family
from distilkit.methods.pruning.structural import (
    drop_layers,
    ffn_importance,
    head_importance,
    layer_importance,
    prune_ffn,
    prune_heads,
    prune_to_budget,
    select_ffn,
    select_heads,
    select_layers,
)
from distilkit.models.transformer import build_copy_student, encode_transformer


def _shape_totals(model) -> tuple[int, int, int]:
    """``(layers, heads, ffn neurons)`` of a BERT-family model."""
    family = _family(model)
    layers = encoder_layers(model)
    return (len(layers), sum(num_heads(x, family) for x in layers),
            sum(ffn_parts(x, family)[0].out_features for x in layers))


def importance_batches(rows: list[dict], teacher, spec: PrunedStudentConfig, problem_type: str) -> list[dict]:
    """Model inputs plus ``labels`` for scoring: gold labels where every row has one, else the teacher's
    predicted class (the copy starts equal to the teacher, so a loss against its logits has zero gradient)."""
    rows = rows[:spec.importance_examples]
    gold = all(row.get("label") is not None for row in rows)
    if not gold and problem_type == "regression":
        raise RecipeError("student.kind 'pruned': scoring a regression task needs gold labels (data.labels: gold)")
    batches = []
    for i in range(0, len(rows), spec.importance_batch_size):
        chunk = rows[i:i + spec.importance_batch_size]
        pairs = None if chunk[0]["text_b"] is None else [r["text_b"] for r in chunk]
        batch = dict(encode_transformer(teacher.tokenizer, [r["text_a"] for r in chunk], pairs, spec.max_length))
        if gold:
            dtype = torch.float32 if problem_type == "regression" else torch.long
            batch["labels"] = torch.tensor([r["label"] for r in chunk], dtype=dtype)
        elif "teacher_logits" in chunk[0]:
            batch["labels"] = torch.tensor([r["teacher_logits"] for r in chunk]).argmax(-1)
        else:
            batch["labels"] = teacher([r["text_a"] for r in chunk], pairs).argmax(-1).cpu()
        batches.append(batch)
    return batches


def build_pruned_student(spec: PrunedStudentConfig, hf_teacher, task, rows: list[dict] | None):
    """A copy of the teacher (or of ``spec.start_from``) with its targets pruned, counted from the teacher.

    Order: whole layers first (drop-one scores), then heads and FFN neurons re-scored on what is left, then
    the parameter budget. Block pruning (``spec.blocks``) happens later, during training
    (:class:`distilkit.methods.pruning.hooks.BlockPruningHooks`).
    """
    if hf_teacher is None:
        raise RecipeError("student.kind 'pruned' prunes a Hugging Face teacher; the teacher is a plug-in")
    if not rows:
        raise RecipeError("student.kind 'pruned': no transfer-set rows to compute importance scores on")
    source = hf_teacher.model
    model = (AutoModelForSequenceClassification.from_pretrained(spec.start_from).float() if spec.start_from
             else build_copy_student(teacher_model=source))
    t_layers, t_heads, t_ffn = _shape_totals(source)
    if not (spec.heads or spec.ffn or spec.layers or spec.max_params):
        return model.train()  # block pruning only (student.blocks): the copy is pruned while it trains
    batches = importance_batches(rows, hf_teacher, spec, task.problem_type)

    step = spec.round_fraction  # iterative rounds go part of the way; earlier rounds' removals count
    n_layers, _, _ = _shape_totals(model)
    drop = round(spec.layers * step) - (t_layers - n_layers)
    if drop > 0:
        if drop >= n_layers:
            raise RecipeError(f"student.layers: {spec.layers} would drop every one of the teacher's {t_layers} layers")
        drop_layers(model, select_layers(layer_importance(model, batches), drop))
    _, n_heads, n_ffn = _shape_totals(model)
    if spec.heads:
        need = round(spec.heads * step * t_heads) - (t_heads - n_heads)
        if need > 0:
            prune_heads(model, select_heads(head_importance(model, batches), min(1.0, need / n_heads)))
    if spec.ffn:
        need = round(spec.ffn * step * t_ffn) - (t_ffn - n_ffn)
        if need > 0:
            prune_ffn(model, select_ffn(ffn_importance(model, batches), min(1.0, need / n_ffn)))
    if spec.max_params:
        teacher_params = count_parameters(source)
        budget = round(teacher_params - (teacher_params - spec.max_params) * step)
        if count_parameters(model) > budget:
            prune_to_budget(model, head_importance(model, batches), ffn_importance(model, batches), budget)
    return model.train()


def build_student(spec: PrunedStudentConfig, inputs):
    """The ``pruned`` student kind's builder (:class:`distilkit.core.method_spec.StudentKind`)."""
    return build_pruned_student(spec, inputs.teacher, inputs.task, inputs.rows)
