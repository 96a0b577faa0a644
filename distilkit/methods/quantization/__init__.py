"""Quantization: int8/int4/ternary/binary grids, QAT with fake quantization, integer layers, bitsandbytes."""
