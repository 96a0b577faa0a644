"""Factorise a model in place: choose the linears, check everything, pick ranks, replace, report.

:func:`factorize_model` is what the ``factorize`` recipe section runs on the student (before distillation
recovers it) and what a benchmark calls directly. All checks -- ranges, layers that match nothing, a rank above
``min(out, in)``, a budget too small for rank 1 -- run before the first layer is replaced, so a bad request
leaves the model untouched.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from torch import nn

from distilkit.core.errors import RecipeError
from distilkit.methods.low_rank.factors import (
    FactorizedEmbedding,
    LowRankLinear,
    singular_values,
)
from distilkit.methods.low_rank.ranks import Spectrum, budget_ranks, energy_rank
from distilkit.methods.low_rank.storage import QUANT_METHOD, record_factors, set_module
from distilkit.methods.low_rank.tensorize import Factors, apply_tensorized, plan_tensorized

#: ``factorize.kind``: the form the chosen linears take.
KINDS = ("svd", "tt", "block_term")

#: Name parts of classification heads: never factorised (a small head, and the last layer the logits see).
HEAD_PARTS = frozenset({"classifier", "pre_classifier", "score", "qa_outputs", "lm_head"})
#: Left out by default, but may be named in ``modules``: the pooler feeds the head alone.
DEFAULT_SKIPPED = frozenset({"pooler"})


def choose_linears(model: nn.Module, modules: list[str] | None = None) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers to factorise, by name (in model order).

    ``modules`` entries are full names, globs (``*.attention.*``) or last name parts (``query``); ``None`` picks
    every linear outside the head and the pooler. Head linears (:data:`HEAD_PARTS`) are never chosen, nor the
    factors of an already factorised layer.

    Raises:
        RecipeError: ``modules`` is empty or an entry matches no linear (``factorize.modules``).
    """
    candidates = {name: m for name, m in model.named_modules()
                  if type(m) is nn.Linear and not HEAD_PARTS & set(name.split("."))
                  and not isinstance(_parent(model, name), LowRankLinear | FactorizedEmbedding)}
    if modules is None:
        chosen = {n: m for n, m in candidates.items() if not DEFAULT_SKIPPED & set(n.split("."))}
        if not chosen:
            raise RecipeError(f"factorize.modules: {type(model).__name__} has no linear layer outside its "
                              "classification head to factorise")
        return chosen
    if not modules:
        raise RecipeError("factorize.modules: [] chooses no layer; leave it out for every linear outside the head")
    chosen, unmatched = {}, []
    for pattern in modules:
        hits = [n for n in candidates if fnmatchcase(n, pattern) or fnmatchcase(n, f"*.{pattern}")]
        if not hits:
            unmatched.append(pattern)
        chosen.update((n, candidates[n]) for n in hits)
    if unmatched:
        sample = ", ".join(list(candidates)[:4]) or "none"
        raise RecipeError(f"factorize.modules: {', '.join(map(repr, unmatched))} match no linear layer outside the "
                          f"classification head of {type(model).__name__} (its linears include: {sample})")
    return {n: candidates[n] for n in candidates if n in chosen}


