"""scripts/bench_reliability.py's case count: a hypothesis test counts the examples it ran (recorded by the test
in the junit report), not the ``max_examples`` it was allowed."""

from __future__ import annotations

import pytest

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
 <testcase classname="tests.test_bad_input" name="test_the_matrix_is_big_enough" time="0.1"/>
 <testcase classname="tests.test_bad_input" name="test_mutated_recipe_gives_a_named_error_or_a_valid_recipe" time="9">
  <properties><property name="hypothesis_examples_passed" value="{ran}"/></properties>{outcome}
 </testcase>
 <testcase classname="tests.test_preflight" name="test_one" time="0.1"><skipped message="no minilm"/></testcase>
 <testcase classname="tests.test_elsewhere" name="test_not_counted" time="0.1"/>
</testsuite></testsuites>
"""


@pytest.fixture(scope="module")
def bench(import_script):
    return import_script("bench_reliability")


def test_hypothesis_examples_are_counted_from_the_report(tmp_path, bench):
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT.format(ran=123, outcome=""))
    counts = bench.run_suites(str(report))
    assert counts == {"test_bad_input": {"cases": 124, "passed": 124, "failed": 0, "skipped": 0},
                      "test_preflight": {"cases": 1, "passed": 0, "failed": 0, "skipped": 1}}


def test_a_failed_hypothesis_test_counts_its_passed_examples_and_one_failure(tmp_path, bench):
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT.format(ran=40, outcome='<failure message="boom"/>'))
    assert bench.run_suites(str(report))["test_bad_input"] == {"cases": 42, "passed": 41, "failed": 1, "skipped": 0}


def test_a_hypothesis_test_without_its_count_is_one_case(tmp_path, bench):
    """An old report (or a crash before the count was recorded) claims nothing it cannot show."""
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT.format(ran=0, outcome="").replace(
        '<properties><property name="hypothesis_examples_passed" value="0"/></properties>', ""))
    assert bench.run_suites(str(report))["test_bad_input"]["cases"] == 2
