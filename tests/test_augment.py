"""Tang et al. (2019) augmentation: each rule's rate, pair rotation, de-duplication, caching, label-free runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset, load_from_disk

import distilkit.data.augment as augment
from distilkit.cli import main as cli_main
from distilkit.data.augment import augment_words, build_transfer_set, pos_vocabulary
from distilkit.data.config import AugmentConfig
from distilkit.data.tasks import example_features, load_task
from distilkit.run.distill import run
from distilkit.run.recipe_io import validate_recipe

from .conftest import FIXTURES
from .test_distill import tiny_recipe

ADJECTIVES = {"good", "bad", "dull", "great", "slow"}


class ToyTagger:
    """Deterministic test tagger: a few adjectives are JJ, everything else NN."""

    name = "toy-tagger-v1"

    def tag(self, sentences):
        return [["JJ" if w in ADJECTIVES else "NN" for w in words] for words in sentences]


def table(pairs: list[tuple[str, str | None]], task: str = "sst2") -> Dataset:
    rows = [{"id": f"train-{i}", "text_a": a, "text_b": b, "label": i % 2} for i, (a, b) in enumerate(pairs)]
    return Dataset.from_list(rows, features=example_features(load_task(task)))


SENTENCE = "the movie was good but the plot was slow and dull".split()
TAGS = ToyTagger().tag([SENTENCE])[0]
CORPUS = [SENTENCE, "a great film".split(), "a bad bad film".split()]
VOCAB = pos_vocabulary(CORPUS, ToyTagger().tag(CORPUS))


def test_masking_rate_matches_p_mask():
    cfg = AugmentConfig(p_mask=0.3, p_pos=0.0, p_ng=0.0)
    rng = np.random.default_rng(0)
    masked = [w == "[MASK]" for _ in range(3000) for w in augment_words(SENTENCE, TAGS, VOCAB, cfg, "[MASK]", rng)]
    assert len(masked) == 3000 * len(SENTENCE)  # no n-gram sampling: lengths unchanged
    assert np.mean(masked) == pytest.approx(0.3, abs=0.01)


def test_pos_replacement_keeps_the_tag_and_follows_unigram_frequencies():
    cfg = AugmentConfig(p_mask=0.0, p_pos=0.5, p_ng=0.0)
    rng = np.random.default_rng(1)
    samples = [augment_words(SENTENCE, TAGS, VOCAB, cfg, "[MASK]", rng) for _ in range(4000)]
    jj_words, jj_probs = VOCAB["JJ"]
    replaced_at_good = [s[3] for s in samples]  # "good" is JJ
    assert set(replaced_at_good) <= set(jj_words), "a JJ word was replaced by a word of another tag"
    # P(word at a JJ slot = w) = (1 - p_pos) * [w == good] + p_pos * unigram(w | JJ)
    for word, prob in zip(jj_words, jj_probs):
        expected = 0.5 * prob + (0.5 if word == "good" else 0.0)
        assert np.mean([w == word for w in replaced_at_good]) == pytest.approx(expected, abs=0.03), word
    assert all(s[0] in VOCAB["NN"][0] for s in samples)  # NN slots only get NN words


def test_ngram_sampling_rate_and_lengths():
    cfg = AugmentConfig(p_mask=0.0, p_pos=0.0, p_ng=0.25)
    rng = np.random.default_rng(2)
    samples = [augment_words(SENTENCE, TAGS, VOCAB, cfg, "[MASK]", rng) for _ in range(4000)]
    short = [s for s in samples if len(s) < len(SENTENCE)]
    assert len(short) / len(samples) == pytest.approx(0.25, abs=0.02)
    text = " ".join(SENTENCE)
    assert all(" ".join(s) in text for s in short), "an n-gram must be a contiguous piece of the sentence"
    lengths = np.bincount([len(s) for s in short], minlength=6)[1:6]
    assert lengths.sum() == len(short) and lengths.min() > 0.15 * len(short)  # n ~ U{1..5}


def test_transfer_set_counts_dedup_and_determinism(tmp_path):
    ds = table([("the movie was good", None), ("a dull and slow film", None), ("great", None)])
    cfg = AugmentConfig(n_iter=8, seed=3)
    first, counts = build_transfer_set(ds, cfg, mask_token="[MASK]", tagger=ToyTagger(), show_progress=False)
    again, _ = build_transfer_set(ds, cfg, mask_token="[MASK]", tagger=ToyTagger(), show_progress=False)
    assert first.to_list() == again.to_list()
    assert counts["original"] == 3 and counts["generated"] == 24
    assert counts["total"] == 3 + counts["kept"] == len(first)
    texts = list(zip(first["text_a"], first["text_b"]))
    assert len(set(texts)) == len(texts), "duplicates survived"
    assert len(set(first["id"])) == len(first)
    new = first.filter(lambda r: "~aug" in r["id"])
    assert all(label is None for label in new["label"]) and first["label"][:3] == [0, 1, 0]
    other, _ = build_transfer_set(ds, cfg.model_copy(update={"seed": 4}), mask_token="[MASK]", tagger=ToyTagger(),
                                  show_progress=False)
    assert other["text_a"] != first["text_a"]

    # Rules that change nothing produce only duplicates of the originals: all are dropped.
    noop = AugmentConfig(p_mask=0, p_pos=0, p_ng=0, n_iter=5)
    same, counts = build_transfer_set(ds, noop, mask_token="[MASK]", tagger=ToyTagger(), show_progress=False)
    assert counts["generated"] == 15 and counts["kept"] == 0 and len(same) == 3


def test_pair_rotation_modifies_a_b_then_both():
    ds = table([("good film", "bad plot")], task="mrpc")
    cfg = AugmentConfig(p_mask=1.0, p_pos=0.0, p_ng=0.0, n_iter=6, keep_original=False)
    out, counts = build_transfer_set(ds, cfg, mask_token="[MASK]", tagger=ToyTagger(), show_progress=False)
    got = {(r["id"], r["text_a"], r["text_b"]) for r in out}
    # Copies 0, 1, 2 mask sentence a, b, both; copies 3-5 repeat them and are dropped as duplicates.
    assert got == {("train-0~aug0", "[MASK] [MASK]", "bad plot"), ("train-0~aug1", "good film", "[MASK] [MASK]"),
                   ("train-0~aug2", "[MASK] [MASK]", "[MASK] [MASK]")}
    assert counts["generated"] == 6 and counts["kept"] == 3


def test_cache_reuse_and_crash_leaves_nothing(tmp_path, monkeypatch):
    ds = table([("the movie was good", None), ("a dull film", None)])
    cfg = AugmentConfig(n_iter=4)

    def boom(*args, **kwargs):
        yield {"id": "x", "text_a": "x", "text_b": None, "label": None}
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(augment, "generate", boom)
    with pytest.raises(RuntimeError):
        build_transfer_set(ds, cfg, mask_token="[MASK]", cache_dir=tmp_path, tagger=ToyTagger())
    assert not (tmp_path / "transfer_sets").exists() or not any((tmp_path / "transfer_sets").iterdir())
    monkeypatch.undo()

    built, counts = build_transfer_set(ds, cfg, mask_token="[MASK]", cache_dir=tmp_path, tagger=ToyTagger())
    assert counts["hit"] is False
    entries = list((tmp_path / "transfer_sets").iterdir())
    assert len(entries) == 1 and (entries[0] / "counts.json").is_file()
    hit, counts2 = build_transfer_set(ds, cfg, mask_token="[MASK]", cache_dir=tmp_path, tagger=ToyTagger())
    assert counts2["hit"] is True and hit.to_list() == built.to_list()
    # Any change of settings is a new entry.
    build_transfer_set(ds, cfg.model_copy(update={"p_mask": 0.2}), mask_token="[MASK]", cache_dir=tmp_path,
                       tagger=ToyTagger())
    assert len(list((tmp_path / "transfer_sets").iterdir())) == 2


def test_config_errors():
    from distilkit.core.errors import RecipeError

    with pytest.raises(RecipeError, match="p_mask"):
        validate_recipe({"task": "sst2", "output_dir": "x", "teacher": {"model": "t"}, "student": {"kind": "bilstm"},
                         "data": {"augment": {"p_mask": 0.7, "p_pos": 0.5}}})
    with pytest.raises(RecipeError, match="did you mean 'p_ng'"):
        validate_recipe({"task": "sst2", "output_dir": "x", "teacher": {"model": "t"}, "student": {"kind": "bilstm"},
                         "data": {"augment": {"p_ngg": 0.3}}})


def test_label_free_training_on_an_augmented_transfer_set(tmp_path, tiny_teacher_dir):
    augment_cfg = {"n_iter": 3, "tagger": "tests.test_augment:ToyTagger"}
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, data={"max_train_examples": 40, "labels": "none",
                                                         "augment": augment_cfg})
    metrics = run(validate_recipe(tree))
    counts = metrics["train"]["augment"]
    assert counts["original"] == 40 and counts["kept"] > 40
    assert metrics["train"]["examples"] == counts["total"]
    # Gold labels with alpha > 0: the hard-label loss only sees the originals, generated rows are unlabelled.
    tree = tiny_recipe(tmp_path, tiny_teacher_dir, output_dir=str(tmp_path / "mixed"), loss={"alpha": 0.5},
                       data={"max_train_examples": 40, "augment": augment_cfg})
    mixed = run(validate_recipe(tree))
    assert mixed["train"]["augment"]["hit"] is True  # same data and settings: the cached set is reused
    assert np.isfinite(mixed["history"][-1]["validation/accuracy"])


def test_cli_augment_writes_a_labelled_table(tmp_path, tiny_teacher_dir, capsys):
    import yaml

    tree = tiny_recipe(tmp_path, tiny_teacher_dir, data={"max_train_examples": 20,
                                                         "augment": {"n_iter": 2, "tagger": "tests.test_augment:ToyTagger"}})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree))
    assert cli_main(["augment", str(path), "--out", str(tmp_path / "ts")]) == 0
    saved = load_from_disk(str(tmp_path / "ts"))
    assert set(saved.column_names) == {"id", "text_a", "text_b", "label", "teacher_logits"}
    assert len(saved) == json.loads((tmp_path / "ts" / "counts.json").read_text())["total"]
    assert all(len(row) == 2 for row in saved["teacher_logits"])
    assert "Transfer set: 20 original" in capsys.readouterr().out
    del tree["data"]["augment"]
    path.write_text(yaml.safe_dump(tree))
    assert cli_main(["augment", str(path)]) == 2


def test_real_spacy_tagger_on_sst2_sentences():
    try:
        tagger = augment.SpacyTagger()
    except Exception as exc:  # noqa: BLE001 - any missing piece means: no real tagger here
        pytest.skip(f"no spaCy English pipeline installed ({exc})")
    lines = (FIXTURES / "glue" / "SST-2" / "dev.tsv").read_text().splitlines()[1:200]
    sentences = [line.split("\t")[0].split() for line in lines]
    tags = tagger.tag(sentences)
    assert [len(t) for t in tags] == [len(s) for s in sentences]
    assert tagger.tag([["a", "gorgeous", "movie"]])[0] == ["DT", "JJ", "NN"]
    vocab = pos_vocabulary(sentences, tags)
    assert "movie" in vocab["NN"][0] and "the" in vocab["DT"][0]
    cfg = AugmentConfig(p_mask=0.0, p_pos=1.0, p_ng=0.0)
    out = augment_words(["a", "gorgeous", "movie"], ["DT", "JJ", "NN"], vocab, cfg, "[MASK]",
                        np.random.default_rng(0))
    assert out[1] in vocab["JJ"][0] and out[2] in vocab["NN"][0]