def factorize_model(model: nn.Module, *, rank: int | None = None, energy: float | None = None,
                    keep: float | None = None, modules: list[str] | None = None, block_diagonal: int = 1,
                    embedding: int | None = None, kind: str = "svd", tt_ranks: int | list[int] | None = None,
                    in_factors: Factors = None, out_factors: Factors = None, tt_cores: int = 3,
                    bt_blocks: int = 2, bt_rank: int | None = None) -> dict:
    """Replace the chosen linears of ``model`` by truncated-SVD factors (and/or its word embedding by ALBERT's
    ``V x E . E x H`` factorisation), in place, and record the factor shapes in ``model.config``.

    ``W ~ U V`` with ``U = U_r sqrt(S_r)``, ``V = sqrt(S_r) V_r^T`` (Denton et al. 2014; Noach & Goldberg 2020
    for BERT); see :mod:`~distilkit.methods.low_rank.factors` for the block-diagonal form and the embedding.
    The ranks come from one of ``rank`` (every layer), ``energy`` (per layer, the smallest rank keeping that
    fraction of ``sum sigma^2``) or ``keep`` (a global budget: the factors hold at most that fraction of the chosen
    linears' weights, ranks allocated by :func:`~distilkit.methods.low_rank.ranks.budget_ranks`); with none of
    them only ``embedding`` is factorised. Biases are kept whole and not counted in the budget.

    ``kind: "tt"`` makes each chosen linear a tensor train (TT-SVD, Oseledets 2011; Novikov et al. 2015) with bond
    ranks ``tt_ranks`` or chosen within the ``keep`` budget, ``kind: "block_term"`` a sum of ``bt_blocks`` Tucker
    blocks of rank ``bt_rank`` (Ye et al. 2018), over factor shapes ``in_factors``/``out_factors`` (default: a
    balanced factorisation into ``tt_cores``); see :mod:`~distilkit.methods.low_rank.tensorize`.

    Returns:
        ``{"layers": {name: {"shape", "rank", "blocks", "energy", "params_before", "params_after"}},
        "embedding": {...} or None, "params_before", "params_after"}`` -- parameters of the factorised modules
        (weights and biases), before and after; ``energy`` is the kept fraction of ``||W||_F^2``.

    Raises:
        RecipeError: before anything changes, naming the ``factorize`` key: more than one of rank/energy/keep,
            ``energy`` outside (0, 1], ``keep`` outside (0, 1), ``modules`` empty or matching nothing, a rank
            above ``min(out, in / block_diagonal)``, ``in`` not divisible by ``block_diagonal``, a budget below
            rank 1 everywhere, an ``embedding`` rank above ``min(V, H)``, a model already quantized; for ``tt`` and
            ``block_term`` the checks of :func:`~distilkit.methods.low_rank.tensorize.plan_tensorized`.
    """
    if kind not in KINDS:
        raise RecipeError(f"factorize.kind: {kind!r} is not one of {', '.join(KINDS)}")
    if kind != "svd":
        own = "tt_ranks" if kind == "tt" else "bt_rank"
        if rank is not None or energy is not None or block_diagonal != 1:
            used = "rank" if rank is not None else "energy" if energy is not None else "block_diagonal"
            raise RecipeError(f"factorize.{used}: an SVD key; with kind: {kind} set {own} or keep")
        rank = tt_ranks if kind == "tt" else bt_rank
        if isinstance(rank, list):
            if not rank:
                raise RecipeError("factorize.tt_ranks: [] gives no bond ranks; one per bond (tt_cores - 1)")
            rank = min(rank)  # checked against each layer's shapes by plan_tensorized
    rules = {k: v for k, v in (("rank", rank), ("energy", energy), ("keep", keep)) if v is not None}
    _check_arguments(rules, block_diagonal, embedding, "rank" if kind == "svd" else own)
    existing = getattr(getattr(model, "config", None), "quantization_config", None)
    method = existing.get("quant_method") if isinstance(existing, dict) else getattr(existing, "quant_method", None)
    if method not in (None, QUANT_METHOD):
        raise RecipeError(f"factorize: the model is already converted ({method}); factorise before quantizing or "
                          "compressing it")
    linears = choose_linears(model, modules) if rules else {}
    if kind != "svd":
        plans = plan_tensorized(linears, kind=kind, keep=keep, tt_ranks=tt_ranks, in_factors=in_factors,
                                out_factors=out_factors, tt_cores=tt_cores, bt_blocks=bt_blocks, bt_rank=bt_rank)
        table = _checked_embedding(model, embedding)
        report = {"layers": apply_tensorized(model, linears, plans, kind, bt_blocks), "embedding": None}
        return _finish(model, report, table, embedding)
    spectra = {}
    for name, linear in linears.items():
        out_features, in_features = linear.weight.shape
        if in_features % block_diagonal:
            raise RecipeError(f"factorize.block_diagonal: {block_diagonal} does not divide the {in_features} inputs "
                              f"of {name} ({out_features} x {in_features})")
        gains = singular_values(linear.weight, block_diagonal).pow(2).sum(0)
        spectra[name] = Spectrum(gains, block_diagonal * out_features + in_features)
        if rank is not None and rank > len(gains):
            limit = f"min(out, in / {block_diagonal})" if block_diagonal > 1 else "min(out, in)"
            raise RecipeError(f"factorize.rank: {rank} is larger than {limit} = {len(gains)} of {name} "
                              f"({out_features} x {in_features})")
    table = _checked_embedding(model, embedding)

    if rank is not None:
        ranks = {name: rank for name in spectra}
    elif energy is not None:
        ranks = {name: energy_rank(s, energy) for name, s in spectra.items()}
    elif keep is not None:
        budget = keep * sum(linear.weight.numel() for linear in linears.values())
        try:
            ranks = budget_ranks(spectra, budget)
        except ValueError as exc:
            raise RecipeError(f"factorize.keep: {keep} is too small: {exc}") from None
    else:
        ranks = {}

    report: dict = {"layers": {}, "embedding": None}
    for name, linear in linears.items():
        factored = LowRankLinear.from_linear(linear, ranks[name], block_diagonal)
        set_module(model, name, factored)
        report["layers"][name] = {"shape": list(linear.weight.shape), "rank": ranks[name], "blocks": block_diagonal,
                                  "energy": round(spectra[name].kept(ranks[name]), 6),
                                  "params_before": _count(linear), "params_after": _count(factored)}
    return _finish(model, report, table, embedding)


