"""The recipe's ``factorize`` section (:mod:`distilkit.methods.low_rank`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from distilkit.core.sections import Section


class FactorizeConfig(Section):
    """Replace linear layers ``W`` (out x in) by two low-rank factors ``U V`` from a truncated SVD, and/or the
    word embedding by ALBERT's ``V x E . E x H`` factorisation, then recover by distillation from the
    unfactorised model (Noach & Goldberg 2020; usually with ``student.kind: copy``). At most one of ``rank``,
    ``energy`` and ``keep`` sets the linears' ranks; with none of them only the embedding is factorised. The
    saved model reloads with ``AutoModelForSequenceClassification.from_pretrained`` once distilkit is installed.
    """

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

    @model_validator(mode="after")
    def _one_rule(self):
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
