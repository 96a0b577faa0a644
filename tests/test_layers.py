"""The package's layers (docs/design.md): import-linter's contracts hold, would catch an upward or cross-method
import, and models saved by the flat 0.1.0 layout still load to identical logits."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
SAVED = FIXTURES / "saved-0.1.0"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", script, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)}, timeout=120)


def test_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("core/errors.py", "from distilkit.run import schema  # noqa", "Layers"),              # core -> run
    ("data/tasks.py", "from distilkit.models import teachers  # noqa", "Layers"),          # data -> models
    ("methods/quantization/convert.py", "from distilkit.methods.pruning import select  # noqa", "independent"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "distilkit", tmp_path / "distilkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "distilkit" / module
    target.write_text(target.read_text() + f"\n{line}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken_contracts = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(broken in line for line in broken_contracts), broken_contracts
    assert "distilkit." + module.removesuffix(".py").replace("/", ".") in result.stdout


def test_function_local_imports_are_only_the_lazy_ones():
    """No import inside a function dodges a circle: the only distilkit imports in function bodies are the CLI's
    (``distilkit --help`` stays fast) and the Auto-class registration of ``distilkit/__init__``."""
    allowed = {"distilkit/cli.py", "distilkit/__init__.py"}
    found = []
    for path in sorted((ROOT / "distilkit").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    module = getattr(inner, "module", None) if isinstance(inner, ast.ImportFrom) else None
                    names = [a.name for a in inner.names] if isinstance(inner, ast.Import) else []
                    if (module or "").startswith("distilkit") or any(n.startswith("distilkit") for n in names):
                        found.append(f"{rel}:{inner.lineno}")
    assert {f.split(":")[0] for f in found} <= allowed, found


@pytest.mark.parametrize("name, module", [
    ("bilstm", "distilkit.models.bilstm"),
    ("bilstm-int8", "distilkit.models.bilstm"),
    ("pruned", "distilkit.methods.pruning.pruned"),
    ("linear-hedgehog", "distilkit.methods.linear_attention.linear"),
    ("bert-int8", "transformers.models.bert.modeling_bert"),
])
def test_models_saved_by_the_flat_layout_still_load(name, module):
    from transformers import AutoModelForSequenceClassification

    import distilkit  # noqa: F401  (registers the model types and quant_method "distilkit")

    expected = torch.load(SAVED / "expected.pt")[name]
    model = AutoModelForSequenceClassification.from_pretrained(SAVED / name).eval()
    assert type(model).__module__ == module
    with torch.no_grad():
        logits = model(**expected["inputs"]).logits
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-6)
