"""distilkit: transformer compression and distillation on Hugging Face."""

__version__ = "0.1.0"
