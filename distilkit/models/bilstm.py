"""BiLSTM student of Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks" (arXiv:1903.12136), as Hugging Face classes.

Single sentence (Tang et al., "Model Architecture"): word embeddings -> 1-layer BiLSTM -> ``[last forward
state; last backward state]`` -> ReLU layer -> logits. Sentence pairs (the paper's siamese variant): the
*same* encoder reads both sentences and the classifier sees ``[h1, h2, h1 * h2, |h1 - h2|]``.

This file is self-contained (torch, transformers, the standard library and its sibling
``bilstm_recurrence.py``, imported relatively) because ``save_pretrained`` copies it and its relative imports
next to the weights, so that ``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``
works on machines without distilkit. Do not import anything from distilkit here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .bilstm_recurrence import compiled_recurrence


class BiLSTMConfig(PreTrainedConfig):
    """Configuration of :class:`BiLSTMForSequenceClassification`.

    transformers 5 configs are dataclasses: fields are declared as annotated class attributes, and
    ``num_labels``/``id2label``/``problem_type`` come from :class:`~transformers.PreTrainedConfig`.

    Args:
        vocab_size: Rows of the word-embedding table.
        embedding_dim: Word-vector size (Tang et al. used 300-d word2vec).
        hidden_size: LSTM units *per direction*; the sentence vector has ``2 * hidden_size`` entries.
            Tang et al. pick 150 or 300 on the validation set; 300 is the larger setting.
        mlp_hidden_size: Units of the ReLU layer before the output layer (Tang et al.: 200 or 400).
        num_lstm_layers: Stacked BiLSTM layers (Tang et al. use one).
        dropout: Dropout on embeddings and on the classifier inputs.
        pad_token_id: Padding id; its embedding row is zero-initialised and never updated.
        is_pair: Siamese sentence-pair model (expects ``input_ids_b``).
        pooling: The sentence vector: ``last``, the last state of each direction (Tang et al. 2019), or
            ``max``, the element-wise max over every position's two-direction output (BiLSTM-max, Conneau et
            al. 2017 "Supervised Learning of Universal Sentence Representations", sec. 3.2.2).
        fast_batch1: Serve one sentence (or pair) at a time without gradients through
            :func:`~distilkit.models.bilstm_recurrence.batch1_recurrence` (both directions and both
            sentences in one loop, every token's gate pre-activations looked up in a table built on first use)
            instead of ``nn.LSTM``: same outputs to float rounding, 1.1-1.3x (SST-2) to 1.4-1.6x (MRPC pairs)
            faster at batch 1 on two cores (``scripts/bench_bilstm_b1.py``), at the cost of the table in memory
            (``vocab_size x 8 * hidden_size`` floats, 4x the 300-d word vectors at 150 units). ``False`` keeps
            ``nn.LSTM`` there too.
    """

    model_type = "distilkit-bilstm"

    vocab_size: int = 30522
    embedding_dim: int = 300
    hidden_size: int = 300
    mlp_hidden_size: int = 400
    num_lstm_layers: int = 1
    dropout: float | int = 0.1
    pad_token_id: int | None = 0
    is_pair: bool = False
    pooling: str = "last"
    fast_batch1: bool = True


#: The pipeline module saved beside this file (``bilstm_pipeline.py``; its class feeds sentences as the BiLSTM reads).
PIPELINE_FILE = "bilstm_pipeline.py"


def _loaded(param: torch.Tensor) -> bool:
    """True when transformers 5 already filled ``param`` from a checkpoint (so init must not touch it).

    The library's guarded ``init.*`` functions check this flag themselves, but in-place writes to a
    *slice* (padding row, forget-gate bias) do not, so we check it by hand.
    """
    return bool(getattr(param, "_is_hf_initialized", False))


class BiLSTMForSequenceClassification(PreTrainedModel):
    """Tang et al. 2019 BiLSTM classifier (or regressor when ``num_labels == 1``).

    Inputs: ``input_ids``/``attention_mask`` for sentence a and, for pair models, ``input_ids_b``/
    ``attention_mask_b`` for sentence b, each tokenized separately without special tokens (see
    :func:`encode_bilstm`).
    """

    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"
    main_input_name = "input_ids"

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, num_layers=config.num_lstm_layers,
                            batch_first=True, bidirectional=True)
        features = 2 * config.hidden_size * (4 if config.is_pair else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.mlp = nn.Linear(features, config.mlp_hidden_size)
        self.classifier = nn.Linear(config.mlp_hidden_size, config.num_labels)
        self._batch1_cache = None  # (weights' identity, gate table, recurrent weights): see _batch1_weights
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # Roughly the scale of word2vec vectors; overwritten when teacher embeddings are given.
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None and not _loaded(module.weight):
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LSTM):
            hidden = module.hidden_size
            for name, param in module.named_parameters():
                if _loaded(param):
                    continue
                with torch.no_grad():
                    if name.startswith("weight_ih"):
                        nn.init.xavier_uniform_(param)
                    elif name.startswith("weight_hh"):
                        # One orthogonal block per gate keeps the recurrence well conditioned.
                        for gate in param.split(hidden, dim=0):
                            nn.init.orthogonal_(gate)
                    else:
                        param.zero_()
                        if name.startswith("bias_ih"):
                            # Forget-gate bias 1 (Jozefowicz et al. 2015): remember by default early on.
                            # PyTorch orders the gates input, forget, cell, output.
                            param[hidden:2 * hidden].fill_(1.0)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, plus the BiLSTM's text-classification pipeline.

        ``bilstm_pipeline.py`` (beside this file) goes into the folder and ``config.json`` names it
        (``custom_pipelines``), so ``transformers.pipeline("text-classification", model=folder,
        trust_remote_code=True)`` feeds the BiLSTM as it reads (sentences apart, no special tokens), which the
        stock pipeline cannot. A copy of this file without its pipeline file beside it, and ``push_to_hub=True``
        (which uploads before the file is written), save the model alone.
        """
        code = None
        if __file__.endswith("bilstm.py") and not kwargs.get("push_to_hub") and kwargs.get("is_main_process", True):
            try:  # open() rather than shutil/pathlib: this file imports torch and transformers only
                with open(__file__[: -len("bilstm.py")] + PIPELINE_FILE, "rb") as source:
                    code = source.read()
            except OSError:
                code = None
        custom = {k: v for k, v in (getattr(self.config, "custom_pipelines", None) or {}).items()
                  if k != "text-classification"}  # loaded with the entry: without the file it would name nothing
        if code is not None:
            custom["text-classification"] = {"impl": f"{PIPELINE_FILE[:-3]}.BiLSTMTextClassificationPipeline",
                                             "pt": ["AutoModelForSequenceClassification"], "type": "text"}
        self.config.custom_pipelines = custom
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if code is not None:
            with open(f"{save_directory}/{PIPELINE_FILE}", "wb") as target:
                target.write(code)
        return result

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sentence vectors ``[batch, 2 * hidden_size]``: the last forward and last backward LSTM states, or
        with ``pooling: max`` the element-wise max of the top layer's outputs over the sentence's tokens.

        Sequences are packed, so padding never enters the recurrence and a sentence's vector does not
        depend on how much padding its batch needed. An empty sentence is read as a single padding token.
        A batch without padding (always so at batch 1) goes straight into one LSTM call: packing would only
        add sorting, and the padding checks are skipped (at batch 1 they cost more than the head; issue 26).
        """
        batch = input_ids.shape[0]
        if input_ids.shape[1] == 0:  # every sentence in the batch is empty
            pad = self.config.pad_token_id or 0
            input_ids = input_ids.new_full((batch, 1), pad)
            attention_mask = torch.zeros_like(input_ids)
        pool = self.config.pooling  # a config.json saved before the field loads its default, "last"
        if attention_mask is None or bool(attention_mask.all()):
            output, (hidden, _) = self.lstm(self._drop(self.embeddings(input_ids)))
            return output.amax(dim=1) if pool == "max" else torch.cat([hidden[-2], hidden[-1]], dim=-1)
        mask = attention_mask.bool()
        if (mask[:, 1:] & ~mask[:, :-1]).any():
            # Left (or holed) padding: move the real tokens to the front, keeping their order, because
            # packing assumes each row's tokens come first.
            order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
            input_ids, mask = input_ids.gather(1, order), mask.gather(1, order)
        embedded = self._drop(self.embeddings(input_ids))
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        output, (hidden, _) = self.lstm(packed)
        if pool == "max":
            # Padding positions come back as -inf, so they never win the max (in the batch's original order).
            padded, _ = pad_packed_sequence(output, batch_first=True, padding_value=float("-inf"))
            return padded.amax(dim=1)
        # hidden: [num_layers * 2, batch, hidden]; the last two rows are the top layer's two directions.
        return torch.cat([hidden[-2], hidden[-1]], dim=-1)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        # Dropout is the identity in eval mode; skipping the call saves an op per use at batch 1.
        return self.dropout(x) if self.training else x

    def train(self, mode: bool = True):
        """``nn.Module.train``; training frees the batch-1 gate table (it would be stale after a step anyway)."""
        if mode:
            self._batch1_cache = None
        return super().train(mode)

    def _batch1_eligible(self, input_ids: torch.Tensor) -> bool:
        """Whether this call takes :func:`batch1_recurrence`: one row, eval mode, no gradients, a plain fp32
        1-layer ``nn.LSTM`` on CPU (quantized or otherwise replaced modules keep their own forward) with no
        hooks on it (whoever hooked it expects it to run: ``report.count_macs`` counts its products there), and
        not while an exporter or compiler traces the model (its graph must keep the general, any-length path)."""
        return (bool(getattr(self.config, "fast_batch1", True)) and input_ids.shape[0] == 1 and not self.training
                and not torch.is_grad_enabled() and input_ids.device.type == "cpu"
                and type(self.lstm) is nn.LSTM and self.lstm.num_layers == 1 and self.lstm.bias
                and not (self.lstm._forward_hooks or self.lstm._forward_pre_hooks)
                and type(self.embeddings) is nn.Embedding and self.embeddings.weight.dtype == torch.float32
                and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()))

    def _batch1_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Row 0's real tokens, in order (wherever the padding is); an empty sentence is read as one token,
        the first (padding) id, as :meth:`encode` reads it."""
        ids = input_ids[0]
        if attention_mask is not None and not bool(attention_mask.all()):
            ids = ids[attention_mask[0].bool()]
        if ids.shape[0] == 0:
            ids = input_ids[0, :1] if input_ids.shape[1] else input_ids.new_full((1,), self.config.pad_token_id or 0)
        return ids

    def _batch1_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The gate table ``[vocab, 2, 4H]`` and recurrent weights ``[2, H, 4H]`` of :func:`batch1_recurrence`,
        rebuilt whenever a weight they come from was changed in place, replaced or moved (its storage or
        version counter differs)."""
        lstm, hidden = self.lstm, self.lstm.hidden_size
        directions = [[getattr(lstm, f"{name}_l0{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                      for suffix in ("", "_reverse")]
        key = tuple((p.data_ptr(), p._version) for p in [self.embeddings.weight, *directions[0], *directions[1]])
        if self._batch1_cache is None or self._batch1_cache[0] != key:

            def order(w: torch.Tensor) -> torch.Tensor:  # nn.LSTM's gate blocks i, f, g, o -> i, f, o, g
                return torch.cat([w[:2 * hidden], w[3 * hidden:], w[2 * hidden:3 * hidden]])

            with torch.no_grad():
                table = torch.stack([torch.addmm(order(b_ih + b_hh), self.embeddings.weight, order(w_ih).T)
                                     for w_ih, _, b_ih, b_hh in directions], dim=1)
                w_hh = torch.stack([order(w).T for _, w, _, _ in directions]).contiguous()
            self._batch1_cache = (key, table, w_hh)
        return self._batch1_cache[1], self._batch1_cache[2]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_ids_b: torch.Tensor | None = None, attention_mask_b: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, return_dict: bool | None = None,
                **kwargs) -> SequenceClassifierOutput | tuple:
        """Classify sentences (or sentence pairs).

        Args:
            input_ids: ``[batch, len_a]`` token ids of sentence a, no special tokens.
            attention_mask: ``[batch, len_a]``, 1 for real tokens.
            input_ids_b: ``[batch, len_b]`` token ids of sentence b (pair models only).
            attention_mask_b: ``[batch, len_b]``.
            labels: Class ids (``-100`` = unlabelled) or float targets (``NaN`` = unlabelled).
            return_dict: ``False`` returns a tuple ``(loss?, logits)``.
            **kwargs: Ignored (e.g. ``token_type_ids`` from a generic collator).

        Returns:
            ``SequenceClassifierOutput`` with ``logits`` ``[batch, num_labels]`` and ``loss`` when labels
            are given.

        Raises:
            ValueError: sentence b missing for a pair model, or given to a single-sentence model.
        """
        pair = self.config.is_pair
        if pair and input_ids_b is None:
            raise ValueError("this BiLSTM was built for sentence pairs: pass input_ids_b/attention_mask_b")
        if not pair and input_ids_b is not None:
            raise ValueError("this BiLSTM reads single sentences (is_pair=False) but got input_ids_b")
        if self._batch1_eligible(input_ids):
            tokens = [self._batch1_tokens(input_ids, attention_mask)]
            if pair:
                tokens.append(self._batch1_tokens(input_ids_b, attention_mask_b))
            table, w_hh = self._batch1_weights()
            states = compiled_recurrence()(tokens, table, w_hh, self.config.pooling == "max")
            h1, h2 = states[:1], states[1:]
        else:
            h1 = self.encode(input_ids, attention_mask)
            h2 = self.encode(input_ids_b, attention_mask_b) if pair else None
        features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1) if pair else h1
        hidden = torch.relu(self.mlp(self._drop(features)))
        logits = self.classifier(self._drop(hidden))
        loss = None if labels is None else self._loss(logits, labels)
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, or MSE for regression; unlabelled rows are skipped."""
        if self.config.num_labels == 1 or self.config.problem_type == "regression":
            preds, targets = logits.reshape(-1), labels.reshape(-1).float()
            keep = ~torch.isnan(targets)
        else:
            preds, targets = logits, labels.reshape(-1).long()
            keep = targets != -100
        if not keep.any():
            return logits[:0].sum()  # zero, still attached to the graph
        if preds.dim() == 1:
            return nn.functional.mse_loss(preds[keep], targets[keep])
        return nn.functional.cross_entropy(preds[keep], targets[keep])


def encode_bilstm(tokenizer, texts_a: list[str], texts_b: list[str] | None, max_length: int) -> dict:
    """Tokenize sentences a and b *separately*, without special tokens (the BiLSTM reads words only).

    Padding is done here, on the right, with the tokenizer's pad id (0 when it has none), so tokenizers
    that pad on the left or lack a pad token work too.

    Args:
        tokenizer: Any Hugging Face tokenizer (usually the teacher's).
        texts_a: First sentences.
        texts_b: Second sentences, or ``None`` for single-sentence tasks.
        max_length: Truncate each sentence to this many tokens.

    Returns:
        ``input_ids``/``attention_mask`` ``[batch, longest]`` (long tensors) and, for pairs,
        ``input_ids_b``/``attention_mask_b``.
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def one(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = tokenizer([t or "" for t in texts], add_special_tokens=False, truncation=True,
                        max_length=max_length)["input_ids"]
        width = max((len(row) for row in ids), default=0)
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        return input_ids, mask

    batch = dict(zip(("input_ids", "attention_mask"), one(list(texts_a))))
    if texts_b is not None:
        batch["input_ids_b"], batch["attention_mask_b"] = one(list(texts_b))
    return batch


# ``save_pretrained`` then writes ``auto_map`` into config.json and copies this file next to the weights.
BiLSTMConfig.register_for_auto_class()
BiLSTMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
