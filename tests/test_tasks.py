"""Task files and the normalized example table, on real GLUE files (fixtures and, when present, ../shared/glue)."""

from __future__ import annotations

import importlib.util
import json
import re
import warnings
from collections import Counter
from pathlib import Path

import datasets
import pytest
import yaml

from distilkit.core.errors import DataError, RecipeError
from distilkit.data.tasks import TaskSpec, builtin_tasks_dir, list_tasks, load_split, load_task

REPO = Path(__file__).resolve().parent.parent
GLUE = REPO / "tests" / "fixtures" / "glue"  # real rows (see SOURCES.md)
GLUE_FORMAT = REPO / "tests" / "fixtures" / "glue_format"  # synthetic rows in the real MNLI / QQP layouts
COLUMNS = ["id", "text_a", "text_b", "label"]

LABELS = {
    "cola": ["unacceptable", "acceptable"],
    "sst2": ["negative", "positive"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qqp": ["not_duplicate", "duplicate"],
    "stsb": None,
    "mnli": ["entailment", "neutral", "contradiction"],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "wnli": ["not_entailment", "entailment"],
}
MAIN_METRIC = {"cola": "matthews_correlation", "mrpc": "f1", "qqp": "f1", "stsb": "combined_score"}
PAIR = {"cola": False, "sst2": False}

# (task, split, data root, rows). QNLI's train.tsv is in no public snapshot we could find, so it has no fixture.
FIXTURE_SPLITS = [
    ("cola", "train", GLUE, 40), ("cola", "validation", GLUE, 40), ("cola", "test", GLUE, 20),
    ("sst2", "train", GLUE, 4000), ("sst2", "validation", GLUE, 872), ("sst2", "test", GLUE, 20),
    ("mrpc", "train", GLUE, 40), ("mrpc", "validation", GLUE, 40), ("mrpc", "test", GLUE, 20),
    ("stsb", "train", GLUE, 40), ("stsb", "validation", GLUE, 40), ("stsb", "test", GLUE, 20),
    ("qnli", "validation", GLUE, 40), ("qnli", "test", GLUE, 20),
    ("rte", "train", GLUE, 20), ("rte", "validation", GLUE, 20), ("rte", "test", GLUE, 20),
    ("wnli", "train", GLUE, 40), ("wnli", "validation", GLUE, 40), ("wnli", "test", GLUE, 20),
    ("mnli", "train", GLUE_FORMAT, 6), ("mnli", "validation_matched", GLUE_FORMAT, 6),
    ("mnli", "validation_mismatched", GLUE_FORMAT, 6), ("mnli", "test_matched", GLUE_FORMAT, 3),
    ("mnli", "test_mismatched", GLUE_FORMAT, 3),
    ("qqp", "train", GLUE_FORMAT, 6), ("qqp", "validation", GLUE_FORMAT, 6), ("qqp", "test", GLUE_FORMAT, 3),
]


def load_quietly(*args, **kwargs) -> datasets.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QQP's deliberate malformed rows; asserted in their own test
        return load_split(*args, **kwargs)


# ------------------------------------------------------------------------------------------- built-in tasks
def test_builtin_tasks_are_the_nine_glue_tasks():
    assert builtin_tasks_dir() == REPO / "tasks"
    assert list_tasks() == sorted(LABELS)


@pytest.mark.parametrize("name", sorted(LABELS))
def test_builtin_task_definition(name):
    task = load_task(name)
    assert task.name == name and task.source_path == REPO / "tasks" / f"{name}.yaml"
    assert task.label_names == LABELS[name]
    assert task.is_regression == (name == "stsb")
    assert task.num_labels == (1 if name == "stsb" else len(LABELS[name]))
    assert task.is_pair == PAIR.get(name, True)
    assert task.main_metric == MAIN_METRIC.get(name, "accuracy")
    assert (task.hub.path, task.hub.name, task.hub.label, task.hub.index) == ("nyu-mll/glue", name, "label", "idx")
    # TSV label strings map to the Hub's ClassLabel ids (e.g. MNLI "neutral" -> 1), never to file order.
    if task.tsv.label_values:
        assert sorted(task.tsv.label_values.values()) == list(range(task.num_labels))
        named = {raw: i for raw, i in task.tsv.label_values.items() if not raw.isdigit()}
        assert all(task.label_names[i] == raw for raw, i in named.items())


def test_glue_metrics_and_eval_splits():
    assert load_task("cola").metrics == ["matthews_correlation"]
    assert load_task("mrpc").metrics == load_task("qqp").metrics == ["accuracy", "f1"]
    assert load_task("stsb").metrics == ["pearson", "spearmanr"]
    assert load_task("mnli").eval_splits == ["validation_matched", "validation_mismatched"]
    assert all(load_task(n).eval_splits == ["validation"] for n in LABELS if n != "mnli")


def test_every_tsv_split_has_a_fixture():
    covered = {(task, split) for task, split, _, _ in FIXTURE_SPLITS} | {("qnli", "train")}
    assert covered == {(n, split) for n in LABELS for split in load_task(n).tsv.files}


# ------------------------------------------------------------------------------------------- fixture splits
@pytest.mark.parametrize(("name", "split", "root", "rows"), FIXTURE_SPLITS, ids=lambda v: getattr(v, "name", v))
def test_fixture_split_is_normalized(name, split, root, rows):
    task = load_task(name)
    ds = load_quietly(task, split, data_dir=root)
    assert len(ds) == rows and ds.column_names == COLUMNS
    assert ds.features["label"].dtype == ("float32" if task.is_regression else "int64")
    assert ds.features["text_b"].dtype == "string"
    assert len(set(ds["id"])) == rows and all(i.startswith(f"{split}-") for i in ds["id"])
    assert all(isinstance(t, str) and t.strip() for t in ds["text_a"])
    if task.is_pair:
        assert all(isinstance(t, str) and t.strip() for t in ds["text_b"])
    else:
        assert set(ds["text_b"]) == {None}
    labels = list(ds["label"])
    if split.startswith("test"):
        assert set(labels) == {None}  # GLUE test files are unlabeled
    elif task.is_regression:
        assert all(0.0 <= y <= 5.0 for y in labels) and len(set(labels)) > 5
    else:
        assert set(labels) <= set(range(task.num_labels)) and len(set(labels)) == task.num_labels


def test_fixture_contents():
    sst2 = load_split("sst2", "validation", data_dir=GLUE)
    assert Counter(sst2["label"]) == {1: 444, 0: 428}
    assert sst2[0] == {"id": "validation-0", "text_a": "it 's a charming and often affecting journey . ",
                       "text_b": None, "label": 1}
    assert Counter(load_split("sst2", "train", data_dir=GLUE)["label"]) == {1: 2274, 0: 1726}
    # MRPC's header starts with a UTF-8 BOM; it must not become part of the "Quality" column name.
    assert (GLUE / "MRPC" / "dev.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t")
    mrpc = load_split("mrpc", "validation", data_dir=GLUE)
    assert Counter(mrpc["label"]) == {1: 25, 0: 15}
    raw = [line.split("\t") for line in (GLUE / "MRPC" / "dev.tsv").read_text("utf-8-sig").splitlines()[1:]]
    assert list(zip(mrpc["text_a"], mrpc["text_b"], strict=True)) == [(r[3], r[4]) for r in raw]
    assert any('"' in r[3] + r[4] for r in raw)  # bare quote characters survive (QUOTE_NONE)
    # CoLA train/dev have no header (source, label, original label, sentence); its test file has one.
    first = (GLUE / "CoLA" / "dev.tsv").read_text(encoding="utf-8").splitlines()[0].split("\t")
    cola = load_split("cola", "validation", data_dir=GLUE)
    assert (cola[0]["text_a"], cola[0]["label"]) == (first[3], int(first[1]))
    assert load_split("cola", "test", data_dir=GLUE)["id"][0] == "test-64"  # from the index column
    stsb = load_split("stsb", "validation", data_dir=GLUE)
    raw = [line.split("\t") for line in (GLUE / "STS-B" / "dev.tsv").read_text().splitlines()[1:]]
    assert stsb["id"] == [f"validation-{r[0]}" for r in raw]
    assert stsb["label"] == pytest.approx([float(r[9]) for r in raw], abs=1e-6)
    rte = load_split("rte", "validation", data_dir=GLUE)
    raw = [line.split("\t") for line in (GLUE / "RTE" / "dev.tsv").read_text().splitlines()[1:]]
    assert rte["label"] == [{"entailment": 0, "not_entailment": 1}[r[3]] for r in raw]


def test_mnli_gold_labels_follow_hub_order():
    ds = load_split("mnli", "validation_matched", data_dir=GLUE_FORMAT)
    gold = [line.split("\t")[-1] for line in (GLUE_FORMAT / "MNLI" / "dev_matched.tsv").read_text().splitlines()[1:]]
    assert gold == ["entailment", "contradiction", "neutral"] * 2
    assert ds["label"] == [0, 2, 1] * 2
    assert ds[0]["text_a"] == "The synthetic cat sat on the mat." and ds[0]["text_b"] == "A cat sat somewhere."


def test_qqp_skips_and_counts_malformed_rows():
    with pytest.warns(UserWarning, match=r"QQP/train.tsv: skipped 2 malformed rows"):
        ds = load_split("qqp", "train", data_dir=GLUE_FORMAT)
    assert ds["id"] == [f"train-{i}" for i in range(100, 106)]  # ids come from QQP's "id" column


def test_ids_are_stable_and_max_examples_is_a_seeded_subset():
    full = load_split("sst2", "train", data_dir=GLUE)
    assert load_split("sst2", "train", data_dir=GLUE)["id"] == full["id"]
    a = load_split("sst2", "train", data_dir=GLUE, max_examples=100, seed=1)
    b = load_split("sst2", "train", data_dir=GLUE, max_examples=100, seed=1)
    c = load_split("sst2", "train", data_dir=GLUE, max_examples=100, seed=2)
    assert len(a) == 100 and a["id"] == b["id"] and a["id"] != c["id"]
    assert a["id"] != full["id"][:100]  # not the head of the file
    position = {example_id: i for i, example_id in enumerate(full["id"])}
    assert [position[i] for i in a["id"]] == sorted(position[i] for i in a["id"])  # file order kept
    by_id = {row["id"]: row for row in full}
    assert all(by_id[row["id"]] == row for row in a)  # ids still point at the same examples
    assert len(load_split("sst2", "validation", data_dir=GLUE, max_examples=10_000)) == 872
    with pytest.raises(ValueError, match="max_examples"):
        load_split("sst2", "validation", data_dir=GLUE, max_examples=0)


# ------------------------------------------------------------------------------------------- real GLUE files
REAL = [
    ("sst2", "train", 67349, {1: 37569, 0: 29780}), ("sst2", "validation", 872, {1: 444, 0: 428}),
    ("mrpc", "train", 3668, {1: 2474, 0: 1194}), ("mrpc", "validation", 408, {1: 279, 0: 129}),
    ("cola", "train", 8551, {1: 6023, 0: 2528}), ("cola", "validation", 1043, {1: 721, 0: 322}),
    ("stsb", "train", 5749, None), ("stsb", "validation", 1500, None),
    ("qnli", "validation", 5463, {0: 2702, 1: 2761}),
    ("wnli", "train", 635, {0: 323, 1: 312}), ("wnli", "validation", 71, {0: 40, 1: 31}),
]


@pytest.mark.parametrize(("name", "split", "rows", "counts"), REAL, ids=[f"{n}-{s}" for n, s, _, _ in REAL])
def test_real_glue_files(shared_glue, name, split, rows, counts):
    ds = load_split(name, split, data_dir=shared_glue)
    assert len(ds) == rows and len(set(ds["id"])) == rows
    if counts is None:
        assert min(ds["label"]) == 0.0 and max(ds["label"]) == 5.0
    else:
        assert Counter(ds["label"]) == counts


def test_real_ids_use_the_index_column_and_are_stable(shared_glue):
    qnli = load_split("qnli", "validation", data_dir=shared_glue)
    assert qnli["id"] == [f"validation-{i}" for i in range(5463)]
    assert load_split("qnli", "validation", data_dir=shared_glue)["id"] == qnli["id"]


def test_fixtures_are_reproducible_samples_of_the_real_files(shared_glue):
    spec = importlib.util.spec_from_file_location("make_fixtures", REPO / "scripts" / "make_fixtures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name, rows in script.FROM_GLUE_DIR.items():
        real = (shared_glue / name).read_bytes()
        fixture = (GLUE / name).read_bytes()
        assert fixture == script.sample(real, rows, has_header=name not in script.HEADERLESS), name
    assert (GLUE / "SST-2" / "dev.tsv").read_bytes() == (shared_glue / "SST-2" / "dev.tsv").read_bytes()


# ------------------------------------------------------------------------------------------- data errors
def glue_copy(tmp_path: Path, folder: str, file: str, edit=None) -> Path:
    """Copy one fixture file into a fresh GLUE layout under tmp_path, optionally editing its lines."""
    lines = (GLUE / folder / file).read_text(encoding="utf-8-sig").split("\n")
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / folder / file).write_text("\n".join(edit(lines) if edit else lines), encoding="utf-8")
    return tmp_path / folder / file


def test_missing_file_names_task_split_and_layout(tmp_path):
    with pytest.raises(DataError) as err:
        load_split("sst2", "train", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "SST-2" / "train.tsv") in msg and "'sst2'" in msg and "'train'" in msg
    assert "data.dir" in msg and "SST-2/dev.tsv" in msg


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match="no split 'dev'.*train, validation, test"):
        load_split("sst2", "dev", data_dir=GLUE)


