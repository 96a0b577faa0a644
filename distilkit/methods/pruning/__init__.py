"""Structural pruning of heads, FFN neurons and layers (Michel et al. 2019; Molchanov et al. 2017), one-shot or iterative."""
