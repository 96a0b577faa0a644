"""Recipe checks that span keys: combinations the schema of one section cannot see.

Two kinds live here, each one rule in an explicit tuple:

* :data:`MEANINGLESS` -- a key that another key makes meaningless. Writing it is an error naming both keys,
  never a value silently dropped (issue 18: ``embedding_dim: 300`` with ``init_embeddings_from_teacher:
  true`` used to keep BERT-large's 1024-d vectors and give a student 36x larger than the recipe promised).
  A rule fires only on keys the recipe *writes* (pydantic's ``model_fields_set``), so a default that does not
  apply is never an error. ``docs/design.md`` lists every rule; a test keeps the two in step.
* :data:`CONFLICTS` -- combinations that would fail later, or train something that cannot work.

:func:`recipe_problems` runs them all and returns every message, so a recipe with three mistakes shows three
lines rather than the first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass

from distilkit.core.plugins import is_plugin_path
from distilkit.data.tasks import TaskSpec
from distilkit.methods.distillation.mutual_checks import mutual_problems
from distilkit.run.schema import Recipe


@dataclass(frozen=True)
class Rule:
    """``key`` is meaningless (or wrong) when ``applies(recipe, task)``; ``because`` names the other key."""

    key: str
    because: str
    applies: Callable[[Recipe, TaskSpec], bool]
    why: str


def written(section, *names: str) -> bool:
    """Whether the recipe wrote any of ``names`` in ``section`` (a default it left alone does not count)."""
    return section is not None and any(name in section.model_fields_set for name in names)


def _student(recipe: Recipe, kind: str | tuple[str, ...]) -> bool:
    return recipe.student.kind in ((kind,) if isinstance(kind, str) else kind)


def _plugin(recipe: Recipe) -> bool:
    """Whether the (first) teacher, whose word vectors a student copies, is a plug-in."""
    return is_plugin_path(recipe.primary_teacher.model)


def _teachers(recipe: Recipe, broken: Callable[[bool, object], bool]) -> bool:
    """Whether ``broken(is_plugin, teacher_section)`` holds for any teacher of the recipe."""
    return any(broken(is_plugin_path(t.model), t) for t in recipe.teachers)


def _ensemble(recipe: Recipe) -> bool:
    return isinstance(recipe.teacher, list)


def _distilkit_linear_grid(recipe: Recipe) -> bool:
    q = recipe.quantize
    return q is not None and q.linear is not None and not q.linear.startswith("bnb")


def _shared(recipe: Recipe):
    """The transformer student's ``share_layers`` section, or ``None``."""
    return getattr(recipe.student, "share_layers", None) if _student(recipe, "transformer") else None


def _share_group_count(recipe: Recipe) -> int | None:
    """How many shared blocks a whole-number depth gives (``None`` when a fraction or a non-divisor)."""
    share, depth = _shared(recipe), recipe.student.num_layers
    if share is None or not isinstance(depth, int):
        return None
    size = depth if share.group_size == "all" else share.group_size
    return depth // size if depth % size == 0 else None


