"""The text-classification pipeline of the Tang et al. (2019) BiLSTM student.

The stock ``TextClassificationPipeline`` tokenizes a sentence pair as one sequence with ``[CLS]``/``[SEP]``; the
BiLSTM reads each sentence apart, without special tokens, and a pair model needs ``input_ids_b``
(:func:`encode_bilstm`). :class:`BiLSTMTextClassificationPipeline` takes the stock pipeline's inputs (a string, a
list of strings, ``{"text": a, "text_pair": b}`` dicts or a list of them) and gives its outputs (labels and
scores, ``top_k``, ``function_to_apply``, batching); only the way texts become tensors changes.

Two ways in:

* Without distilkit: ``BiLSTMForSequenceClassification.save_pretrained`` copies this file beside ``bilstm.py`` and
  names it in ``config.json`` (``custom_pipelines``), so ``pipeline("text-classification", model=folder,
  trust_remote_code=True)`` runs it. Like ``bilstm.py`` this file is remote code: torch, transformers and the
  relative import of ``bilstm.py`` only.
* With distilkit: ``import distilkit`` registers the task ``bilstm-text-classification`` (:func:`register`), so
  ``pipeline("bilstm-text-classification", model=folder)`` needs no remote code.
"""

from __future__ import annotations

from transformers import AutoModelForSequenceClassification, TextClassificationPipeline

from .bilstm import BiLSTMForSequenceClassification, encode_bilstm

#: The task name :func:`register` gives the pipeline (``transformers.pipeline(TASK, model=folder)``).
TASK = "bilstm-text-classification"
#: Tokens kept per sentence when the call does not say (distilkit's ``predict`` keeps as many).
DEFAULT_MAX_LENGTH = 128


class BiLSTMTextClassificationPipeline(TextClassificationPipeline):
    """Text classification with a BiLSTM student: sentences tokenized apart, without special tokens.

    Call it like ``TextClassificationPipeline``; ``max_length`` (tokens per sentence, default 128) is the one
    tokenizer setting it takes.
    """

    def check_model_type(self, supported_models) -> None:
        """Refuse a model that is not a BiLSTM (the stock pipeline serves those), instead of logging and going on."""
        if getattr(self.model.config, "model_type", None) != BiLSTMForSequenceClassification.config_class.model_type:
            raise ValueError(f"{type(self).__name__} serves distilkit BiLSTM students; "
                             f"{type(self.model).__name__} takes the stock text-classification pipeline")

    def _sanitize_parameters(self, function_to_apply=None, top_k="", max_length=None, **tokenizer_kwargs):
        unknown = sorted(set(tokenizer_kwargs) - {"truncation", "padding"})  # both: always, per sentence
        if unknown:
            raise ValueError(f"the BiLSTM pipeline takes max_length (tokens per sentence), not {', '.join(unknown)}")
        preprocess, forward, postprocess = super()._sanitize_parameters(function_to_apply=function_to_apply,
                                                                        top_k=top_k)
        if max_length is not None:
            preprocess["max_length"] = max_length
        return preprocess, forward, postprocess

    def preprocess(self, inputs, max_length: int = DEFAULT_MAX_LENGTH) -> dict:
        if isinstance(inputs, dict):
            if "text" not in inputs or set(inputs) - {"text", "text_pair"}:
                raise ValueError(f'a text pair is {{"text": ..., "text_pair": ...}}; got keys {sorted(inputs)}')
            text, pair = inputs["text"], inputs.get("text_pair")
        elif isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], list) and len(inputs[0]) == 2:
            text, pair = inputs[0]  # the stock pipeline's older [[text, text_pair]] form
        elif isinstance(inputs, str):
            text, pair = inputs, None
        else:
            raise ValueError('the pipeline takes a string, {"text": ..., "text_pair": ...}, or a list of either; '
                             f"got {type(inputs).__name__}")
        if self.model.config.is_pair and pair is None:
            raise ValueError('this BiLSTM classifies sentence pairs: pass {"text": ..., "text_pair": ...}')
        if not self.model.config.is_pair and pair is not None:
            raise ValueError("this BiLSTM classifies single sentences, but got a text_pair")
        return encode_bilstm(self.tokenizer, [text], None if pair is None else [pair], max_length)


def register() -> None:
    """Register :data:`TASK` with ``transformers.pipeline`` (idempotent; called by ``import distilkit``)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    if TASK in PIPELINE_REGISTRY.get_supported_tasks():  # registering again would log an "overwriting" warning
        return
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=BiLSTMTextClassificationPipeline,
                                        pt_model=AutoModelForSequenceClassification, type="text")
