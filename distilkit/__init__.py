"""distilkit: transformer compression and distillation on Hugging Face."""

__version__ = "0.1.0"

# With distilkit installed, ``AutoModelForSequenceClassification.from_pretrained`` reloads distilkit-quantized
# checkpoints (``quant_method: distilkit``) and BiLSTM students without remote code.
from distilkit import students as _students  # noqa: E402,F401
from distilkit.quantize import register as _register_quantizer  # noqa: E402

_register_quantizer()