MEANINGLESS: tuple[Rule, ...] = (
    Rule("student.embedding_dim", "student.init_embeddings_from_teacher",
         lambda r, t: _student(r, "bilstm") and r.student.init_embeddings_from_teacher is True
         and written(r.student, "embedding_dim"),
         "true copies the teacher's word vectors at the teacher's width; use 'pca' to project them to "
         "embedding_dim, or drop embedding_dim"),
    Rule("student.init_embeddings_from_teacher", "student.tokenizer",
         lambda r, t: _student(r, "bilstm") and bool(r.student.init_embeddings_from_teacher)
         and written(r.student, "init_embeddings_from_teacher") and isinstance(r.student.tokenizer, str),
         "the teacher's word vectors index the teacher's vocabulary, not student.tokenizer's; drop "
         "student.tokenizer (the student then reads the teacher's) or set init_embeddings_from_teacher: false"),
    Rule("student.init_embeddings_from_teacher", "teacher.model",
         lambda r, t: _student(r, "bilstm") and bool(r.student.init_embeddings_from_teacher)
         and written(r.student, "init_embeddings_from_teacher") and _plugin(r),
         "a plug-in teacher has no Hugging Face word embeddings to copy; set init_embeddings_from_teacher: false"),
    Rule("train.sparse_embeddings", "student.freeze_embeddings",
         lambda r, t: _student(r, "bilstm") and r.student.freeze_embeddings and r.train.sparse_embeddings,
         "a frozen table gets no gradients, sparse or dense; drop one of them"),
    Rule("student.init_from_teacher_layers", "student.config_from",
         lambda r, t: _student(r, "transformer") and r.student.config_from is not None
         and written(r.student, "init_from_teacher_layers") and r.student.init_from_teacher_layers is not None,
         "a student built from config_from has no teacher layers to copy; drop one of them"),
    Rule("student.init_from_teacher_layers", "student.share_layers.init",
         lambda r, t: _shared(r) is not None and isinstance(_shared(r).init, list)
         and written(r.student, "init_from_teacher_layers") and r.student.init_from_teacher_layers is not None,
         "a list of teacher layers in share_layers.init picks each group's teacher layer itself; drop one of them"),
    Rule("student.share_layers.init", "student.init_from_teacher_layers",
         lambda r, t: _shared(r) is not None and written(_shared(r), "init")
         and r.student.init_from_teacher_layers is None,
         "a student that copies no teacher layers has none to average or pick: each shared block starts as its "
         "group's first, freshly initialised layer"),
    Rule("student.share_layers.init", "student.config_from",
         lambda r, t: _shared(r) is not None and written(_shared(r), "init") and r.student.config_from is not None,
         "a student built from config_from has no teacher layers to average or pick"),
    Rule("student.features", "student.variant",
         lambda r, t: _student(r, "linear_attention") and written(r.student, "features")
         and r.student.variant in ("elu", "hedgehog", "sinkhorn"),
         "only performer (random features) and linformer (projected length) have a feature count"),
    Rule("student.feature_lr", "student.variant",
         lambda r, t: _student(r, "linear_attention") and r.student.feature_lr is not None
         and r.student.variant in ("elu", "performer"),
         "elu has no feature map and performer's random features are fixed: nothing trains at feature_lr"),
    Rule("student.seed", "student.variant",
         lambda r, t: _student(r, "linear_attention") and written(r.student, "seed")
         and r.student.variant in ("elu", "hedgehog", "sinkhorn"),
         "only performer's random features and linformer's projections are drawn from the seed"),
    *(Rule(f"student.{name}", "student.variant",
           lambda r, t, name=name: _student(r, "linear_attention") and written(r.student, name)
           and r.student.variant != "sinkhorn",
           "only sinkhorn sorts blocks")
      for name in ("block_size", "sinkhorn_iters", "temperature")),
    Rule("loss.temperature", "loss.kind",
         lambda r, t: r.loss.kind == "mse" and written(r.loss, "temperature")
         and not (_ensemble(r) and r.loss.ensemble == "average" and t.problem_type != "regression"),
         "the logit MSE of Tang et al. compares raw logits; temperature softens only kind: kl (or the "
         "probabilities an ensemble of teachers averages)"),
    Rule("loss.ensemble", "teacher",
         lambda r, t: not _ensemble(r) and written(r.loss, "ensemble"),
         "there is one teacher: nothing to combine; list several teachers under teacher"),
    Rule("teacher.temperature", "loss.ensemble",
         lambda r, t: _ensemble(r) and any(c.temperature is not None for c in r.teacher)
         and r.loss.kind == "mse" and (r.loss.ensemble == "each" or t.problem_type == "regression"),
         "with loss.kind: mse each teacher's raw logits (or predictions) are matched; a teacher's temperature "
         "softens only kind: kl or the probabilities ensemble: average combines"),
    Rule("quantize.activation_bits", "quantize.qat",
         lambda r, t: r.quantize is not None and not r.quantize.qat and written(r.quantize, "activation_bits"),
         "activation fake-quantization is part of quantization-aware training only"),
    Rule("quantize.backend", "quantize.linear",
         lambda r, t: written(r.quantize, "backend")
         and not (_distilkit_linear_grid(r) and r.quantize.symmetric),
         "the kernel choice applies to symmetric distilkit linear grids (int8, int4, ternary, binary)"),
    Rule("quantize.per_channel", "quantize.linear",
         lambda r, t: written(r.quantize, "per_channel") and not _distilkit_linear_grid(r),
         "per-channel scales belong to distilkit linear grids; embeddings are always row-wise, bitsandbytes "
         "picks its own blocks"),
    Rule("quantize.symmetric", "quantize.linear",
         lambda r, t: written(r.quantize, "symmetric") and r.quantize.embedding is None
         and r.quantize.linear not in ("int8", "int4"),
         "only the int8/int4 grids (linear or embedding) come in symmetric and asymmetric forms"),
    Rule("train.max_steps", "train.epochs",
         lambda r, t: r.train.epochs == 0 and r.train.max_steps is not None,
         "epochs: 0 trains no step at all"),
    Rule("train.resume_from", "train.epochs",
         lambda r, t: r.train.epochs == 0 and r.train.resume_from is not None,
         "epochs: 0 trains nothing to resume"),
    Rule("train.log_every", "train.log_with",
         lambda r, t: written(r.train, "log_every") and not r.train.log_with,
         "no tracker is logged to"),
    *(Rule(f"measure.{name}", "measure.latency",
           lambda r, t, name=name: not r.measure.latency and written(r.measure, name),
           "it sets up the latency measurement that latency: false turns off")
      for name in ("batch_sizes", "repeats", "num_threads")),
    Rule("teacher.revision", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, c: plugin and c.revision is not None),
         "a plug-in teacher is imported, not downloaded: there is no Hub revision to pick"),
    Rule("teacher.kwargs", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, c: not plugin and bool(c.kwargs)),
         "kwargs are passed to a plug-in callable (package.module:Callable) only"),
    Rule("teacher.dtype", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, c: plugin and written(c, "dtype")),
         "a plug-in teacher runs in whatever precision it was built in"),
    Rule("teacher.finetune", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, c: plugin and c.finetune is not None),
         "distilkit fine-tunes Hugging Face teachers; fine-tune a plug-in teacher yourself"),
    *(Rule(f"hub.{name}", "hub.push",
           lambda r, t, name=name: r.hub is not None and not r.hub.push and written(r.hub, name),
           "the recipe pushes nothing; `distilkit push RUN_DIR --repo user/name` takes its own arguments")
      for name in ("repo", "private")),
    Rule("data.augment.pair_mode", "task",
         lambda r, t: r.data.augment is not None and written(r.data.augment, "pair_mode") and not t.is_pair,
         "the task has one sentence per example: there is no pair to choose from"),
)