def test_missing_column_lists_columns_found(tmp_path):
    path = glue_copy(tmp_path, "SST-2", "dev.tsv", lambda lines: ["text\tlabel"] + lines[1:])
    with pytest.raises(DataError) as err:
        load_split("sst2", "validation", data_dir=tmp_path)
    assert str(path) in str(err.value) and "'sentence'" in str(err.value) and "['text', 'label']" in str(err.value)


def test_missing_label_column_is_an_error_except_for_test_splits(tmp_path):
    glue_copy(tmp_path, "SST-2", "dev.tsv", lambda lines: [line.split("\t")[0] for line in lines])
    with pytest.raises(DataError, match="'label'"):
        load_split("sst2", "validation", data_dir=tmp_path)
    (tmp_path / "SST-2" / "dev.tsv").rename(tmp_path / "SST-2" / "test.tsv")
    assert set(load_split("sst2", "test", data_dir=tmp_path)["label"]) == {None}


def test_label_value_not_in_label_values(tmp_path):
    path = glue_copy(tmp_path, "SST-2", "dev.tsv", lambda lines: lines[:2] + [lines[2].rsplit("\t", 1)[0] + "\t2"]
                     + lines[3:])
    with pytest.raises(DataError) as err:
        load_split("sst2", "validation", data_dir=tmp_path)
    assert f"{path}:3" in str(err.value) and "'2'" in str(err.value) and "'label'" in str(err.value)


