"""Bottom layer: errors, atomic files, measurement, plug-in paths, the recipe-section base and the method interface.

Imports nothing from the rest of distilkit."""
