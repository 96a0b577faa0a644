"""Building a Tang et al. (2019) BiLSTM student: its word vectors from the teacher's (optionally PCA-projected).

Kept apart from :mod:`distilkit.models.bilstm`, the self-contained file ``save_pretrained`` copies beside the
weights (remote code): building a student is distilkit's job, loading one is not.
"""

from __future__ import annotations

import torch

from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification


def pca_project(embeddings: torch.Tensor, dim: int) -> torch.Tensor:
    """Rows of ``embeddings`` projected onto their top ``dim`` principal components (centred, Pearson 1901).

    The projection keeps the directions along which the teacher's word vectors differ most, so a narrow
    student starts with the most informative ``dim`` coordinates instead of random vectors.

    Raises:
        ValueError: ``dim`` exceeds the embedding width.
    """
    if dim > embeddings.shape[1]:
        raise ValueError(f"cannot project {embeddings.shape[1]}-wide teacher embeddings up to {dim}; "
                         "use init_embeddings_from_teacher: true or a smaller embedding_dim")
    x = embeddings.detach().float()
    centred = x - x.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # rows of vh: principal directions, by variance
    return centred @ vh[:dim].T


def build_bilstm_student(*, tokenizer, num_labels: int, problem_type: str, is_pair: bool,
                         embedding_dim: int = 300, hidden_size: int = 300, mlp_hidden_size: int = 400,
                         dropout: float = 0.1, teacher_embeddings: torch.Tensor | None = None,
                         freeze_embeddings: bool = False, project_embeddings: bool = False,
                         pooling: str = "last") -> BiLSTMForSequenceClassification:
    """Build a Tang et al. BiLSTM student over ``tokenizer``'s vocabulary.

    Args:
        tokenizer: Tokenizer whose ids the student reads (``len(tokenizer)`` rows of embeddings).
        num_labels: Output size (1 for regression).
        problem_type: ``"single_label_classification"`` or ``"regression"``.
        is_pair: Build the siamese sentence-pair variant.
        embedding_dim: Word-vector size when not taken from ``teacher_embeddings``.
        hidden_size: LSTM units per direction.
        mlp_hidden_size: Units of the ReLU layer.
        dropout: Dropout probability.
        teacher_embeddings: The teacher's input word-embedding matrix ``[vocab, dim]``; when given, the
            student's embeddings start from it (our offline stand-in for Tang's word2vec) and
            ``embedding_dim`` becomes ``dim``. It may have *more* rows than the tokenizer (models often pad
            their vocabulary to a multiple of 8), never fewer.
        freeze_embeddings: Keep the embeddings fixed during training.
        project_embeddings: Project ``teacher_embeddings`` onto their top ``embedding_dim`` principal
            components instead of copying them at full width (:func:`pca_project`).
        pooling: ``last`` or ``max`` (:class:`BiLSTMConfig`).

    Returns:
        A freshly initialised :class:`BiLSTMForSequenceClassification`.

    Raises:
        ValueError: ``teacher_embeddings`` is not 2-D or has fewer rows than the tokenizer has tokens.
    """
    vocab_size = len(tokenizer)
    if teacher_embeddings is not None:
        if teacher_embeddings.dim() != 2:
            raise ValueError(f"teacher_embeddings must be [vocab, dim], got shape {tuple(teacher_embeddings.shape)}")
        if teacher_embeddings.shape[0] < vocab_size:
            raise ValueError(f"teacher embeddings cover {teacher_embeddings.shape[0]} tokens but the tokenizer "
                             f"has {vocab_size}; use the teacher's tokenizer")
        if project_embeddings:
            teacher_embeddings = pca_project(teacher_embeddings, embedding_dim)
        vocab_size, embedding_dim = teacher_embeddings.shape
    config = BiLSTMConfig(vocab_size=vocab_size, embedding_dim=embedding_dim, hidden_size=hidden_size,
                          mlp_hidden_size=mlp_hidden_size, dropout=dropout, is_pair=is_pair, pooling=pooling,
                          pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                          num_labels=num_labels, problem_type=problem_type)
    model = BiLSTMForSequenceClassification(config)
    if teacher_embeddings is not None:
        with torch.no_grad():
            model.embeddings.weight.copy_(teacher_embeddings.detach().to(model.embeddings.weight.dtype))
    model.embeddings.weight.requires_grad_(not freeze_embeddings)
    return model
