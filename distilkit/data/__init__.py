"""Data layer: task definitions and rows, GLUE metrics, batches, the teacher-logit cache, Tang et al. augmentation."""
