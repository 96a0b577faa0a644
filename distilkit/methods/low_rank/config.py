"""The recipe's ``factorize`` section (:mod:`distilkit.methods.low_rank`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilkit.core.sections import Section


class FactorizeConfig(Section):
    """Replace linear layers ``W`` (out x in) by two low-rank factors ``U V`` from a truncated SVD, and/or the
    word embedding by ALBERT's ``V x E . E x H`` factorisation, then recover by distillation from the
    unfactorised model (Noach & Goldberg 2020; usually with ``student.kind: copy``). At most one of ``rank``,
    ``energy`` and ``keep`` sets the linears' ranks; with none of them only the embedding is factorised. The
    saved model reloads with ``AutoModelForSequenceClassification.from_pretrained`` once distilkit is installed.

    ``kind: tt`` makes the linears tensor trains (TT-SVD, Oseledets 2011; Novikov et al. 2015) with ``tt_ranks``
    or ranks within the ``keep`` budget; ``kind: block_term`` sums of ``bt_blocks`` Tucker blocks (Ye et al. 2018)
    of rank ``bt_rank`` or the largest rank within ``keep``.
    """

    kind: Literal["svd", "tt", "block_term"] = "svd"
    """The form of the factorised linears: two SVD factors, a tensor train, or a sum of Tucker blocks."""

    rank: int | None = Field(default=None, gt=0)
    """The same rank for every chosen linear (at most ``min(out, in)``; ``min(out, in / block_diagonal)``)."""
    energy: float | None = Field(default=None, gt=0, le=1)
    """Per layer, the smallest rank keeping at least this fraction of ``sum(sigma_i^2)`` (1.0: full rank)."""
    keep: float | None = Field(default=None, gt=0, lt=1)
    """Global budget: the factors of the chosen linears hold at most this fraction of their weights, ranks
    allocated greedily by kept energy per parameter (Zhang et al. 2016's rank selection)."""
    modules: list[str] | None = None
    """Which linears: full module names or globs (``*.attention.*``), or last name parts (``query``, ``dense``).
    Default: every linear outside the classification head and the pooler. The classifier is never factorised."""
    block_diagonal: int = Field(default=1, ge=1)
    """``k > 1``: the second factor form. The input splits into ``k`` groups, each with its own SVD: the first
    factor is block-diagonal (``k`` blocks of ``rank x in/k``), the second dense (``out x k*rank``)."""
    embedding: int | None = Field(default=None, gt=0)
    """``E``: factorise the input word embedding ``V x H`` into ``V x E`` and ``E x H`` (ALBERT, Lan et al.
    2020, section 3.1); the BiLSTM's table too."""
    tt_ranks: int | list[int] | None = None
    """``kind: tt``: the bond ranks ``r_1..r_{d-1}`` (one int for all), each at most ``min(r_{k-1} m_k n_k,
    m_{k+1} n_{k+1} ... m_d n_d)``."""
    in_factors: list[int] | dict[int, list[int]] | None = None
    """``kind: tt``/``block_term``: ``n_1..n_d`` with product the layer's inputs (a list for every layer, or
    ``{features: list}``); default: a balanced factorisation of the inputs into ``tt_cores`` factors."""
    out_factors: list[int] | dict[int, list[int]] | None = None
    """The same for the outputs ``m_1..m_d`` (paired with ``in_factors``, one of each per core)."""
    tt_cores: int = Field(default=3, ge=2)
    """Number of cores ``d`` (modes) of the default factor shapes."""
    bt_blocks: int = Field(default=2, ge=1)
    """``kind: block_term``: the number ``N`` of Tucker blocks."""
    bt_rank: int | None = Field(default=None, gt=0)
    """``kind: block_term``: each block's Tucker rank per mode (a mode smaller than it keeps all of itself)."""

    @model_validator(mode="after")
    def _one_rule(self):
        tensor_keys = {"tt": ("tt_ranks", "in_factors", "out_factors", "tt_cores"),
                       "block_term": ("bt_rank", "bt_blocks", "in_factors", "out_factors", "tt_cores")}
        allowed = tensor_keys.get(self.kind, ())
        # A key at its default is no value dropped (the resolved recipe.yaml writes every default back).
        changed = {key for key in self.model_fields_set if getattr(self, key) != type(self).model_fields[key].default}
        foreign = [key for key in ("tt_ranks", "in_factors", "out_factors", "tt_cores", "bt_blocks", "bt_rank")
                   if key in changed and key not in allowed]
        if foreign:
            raise ValueError(f"{', '.join(foreign)}: not a key of kind: {self.kind}")
        if self.kind != "svd":
            svd = [key for key in ("rank", "energy", "block_diagonal") if key in changed]
            if svd:
                rule = "tt_ranks" if self.kind == "tt" else "bt_rank"
                raise ValueError(f"{', '.join(svd)}: SVD keys; with kind: {self.kind} set {rule} or keep")
            rules = [name for name in ("tt_ranks", "bt_rank", "keep") if getattr(self, name) is not None]
            if len(rules) > 1:
                raise ValueError(f"{' and '.join(rules)} each set the ranks; keep one")
            if not rules:
                raise ValueError(f"kind: {self.kind} needs {'tt_ranks' if self.kind == 'tt' else 'bt_rank'} or keep")
            return self
        rules = [name for name in ("rank", "energy", "keep") if getattr(self, name) is not None]
        if len(rules) > 1:
            raise ValueError(f"{' and '.join(rules)} each set the ranks; keep one")
        if not rules and self.embedding is None:
            raise ValueError("nothing to do: set rank, energy or keep (linears) and/or embedding")
        if not rules and ("modules" in self.model_fields_set or "block_diagonal" in self.model_fields_set):
            raise ValueError("modules and block_diagonal choose linears to factorise; set rank, energy or keep too")
        if self.modules is not None and not self.modules:
            raise ValueError("modules: [] chooses no layer; leave modules out for every linear outside the head")
        return self