def test_unknown_label_string(tmp_path):
    path = glue_copy(tmp_path, "RTE", "dev.tsv", lambda lines: lines[:5] + [lines[5].rsplit("\t", 1)[0] + "\tmaybe"]
                     + lines[6:])
    with pytest.raises(DataError, match=rf"{path}:6: column 'label': label 'maybe' is not one of"):
        load_split("rte", "validation", data_dir=tmp_path)


def test_empty_label_in_a_labeled_split(tmp_path):
    path = glue_copy(tmp_path, "WNLI", "dev.tsv", lambda lines: lines[:2] + [lines[2].rsplit("\t", 1)[0] + "\t"]
                     + lines[3:])
    with pytest.raises(DataError, match=rf"{path}:3: .*missing label"):
        load_split("wnli", "validation", data_dir=tmp_path)


def test_regression_label_must_be_a_float(tmp_path):
    path = glue_copy(tmp_path, "STS-B", "dev.tsv", lambda lines: lines[:4] + [lines[4].rsplit("\t", 1)[0] + "\tfive"]
                     + lines[5:])
    with pytest.raises(DataError, match=rf"{path}:5: column 'score': label 'five' is not a number"):
        load_split("stsb", "validation", data_dir=tmp_path)


def test_malformed_row_without_skip_malformed(tmp_path):
    path = glue_copy(tmp_path, "MRPC", "dev.tsv", lambda lines: lines[:7] + ["1\t123\t456"] + lines[7:])
    with pytest.raises(DataError, match=rf"{path}:8: malformed row: 3 fields, expected at least 5"):
        load_split("mrpc", "validation", data_dir=tmp_path)


