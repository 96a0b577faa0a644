"""Recipe layer: the schema and its IO, the recipe program (:func:`distilkit.run.distill.run`), pipelines, built-in name dicts."""