_TEACHER_NETWORK_KINDS = ("copy", "pruned", "linear_attention")

CONFLICTS: tuple[Rule, ...] = (
    Rule("student.vocab", "student.tokenizer",
         lambda r, t: _student(r, "bilstm") and r.student.vocab is not None
         and r.student.tokenizer is not None and not isinstance(r.student.tokenizer, str),
         "a trained SentencePiece vocabulary is already made for the transfer set; trimming keeps WordPiece "
         "tokens of the teacher's vocabulary; choose one (vocab_size sets the trained vocabulary's size)"),
    Rule("loss.attention_weight", "student.kind",
         lambda r, t: bool(r.loss.attention_weight) and not _student(r, "linear_attention"),
         "attention transfer trains linear_attention students only"),
    Rule("student.block_size", "student.max_length",
         lambda r, t: _student(r, "linear_attention") and r.student.variant == "sinkhorn"
         and r.student.block_size > r.student.max_length,
         "a block longer than the longest input would make Sinkhorn attention one block of plain softmax "
         "attention; use a block_size of at most max_length (e.g. max_length / 8)"),
    Rule("loss.alpha", "data.labels",
         lambda r, t: r.data.labels == "none" and r.loss.alpha > 0,
         "alpha mixes in gold labels but data.labels is 'none'; set loss.alpha: 0 or data.labels: gold"),
    Rule("train.sparse_embeddings", "train.mixed_precision",
         lambda r, t: r.train.sparse_embeddings and r.train.mixed_precision == "fp16",
         "clipping sparse gradients does not unscale fp16 gradients; use mixed_precision: bf16 or no"),
    Rule("train.sparse_embeddings", "quantize.embedding",
         lambda r, t: r.train.sparse_embeddings and r.quantize is not None and r.quantize.qat
         and r.quantize.embedding is not None,
         "a fake-quantized table trained by QAT needs dense gradients; drop one of them"),
    Rule("student.tokenizer", "student.kind",
         lambda r, t: _student(r, _TEACHER_NETWORK_KINDS) and r.student.tokenizer is not None,
         "copy, pruned and linear_attention students are the teacher's own network and read its token ids; "
         "set teacher.tokenizer instead"),
    Rule("deep_compression.share", "train.sparse_embeddings",
         lambda r, t: r.deep_compression is not None and r.deep_compression.share is not None
         and r.deep_compression.embeddings and r.train.sparse_embeddings,
         "lazy Adam updates only the rows a batch looks up, so shared embedding weights would drift apart; set "
         "train.sparse_embeddings: false or deep_compression.embeddings: false"),
    Rule("deep_compression", "quantize",
         lambda r, t: r.deep_compression is not None and r.quantize is not None,
         "both convert the saved model after training; give each its own pipeline stage"),
    Rule("factorize", "quantize",
         lambda r, t: r.factorize is not None and r.quantize is not None,
         "quantization converts the factors too and replaces config.json's record of them, so the saved model "
         "would not reload; factorisation and quantization do not combine yet"),
    Rule("factorize", "deep_compression",
         lambda r, t: r.factorize is not None and r.deep_compression is not None,
         "the encoding replaces config.json's record of the factors, so the saved model would not reload; "
         "factorisation and Deep Compression do not combine yet"),
    Rule("teacher.adapter", "teacher.finetune",
         lambda r, t: _teachers(r, lambda plugin, s: s.adapter is not None and s.finetune is not None),
         "the adapter would be merged into a teacher the fine-tuning then changes (or is trained on a base it "
         "never saw); fine-tune with teacher.finetune.lora, or load an adapter onto a fine-tuned teacher"),
    Rule("teacher.adapter", "teacher.model",
         lambda r, t: _teachers(r, lambda plugin, s: s.adapter is not None and plugin),
         "a PEFT adapter loads onto a Hugging Face model; a plug-in teacher loads its own weights"),
    Rule("train.lora", "student.kind",
         lambda r, t: r.train.lora is not None and _student(r, "bilstm"),
         "LoRA adapts the linear layers of a transformer student (query, key, value, dense); the BiLSTM has none"),
    Rule("train.lora", "quantize.qat",
         lambda r, t: r.train.lora is not None and r.quantize is not None and not r.quantize.qat
         and not (r.quantize.linear or "").startswith("bnb"),
         "adapters trained on float weights that are quantized afterwards never see the quantization error they "
         "should recover; use qat: true (frozen weights trained through the integer grid)"),
    Rule("train.lora", "quantize.linear",
         lambda r, t: r.train.lora is not None and r.quantize is not None
         and (r.quantize.linear or "").startswith("bnb"),
         "LoRA recovery keeps adapters beside distilkit's integer layers; bitsandbytes layers are not supported"),
    Rule("train.lora", "deep_compression",
         lambda r, t: r.train.lora is not None and r.deep_compression is not None,
         "merging adapters would refill pruned weights and break the shared codebooks; recover in a later stage"),
    Rule("train.lora", "student.blocks",
         lambda r, t: r.train.lora is not None and getattr(r.student, "blocks", None) is not None,
         "block pruning prunes the weights while they train; LoRA freezes them; prune first, recover after"),
    Rule("train.lora", "factorize",
         lambda r, t: r.train.lora is not None and r.factorize is not None,
         "the factors are what distillation recovers here; adapters beside LowRankLinear are not supported"),
    Rule("student.share_layers.group_size", "student.num_layers",
         lambda r, t: _shared(r) is not None and isinstance(r.student.num_layers, int)
         and _shared(r).group_size != "all" and r.student.num_layers % _shared(r).group_size != 0,
         "layers are shared in groups of group_size consecutive layers, so group_size must divide the depth "
         "(or be 'all')"),
    Rule("student.share_layers.init", "student.share_layers.group_size",
         lambda r, t: _shared(r) is not None and isinstance(_shared(r).init, list)
         and _share_group_count(r) is not None and len(_shared(r).init) != _share_group_count(r),
         "a list gives one teacher layer per group of shared layers (num_layers / group_size of them)"),
    *(Rule("student.share_layers", other,
           lambda r, t, other=other: _shared(r) is not None and getattr(r, other) is not None,
           f"{why}; share layers in one stage and {other.replace('_', ' ')} in the next")
      for other, why in (
          ("quantize", "quantization converts each layer's modules separately and would save the shared block "
                       "once per layer"),
          ("deep_compression", "the encoding rewrites the saved weights without the shared layers' record"),
          ("factorize", "each layer would get factors of its own, undoing the sharing"))),
    Rule("factorize", "student.kind",
         lambda r, t: r.factorize is not None and _student(r, "pruned")
         and (getattr(r.student, "blocks", None) is not None or getattr(r.student, "rounds", 1) > 1),
         "block pruning and pruning rounds mask and remove rows of the dense weights factorisation replaces; "
         "prune in one stage, factorise in the next (one-shot structural pruning may share the recipe)"),
)