def test_duplicate_index_is_an_error(tmp_path):
    path = glue_copy(tmp_path, "QNLI", "dev.tsv", lambda lines: lines[:3] + [lines[2]] + lines[3:])
    with pytest.raises(DataError, match=rf"{path}:4: duplicate example id"):
        load_split("qnli", "validation", data_dir=tmp_path)


def test_source_selection_errors(tmp_path):
    user = write_task(tmp_path, {"tsv": None})  # hub only
    with pytest.raises(DataError, match="no tsv: layout"):
        load_split(user, "train", data_dir=GLUE)
    tsv_only = write_task(tmp_path, {"hub": None}, name="tsv_only.yaml")
    with pytest.raises(DataError, match="set data.dir"):
        load_split(tsv_only, "train")


# ------------------------------------------------------------------------------------------- task file errors
def write_task(tmp_path: Path, changes: dict, name: str = "task.yaml", base: str = "sst2") -> Path:
    tree = yaml.safe_load((REPO / "tasks" / f"{base}.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = tree
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(key, None)
        else:
            node[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


@pytest.mark.parametrize(("changes", "expected"), [
    ({"tsv.txt_a": "sentence"}, r"tsv.txt_a: unknown key 'txt_a' \(did you mean 'text_a'\?\)"),
    ({"eval_split": ["validation"]}, r"eval_split: unknown key 'eval_split' \(did you mean 'eval_splits'\?\)"),
    ({"tsv.files.test": {"fil": "test.tsv"}}, r"tsv.files.test.fil: unknown key 'fil' \(did you mean 'file'\?\)"),
    ({"hub.nmae": "sst2"}, r"hub.nmae: unknown key 'nmae' \(did you mean 'name'\?\)"),
    ({"tsv.text_a": None}, r"tsv.text_a: Field required"),
    ({"metrics": ["acc"]}, r"metrics.0: Input should be 'accuracy'"),
    ({"problem_type": "classification"}, r"problem_type: Input should be"),
    ({"main_metric": "f1"}, r"main_metric: 'f1' is not computed for this task; choose one of \['accuracy'\]"),
    ({"metrics": ["accuracy", "matthews_correlation"], "main_metric": "combined_score"}, None),
    ({"problem_type": "regression", "tsv.label_values": None}, r"label_names: regression tasks have no label"),
    ({"label_names": None}, r"label_names: classification tasks need"),
    ({"metrics": ["f1"], "main_metric": "f1", "label_names": ["a", "b", "c"]}, r"metrics: f1 .* two labels"),
    ({"tsv.label_values": {"0": 0, "1": 2}}, r"tsv.label_values: class ids \{'1': 2\} out of range"),
    ({"tsv.text_b": "other"}, r"text_b: sources disagree"),
    ({"hub": None, "tsv": None}, r"at least one data source"),
])
def test_task_file_errors_name_file_and_key(tmp_path, changes, expected):
    path = write_task(tmp_path, changes)
    if expected is None:
        assert load_task(str(path)).main_metric == "combined_score"
        return
    with pytest.raises(RecipeError) as err:
        load_task(str(path))
    assert str(err.value).startswith(f"{path}: ")
    assert re.search(expected, str(err.value)), str(err.value)


def test_unknown_task_name_lists_tasks():
    with pytest.raises(RecipeError, match=r"unknown task 'sst3' \(did you mean 'sst2'\?\).*cola, mnli, mrpc"):
        load_task("sst3")
    with pytest.raises(RecipeError, match="task file not found"):
        load_task("no/such/task.yaml")


def test_invalid_yaml(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match=rf"{tmp_path / 'bad.yaml'}: invalid YAML"):
        load_task(tmp_path / "bad.yaml")


# ------------------------------------------------------------------------------------------- user tasks
USER_TASK = """
name: tickets
problem_type: single_label_classification
label_names: [bug, feature, question]
metrics: [accuracy, matthews_correlation]
main_metric: combined_score
files:
  format: {fmt}
  data_files: {{train: data/train.{fmt}, validation: data/dev.{fmt}}}
  text_a: title
  text_b: body
  label: kind
  index: ticket
"""


def test_user_task_from_yaml_and_csv(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text(
        'ticket,title,body,kind\n7,"Crash, on start",It dies at once,bug\n9,Add dark mode,"Please, a ""dark"" theme",1\n'
        "12,How to install?,pip fails,question\n", encoding="utf-8")
    (tmp_path / "data" / "dev.csv").write_text("ticket,title,body,kind\n1,Slow UI,Scrolling lags,0\n", encoding="utf-8")
    (tmp_path / "tickets.yaml").write_text(USER_TASK.format(fmt="csv"), encoding="utf-8")
    monkeypatch.chdir(REPO)  # relative data_files resolve next to the task file, not the working directory
    task = load_task(str(tmp_path / "tickets.yaml"))
    assert isinstance(task, TaskSpec) and task.is_pair and task.num_labels == 3
    train = load_split(task, "train")
    assert train.column_names == COLUMNS and train["id"] == ["train-7", "train-9", "train-12"]
    assert train["text_a"] == ["Crash, on start", "Add dark mode", "How to install?"]
    assert train["text_b"][1] == 'Please, a "dark" theme'
    assert train["label"] == [0, 1, 2]  # a class name or a class id both work without label_values
    assert load_split(task, "validation")["label"] == [0]
    (tmp_path / "data" / "dev.csv").write_text("ticket,title,body,kind\n1,Slow UI,Scrolling lags,7\n")
    with pytest.raises(DataError, match=r"dev.csv:2: column 'kind': label '7' is neither a class id in \[0, 3\)"):
        load_split(task, "validation")


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_user_task_from_json_lines_and_parquet(tmp_path, fmt):
    records = [{"ticket": 3, "title": "Typo", "body": "in docs", "kind": "bug"},
               {"ticket": 4, "title": "Why?", "body": "just asking", "kind": 2}]
    (tmp_path / "data").mkdir()
    for split in ("train", "dev"):
        path = tmp_path / "data" / f"{split}.{fmt}"
        if fmt == "json":
            path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
        else:
            datasets.Dataset.from_list([{**r, "kind": str(r["kind"])} for r in records]).to_parquet(path)
    (tmp_path / "tickets.yaml").write_text(USER_TASK.format(fmt=fmt), encoding="utf-8")
    ds = load_split(str(tmp_path / "tickets.yaml"), "train")
    assert ds["id"] == ["train-3", "train-4"] and ds["label"] == [0, 2] and ds["text_b"] == ["in docs", "just asking"]


def test_user_files_found_under_data_dir_first(tmp_path):
    (tmp_path / "tickets.yaml").write_text(USER_TASK.format(fmt="csv"), encoding="utf-8")
    other = tmp_path / "elsewhere"
    (other / "data").mkdir(parents=True)
    (other / "data" / "train.csv").write_text("ticket,title,body,kind\n5,a,b,feature\n")
    assert load_split(str(tmp_path / "tickets.yaml"), "train", data_dir=other)["label"] == [1]
    with pytest.raises(DataError, match=r"data/dev.csv: file not found \(task 'tickets', split 'validation'\)"):
        load_split(str(tmp_path / "tickets.yaml"), "validation")


# ------------------------------------------------------------------------------------------- Hub path
def fake_glue(config: str, split: str) -> datasets.Dataset:
    names = LABELS[config]
    features = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=names), "idx": datasets.Value("int32")})
    label = -1 if split == "test" else 1
    return datasets.Dataset.from_dict({"sentence1": ["A", "B"], "sentence2": ["a", "b"], "label": [label, 0],
                                       "idx": [10, 11]}, features=features)


def test_hub_columns_are_mapped(monkeypatch):
    calls = []

    def load_dataset(path, name, split, revision=None):
        calls.append((path, name, split, revision))
        return fake_glue(name, split)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    ds = load_split("rte", "validation")
    assert calls == [("nyu-mll/glue", "rte", "validation", None)]
    assert ds.column_names == COLUMNS and ds.to_list() == [
        {"id": "validation-10", "text_a": "A", "text_b": "a", "label": 1},
        {"id": "validation-11", "text_a": "B", "text_b": "b", "label": 0},
    ]
    assert load_split("rte", "test")["label"] == [None, 0]  # ClassLabel -1 marks unlabeled rows
    assert len(load_split("rte", "validation", max_examples=1)) == 1


def test_hub_label_order_must_match_the_task(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name, split, revision=None:
                        fake_glue("wnli", split))  # wnli's order is the reverse of rte's
    with pytest.raises(DataError, match="label order"):
        load_split("rte", "validation")
