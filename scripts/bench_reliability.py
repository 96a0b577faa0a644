"""Benchmark: reliability (issue 17) -- the fault and bad-input matrix, and how fast preflight refuses bad input.

1. The matrix is the test suite's: ``tests/test_faults.py`` (SIGKILL at every fault point, then a rerun that
   must reproduce an uninterrupted run), ``tests/test_cache_healing.py`` (every cache kind truncated or zeroed),
   ``tests/test_bad_input.py`` (14 mutations of every labelled GLUE fixture file, 300 hypothesis-mutated
   recipes), ``tests/test_preflight.py`` and ``tests/test_recipe_checks.py``. It runs them with pytest and
   counts cases (a hypothesis test counts its examples): handled = passed.
2. Preflight timing: ``distilkit validate`` on the shipped SST-2 BiLSTM recipe with the full SST-2 data, once
   per kind of bad input, in a fresh process each; the time from process start to the error must stay under
   5 s, and the error must name the key.

    python scripts/bench_reliability.py --data-dir ../shared/glue
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from bench_common import ROOT, bench_parser, command_line, publish

BEGIN, END = "<!-- bench_reliability:begin -->", "<!-- bench_reliability:end -->"
RESULTS = ROOT / "docs" / "results" / "reliability.json"
SUITES = ("tests/test_faults.py", "tests/test_cache_healing.py", "tests/test_bad_input.py", "tests/test_preflight.py",
          "tests/test_recipe_checks.py")
HYPOTHESIS_EXAMPLES = 300  # settings(max_examples=...) of the recipe-mutation test


def run_suites(junit: str | None = None) -> dict[str, dict[str, int]]:
    """Per suite: cases, passed, failed (tracebacks or silent runs), skipped. ``junit``: read the report of a
    full ``pytest --junitxml`` run instead of running the suites again."""
    if junit:
        tree = ET.parse(junit)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "junit.xml"
            subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--junitxml={report}", *SUITES], cwd=ROOT, check=False)
            tree = ET.parse(report)
    wanted = {Path(s).stem for s in SUITES}
    counts: dict[str, dict[str, int]] = {}
    for case in tree.iter("testcase"):
        suite = case.get("classname", "").split(".")[-1]
        if suite not in wanted:
            continue
        weight = HYPOTHESIS_EXAMPLES if case.get("name", "").startswith("test_mutated_recipe") else 1
        row = counts.setdefault(suite, {"cases": 0, "passed": 0, "failed": 0, "skipped": 0})
        row["cases"] += weight
        if case.find("skipped") is not None:
            row["skipped"] += weight
        elif case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += weight
        else:
            row["passed"] += weight
    return counts


def preflight_times(data_dir: Path) -> list[dict]:
    """Seconds from process start to the preflight error, per kind of bad input (fresh process each)."""
    recipe = ROOT / "recipes" / "glue" / "sst2" / "bert-large-to-bilstm.yaml"
    base = [f"data.dir={data_dir}", "teacher.model=minilm"]
    with tempfile.TemporaryDirectory() as tmp:
        header_only = Path(tmp) / "glue" / "SST-2"
        header_only.mkdir(parents=True)
        (header_only / "train.tsv").write_text("sentence\tlabel\n")
        (header_only / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
        (Path(tmp) / "file").write_text("x")
        cases = {
            "header-only train split": ([f"data.dir={Path(tmp) / 'glue'}", "teacher.model=minilm"], "data.dir"),
            "missing data folder": (["data.dir=/no/such/glue", "teacher.model=minilm"], "data.dir"),
            "student tokenizer that does not exist": ([*base, "student.tokenizer=/no/such/tokenizer"],
                                                      "student.tokenizer"),
            "teacher that does not exist": ([f"data.dir={data_dir}", "teacher.model=/no/such/teacher"],
                                            "teacher.model"),
            "spaCy pipeline not installed": ([*base, "data.augment.tagger=spacy:xx_no_such_pipeline"],
                                             "data.augment.tagger"),
            "output folder under a file": ([*base, f"output_dir={Path(tmp) / 'file' / 'run'}"], "output_dir"),
        }
        rows = []
        for name, (sets, key) in cases.items():
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "distilkit", "validate", str(recipe), "--set", *sets],
                                  cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
            seconds = time.perf_counter() - start
            named = done.returncode == 2 and f": {key}: " in done.stderr and "Traceback" not in done.stderr
            rows.append({"case": name, "seconds": round(seconds, 2), "named_key": named,
                         "error": done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else ""})
    return rows


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--junit", default=None, help="a full test run's pytest --junitxml report to count from")
    args = parser.parse_args()
    started = time.perf_counter()
    counts = run_suites(args.junit)
    times = preflight_times(Path(args.data_dir).resolve())
    total = sum(r["cases"] - r["skipped"] for r in counts.values())
    handled = sum(r["passed"] for r in counts.values())
    results = [
        {"task": "reliability", "model": "distilkit", "metric": "fault_and_bad_input_cases", "value": total,
         "target": 200, "met": total >= 200},
        {"task": "reliability", "model": "distilkit", "metric": "cases_handled", "value": handled, "target": total,
         "met": handled == total},
        *({"task": "preflight", "model": "distilkit validate", "metric": f"seconds_to_error: {t['case']}",
           "value": t["seconds"], "target": 5.0, "met": t["seconds"] < 5.0 and t["named_key"]} for t in times),
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"suites": counts, "preflight": times, "results": results}, indent=1) + "\n")
    lines = ["## Reliability: faults and bad input (issue 17)", "",
             command_line(time.perf_counter() - started), "",
             "| suite | cases | handled | failed | skipped |", "| --- | ---: | ---: | ---: | ---: |"]
    for suite, r in sorted(counts.items()):
        lines.append(f"| {suite} | {r['cases']} | {r['passed']} | {r['failed']} | {r['skipped']} |")
    lines += [f"| **all** | **{total + sum(r['skipped'] for r in counts.values())}** | **{handled}** | "
              f"**{sum(r['failed'] for r in counts.values())}** | {sum(r['skipped'] for r in counts.values())} |",
              "", "Handled: a named `distilkit: error:` (file and key), a healed cache, or a run that ends as an "
              "uninterrupted one would. The recipe-mutation test counts its "
              f"{HYPOTHESIS_EXAMPLES} hypothesis examples.", "",
              "Preflight: `distilkit validate recipes/glue/sst2/bert-large-to-bilstm.yaml` with the full SST-2 "
              "data (67,349 + 872 rows read), one fresh process per bad input; seconds from process start to the "
              "error (target < 5 s, before any model loads):", "",
              "| bad input | seconds | names the key | error |", "| --- | ---: | --- | --- |"]
    for t in times:
        lines.append(f"| {t['case']} | {t['seconds']:.2f} | {t['named_key']} | `{t['error'][:110]}` |")
    lines += ["", "Numbers: `docs/results/reliability.json`."]
    publish(BEGIN, END, lines, args)


if __name__ == "__main__":
    main()
