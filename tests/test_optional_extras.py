"""Optional extras: a command that needs one names it (``pip install 'distilkit[...]'``) before doing any work, and
a test file of an extra skips, instead of erroring, on an install without it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from distilkit.cli import main as cli_main
from distilkit.core.errors import DistilkitError

REPO = Path(__file__).resolve().parent.parent


def finished_run(tmp_path: Path) -> Path:
    """Enough of a finished run for the report's preflight (it reads metrics.json, loads nothing)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text("{}")
    return run_dir


def test_plot_extra_holds_matplotlib_and_dev_keeps_it():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads TOML")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [req.split(">")[0] for req in extras["plot"]] == ["matplotlib"]
    assert set(extras["plot"]) <= set(extras["dev"])


def test_report_without_matplotlib_names_the_plot_extra_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what a plain `pip install distilkit` has
    out = tmp_path / "report"
    assert cli_main(["report", str(finished_run(tmp_path)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install 'distilkit[plot]'" in err and "Traceback" not in err, err
    assert not out.exists()


def test_write_report_without_matplotlib_names_the_plot_extra(tmp_path, monkeypatch):
    from distilkit.report.pareto import write_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(DistilkitError, match=r"matplotlib.*pip install 'distilkit\[plot\]'"):
        write_report([finished_run(tmp_path)], tmp_path / "report")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("test_file, hidden", [("tests/test_peft.py", ["peft"]),
                                               ("tests/test_sentencepiece.py", ["sentencepiece"])])
def test_an_extras_test_file_skips_without_its_extra(tmp_path, test_file, hidden):
    """``pytest`` on an install without the extra: the file is skipped with its reason, not a collection error."""
    shim = tmp_path / "shim"
    shim.mkdir()
    # None in sys.modules makes `import name` raise ImportError, as on a machine where it is not installed.
    (shim / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys
        for name in {hidden!r}:
            sys.modules[name] = None
        """))
    report = tmp_path / "junit.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                           test_file], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    cases = list(ET.parse(report).iter("testcase"))
    outcomes = ["skipped" if c.find("skipped") is not None else "error" if c.find("error") is not None
                else "failed" if c.find("failure") is not None else "passed" for c in cases]
    # exit status 5: no test ran (the whole module was skipped); a collection error is 2
    assert done.returncode in (0, 5) and outcomes and set(outcomes) == {"skipped"}, (outcomes, done.stdout[-2000:])
    assert f"the {hidden[0]} extra is not installed" in ET.tostring(cases[0], encoding="unicode"), done.stdout[-2000:]
