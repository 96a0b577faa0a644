"""LoRA recovery of compressed students: frozen pruned or quantized weights, trained low-rank adapters."""
