"""From zeros to speed: remove the attention heads and FFN neurons that block pruning left empty.

A head computes nothing when its value rows (weights and biases) are all zero -- its attention output is then
zero whatever the attention pattern -- or when the attention output projection ignores it (its columns are
zero). An FFN neuron computes nothing when its row of the first projection and its bias are zero (the
activation of 0 is 0) or when its column of the second projection is zero. Removing such units with
:func:`distilkit.methods.pruning.structural.prune_heads` / ``prune_ffn`` therefore leaves the logits as they
were (up to float summation order) while the matrices shrink. Every layer keeps at least one head and one
neuron (an all-zero one if need be): the pruned model classes describe layers, not their absence.

:func:`compact_output` does this to a finished run's ``output_dir/model`` (the masked model moves to
``model-masked``); the record in ``config.distilkit_block_pruning`` says what was removed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from torch import nn

from distilkit.core.atomic import atomic_directory
from distilkit.methods.pruning.pruned import attention_parts, encoder_layers, ffn_parts, head_size, num_heads
from distilkit.methods.pruning.select import _family
from distilkit.methods.pruning.structural import prune_ffn, prune_heads
from distilkit.models.inference import load_saved

#: The config attribute a compacted model records its block pruning in (also: "this folder is compacted").
RECORD = "distilkit_block_pruning"


def _zero(t: torch.Tensor | None) -> bool:
    return t is None or not bool(t.any())


def _activation(layer: nn.Module, family: str):
    return layer.ffn.activation if family == "distilbert" else layer.intermediate.intermediate_act_fn


@torch.no_grad()
def emptied_heads(model: nn.Module) -> dict[int, list[int]]:
    """``{layer: [heads]}`` that contribute nothing (zero value rows and biases, or zero output columns)."""
    family = _family(model)
    plan = {}
    for index, layer in enumerate(encoder_layers(model)):
        _, (_, _, value), out = attention_parts(layer, family)
        size, count = head_size(layer, family), num_heads(layer, family)
        empty = []
        for h in range(count):
            rows = slice(h * size, (h + 1) * size)
            silent = _zero(value.weight[rows]) and _zero(None if value.bias is None else value.bias[rows])
            if silent or _zero(out.weight[:, rows]):
                empty.append(h)
        if empty:
            plan[index] = empty[:count - 1]  # one head stays (all zeros: it adds nothing)
    return {k: v for k, v in plan.items() if v}


@torch.no_grad()
def emptied_neurons(model: nn.Module) -> dict[int, list[int]]:
    """``{layer: [neurons]}`` that contribute nothing (zero input row and bias, or zero output column)."""
    family = _family(model)
    plan = {}
    for index, layer in enumerate(encoder_layers(model)):
        first, second = ffn_parts(layer, family)
        # A zero row gives act(bias); that is zero only for a zero bias and an activation with act(0) = 0.
        silent_rows = ~first.weight.ne(0).any(dim=1)
        if first.bias is not None:
            silent_rows &= first.bias.eq(0)
        if float(_activation(layer, family)(torch.zeros(1, dtype=first.weight.dtype, device=first.weight.device))):
            silent_rows[:] = False
        silent = (silent_rows | ~second.weight.ne(0).any(dim=0)).nonzero().flatten().tolist()
        if silent:
            plan[index] = silent[:first.out_features - 1]  # one neuron stays
    return {k: v for k, v in plan.items() if v}


def remove_emptied_units(model: nn.Module) -> dict:
    """Remove every emptied head and FFN neuron of ``model`` in place (see the module doc).

    Returns:
        ``{"heads": [before, after], "ffn_neurons": [before, after]}`` summed over layers, and the per-layer
        ``heads_per_layer`` and ``ffn_per_layer`` left.
    """
    family = _family(model)
    layers = encoder_layers(model)

    def counts() -> tuple[list[int], list[int]]:
        return ([num_heads(x, family) for x in layers], [ffn_parts(x, family)[0].out_features for x in layers])

    heads_before, ffn_before = counts()
    heads, neurons = emptied_heads(model), emptied_neurons(model)
    if heads:
        prune_heads(model, heads)
    if neurons:
        prune_ffn(model, neurons)
    heads_after, ffn_after = counts()
    return {"heads": [sum(heads_before), sum(heads_after)], "ffn_neurons": [sum(ffn_before), sum(ffn_after)],
            "heads_per_layer": heads_after, "ffn_per_layer": ffn_after}


def probe_inputs(config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Two random sequences of 12 tokens, the second padded after 7: enough to see a changed output."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(min(5, config.vocab_size - 1), config.vocab_size, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _finish_swap(out: Path) -> None:
    """A run killed between moving the masked model aside and publishing the compacted one: publish it."""
    if not (out / "model").exists() and (out / "model-compact").is_dir() and (out / "model-masked").is_dir():
        os.replace(out / "model-compact", out / "model")


def compact_output(out: Path, settings: dict | None = None) -> dict:
    """In a finished run: remove the emptied heads and neurons of ``out/model``, keep the masked model in
    ``out/model-masked``, and return (and record in the config) what was removed.

    Idempotent: a resumed run whose ``model`` is already compacted keeps it.

    Raises:
        RuntimeError: The compacted model's logits differ from the masked model's (a bug, never expected).
    """
    out = Path(out)
    _finish_swap(out)
    model, _ = load_saved(out / "model", tokenizer=False)
    if getattr(model.config, RECORD, None) and (out / "model-masked").is_dir():
        return getattr(model.config, RECORD)
    probe = probe_inputs(model.config)
    with torch.no_grad():
        before = model(**probe).logits
        summary = remove_emptied_units(model)
        after = model(**probe).logits
    change = float((after - before).abs().max())
    if change > 1e-4 * (1.0 + float(before.abs().max())):
        raise RuntimeError(f"block pruning: removing emptied units changed the logits by {change:.3g}")
    record = {**(settings or {}), **summary, "max_logit_change": change}
    setattr(model.config, RECORD, record)
    with atomic_directory(out / "model-compact") as tmp:
        model.save_pretrained(tmp)
        for path in (out / "model").iterdir():  # tokenizer, recipe: everything but the weights and config
            if (path.is_file() and path.suffix not in (".safetensors", ".bin") and path.name != "config.json"
                    and not (tmp / path.name).exists()):
                shutil.copy2(path, tmp / path.name)
    shutil.rmtree(out / "model-masked", ignore_errors=True)
    os.replace(out / "model", out / "model-masked")
    os.replace(out / "model-compact", out / "model")
    return record