def _finish(model: nn.Module, report: dict, table: tuple[str, nn.Embedding] | None, embedding: int | None) -> dict:
    """Factorise the embedding (if asked), total the parameters, record the factors on the config."""
    if table is not None:
        name, original = table
        factored = FactorizedEmbedding.from_embedding(original, embedding)
        set_module(model, name, factored)
        kept = Spectrum(singular_values(original.weight)[0].pow(2), 0).kept(embedding)
        report["embedding"] = {"name": name, "shape": list(original.weight.shape), "rank": embedding,
                               "energy": round(kept, 6), "params_before": _count(original),
                               "params_after": _count(factored)}
    parts = [*report["layers"].values(), *([report["embedding"]] if report["embedding"] else [])]
    report["params_before"] = sum(p["params_before"] for p in parts)
    report["params_after"] = sum(p["params_after"] for p in parts)
    if getattr(model, "config", None) is not None:
        record_factors(model)
    return report


def _check_arguments(rules: dict, block_diagonal: int, embedding: int | None, rank_key: str = "rank") -> None:
    if len(rules) > 1:
        raise RecipeError(f"factorize: {' and '.join(rules).replace('rank', rank_key)} each set the ranks; keep one")
    if not rules and embedding is None:
        rule = "rank, energy or keep" if rank_key == "rank" else f"{rank_key} or keep"
        raise RecipeError(f"factorize: nothing to do: set {rule} (linears) and/or embedding")
    energy, keep, rank = rules.get("energy"), rules.get("keep"), rules.get("rank")
    if energy is not None and not 0 < energy <= 1:
        raise RecipeError(f"factorize.energy: {energy} is outside (0, 1]: it is the fraction of each layer's "
                          "squared singular values kept")
    if keep is not None and not 0 < keep < 1:
        raise RecipeError(f"factorize.keep: {keep} is outside (0, 1): it is the fraction of the chosen linears' "
                          "weights the factors may hold")
    if rank is not None and rank < 1:
        raise RecipeError(f"factorize.{rank_key}: {rank} must be at least 1")
    if block_diagonal < 1:
        raise RecipeError(f"factorize.block_diagonal: {block_diagonal} must be at least 1")
    if embedding is not None and embedding < 1:
        raise RecipeError(f"factorize.embedding: {embedding} must be at least 1")


def _checked_embedding(model: nn.Module, rank: int | None) -> tuple[str, nn.Embedding] | None:
    """``(name, module)`` of the input word embedding to factorise, after checking ``rank`` fits it."""
    if rank is None:
        return None
    table = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if type(table) is not nn.Embedding:
        raise RecipeError(f"factorize.embedding: {type(model).__name__}'s input embedding is a "
                          f"{type(table).__name__}, not a plain nn.Embedding (already factorised or quantized?)")
    name = next(n for n, m in model.named_modules() if m is table)
    vocab, width = table.weight.shape
    if rank > min(vocab, width):
        raise RecipeError(f"factorize.embedding: {rank} is larger than min(V, H) = {min(vocab, width)} of {name} "
                          f"({vocab} x {width})")
    return name, table


def _parent(model: nn.Module, name: str) -> nn.Module:
    parent = name.rpartition(".")[0]
    return model.get_submodule(parent) if parent else model


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
