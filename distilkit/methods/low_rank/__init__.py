"""Low-rank factorisation of a student's linear layers and word embedding, recovered by distillation.

``factors.py``: the factored modules (``W ~ U V``, block-diagonal ``V``, ALBERT's ``V x E . E x H`` table) and
their truncated-SVD initialisation; ``ranks.py``: ranks from a fixed value, an energy threshold or a global
parameter budget; ``factorize.py``: :func:`~distilkit.methods.low_rank.factorize.factorize_model` (choose
layers, check, factorise, report); ``storage.py``: the ``config.json`` record and the transformers loader;
``config.py``: the recipe's ``factorize`` section; ``hooks.py``: the method in the recipe program.
``tensor_train.py`` and ``block_term.py``: the TT-matrix (TT-SVD) and sum-of-Tucker-blocks layers of ``kind: tt``
and ``kind: block_term``; ``tensorize.py``: their factor shapes, rank rules and checks.
"""
