"""BiLSTM student of Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks" (arXiv:1903.12136), as Hugging Face classes.

Single sentence (Tang §3.1): embeddings -> 1-layer BiLSTM -> [last forward state; last backward state]
-> ReLU layer -> logits. Sentence pairs (Tang §3.2, siamese): the same encoder reads both sentences and
the classifier sees ``[h1, h2, h1 * h2, |h1 - h2|]``.

This file is self-contained (torch, transformers and the standard library only) because
``save_pretrained`` copies it next to the weights, so ``AutoModelForSequenceClassification.from_pretrained
(dir, trust_remote_code=True)`` works on machines without distilkit.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class BiLSTMConfig(PreTrainedConfig):
    """Configuration of :class:`BiLSTMForSequenceClassification` (``num_labels``/``problem_type`` as usual)."""

    model_type = "distilkit-bilstm"

    vocab_size: int = 30522
    embedding_dim: int = 300
    hidden_size: int = 300
    """Per direction."""
    mlp_hidden_size: int = 400
    num_lstm_layers: int = 1
    dropout: float = 0.1
    pad_token_id: int | None = 0
    is_pair: bool = False


class BiLSTMForSequenceClassification(PreTrainedModel):
    """Tang et al. 2019 BiLSTM classifier/regressor.

    Inputs: ``input_ids``/``attention_mask`` for sentence a and, for pair tasks, ``input_ids_b``/
    ``attention_mask_b`` for sentence b, each tokenized separately (see :func:`encode_bilstm`).
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
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Sentence vectors ``[batch, 2 * hidden]``: final forward and backward LSTM states."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # Packing keeps padding out of the recurrence, so a sentence's vector does not depend on how
        # much padding its batch needed. Empty sentences are read as one (zero) padding embedding.
        lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
        embedded = self.dropout(self.embeddings(input_ids))
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return torch.cat([hidden[-2], hidden[-1]], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_ids_b: torch.Tensor | None = None, attention_mask_b: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, return_dict: bool | None = None, **kwargs):
        h1 = self.encode(input_ids, attention_mask)
        if self.config.is_pair:
            if input_ids_b is None:
                raise ValueError("this BiLSTM was built for sentence pairs: pass input_ids_b/attention_mask_b")
            h2 = self.encode(input_ids_b, attention_mask_b)
            features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1)
        else:
            features = h1
        hidden = torch.relu(self.mlp(self.dropout(features)))
        logits = self.classifier(self.dropout(hidden))
        loss = None
        if labels is not None:
            if self.config.num_labels == 1 or self.config.problem_type == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels.long(), ignore_index=-100)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def encode_bilstm(tokenizer, texts_a: list[str], texts_b: list[str] | None, max_length: int) -> dict:
    """Tokenize the two sentences separately, without special tokens (the BiLSTM reads words only)."""
    def one(texts):
        return tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length,
                         padding=True, return_tensors="pt", return_token_type_ids=False)

    enc = one(texts_a)
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if texts_b is not None:
        enc_b = one(texts_b)
        batch["input_ids_b"], batch["attention_mask_b"] = enc_b["input_ids"], enc_b["attention_mask"]
    return batch


def build_bilstm_student(*, tokenizer, num_labels: int, problem_type: str, is_pair: bool,
                         embedding_dim: int = 300, hidden_size: int = 300, mlp_hidden_size: int = 400,
                         dropout: float = 0.1, teacher_embeddings: torch.Tensor | None = None,
                         freeze_embeddings: bool = False) -> BiLSTMForSequenceClassification:
    """Build a BiLSTM student over ``tokenizer``'s vocabulary.

    Args:
        teacher_embeddings: The teacher's word-embedding matrix ``[vocab, dim]``; when given, the student's
            embeddings start from it (our offline stand-in for Tang's word2vec) and ``embedding_dim`` is its dim.
        freeze_embeddings: Keep the embeddings fixed during training.
    """
    vocab_size = len(tokenizer)
    if teacher_embeddings is not None:
        if teacher_embeddings.shape[0] < vocab_size:
            raise ValueError(f"teacher embeddings cover {teacher_embeddings.shape[0]} tokens but the tokenizer "
                             f"has {vocab_size}; use the teacher's tokenizer")
        vocab_size, embedding_dim = teacher_embeddings.shape
    config = BiLSTMConfig(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
                          mlp_hidden_size=mlp_hidden_size, dropout=dropout, is_pair=is_pair,
                          pad_token_id=tokenizer.pad_token_id or 0, num_labels=num_labels,
                          problem_type=problem_type)
    model = BiLSTMForSequenceClassification(config)
    if teacher_embeddings is not None:
        with torch.no_grad():
            model.embeddings.weight.copy_(teacher_embeddings)
    model.embeddings.weight.requires_grad_(not freeze_embeddings)
    return model


BiLSTMConfig.register_for_auto_class()
BiLSTMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
