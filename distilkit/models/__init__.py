"""Models layer: teachers (and their fine-tuning), the BiLSTM and transformer students, vocabulary trimming."""
