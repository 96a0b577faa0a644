"""distilkit: transformer compression and distillation on Hugging Face."""

__version__ = "0.1.0"


def _register() -> None:
    """With distilkit installed, ``AutoModelForSequenceClassification.from_pretrained`` reloads BiLSTM and
    pruned students and distilkit-quantized checkpoints (``quant_method: distilkit``) without remote code."""
    import logging

    # transformers.quantizers imports torchao when it is installed; torchao then logs warnings about its
    # optional CUDA extensions on every CPU machine. They say nothing about distilkit: keep them quiet here.
    noisy = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    try:
        from distilkit import students  # noqa: F401  (registers BiLSTM and pruned classes)
        from distilkit.quantize_hf import register

        register()
    finally:
        for logger, level in zip(noisy, levels):
            logger.setLevel(level)


_register()
