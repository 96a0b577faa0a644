"""Compression methods, one folder each (as peft does). A method imports core, data and models, never another method;
it joins the recipe program through its ``hooks.py`` (see :mod:`distilkit.core.method_hooks`)."""
