"""Intermediate-layer distillation of transformer students: hidden states (TinyBERT, DistilBERT), attention
distributions and value relations (MiniLM), the embedding layer (TinyBERT) and [CLS] states (BERT-PKD)."""