def recipe_problems(recipe: Recipe, task: TaskSpec, overrides: Collection[str] = ()) -> list[str]:
    """Every rule of :data:`MEANINGLESS` and :data:`CONFLICTS` the recipe breaks, one message each, naming
    both keys and their values.

    ``overrides`` are the dotted keys given with ``--set``. A switch set there (``--set measure.latency=false``,
    ``train.epochs=0``) deliberately turns off what the recipe file configured for it, so the keys it makes
    meaningless are not errors then -- unless they were given on the command line too."""
    problems = []
    for verb, rules in (("means nothing with", MEANINGLESS), ("conflicts with", CONFLICTS)):
        for rule in rules:
            switched = rules is MEANINGLESS and rule.because in overrides and rule.key not in overrides
            if not switched and rule.applies(recipe, task):
                problems.append(f"{rule.key}: {_value(recipe, rule.key)} {verb} {rule.because}: "
                                f"{_value(recipe, rule.because)}; {rule.why}")
    problems += mutual_problems(recipe, task)  # loss.mutual (methods/distillation)
    return problems


def meaningless_keys(recipe: Recipe, task: TaskSpec) -> list[str]:
    """Keys of :data:`MEANINGLESS` rules the recipe breaks (for dumps that write every default)."""
    return [rule.key for rule in MEANINGLESS if rule.applies(recipe, task)]


def _value(recipe: Recipe, dotted: str) -> str:
    node = recipe
    for part in dotted.split("."):
        # a list of teachers: the key's value in every teacher section
        node = [getattr(n, part) for n in node] if isinstance(node, list) else getattr(node, part)
    if isinstance(node, list):
        node = [n.model_dump(exclude_unset=True) if hasattr(n, "model_dump") else n for n in node]
    if hasattr(node, "model_dump"):
        node = node.model_dump(exclude_unset=True)
    return json.dumps(node)
