"""Text the repository ships (README, docs, code, recipes): no instructions that current tools reject."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".sh", ".json"}
# huggingface_hub >= 1.0 removed the old login command; ``hf auth login`` replaced it. Spelled in two parts so this
# file does not match itself.
OLD_LOGIN = "huggingface" + "-cli"


def shipped_text_files() -> list[Path]:
    roots = [REPO / name for name in ("README.md", "pyproject.toml", "docs", "distilkit", "recipes", "scripts",
                                      "tasks", "tests")]
    files = []
    for root in roots:
        candidates = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        files += [p for p in candidates if p.is_file() and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts]
    return files


def test_no_file_names_the_removed_login_command():
    files = shipped_text_files()
    assert any(p.name == "hub.py" for p in files) and any(p.name == "README.md" for p in files)
    hits = [f"{p.relative_to(REPO)}:{n}" for p in files
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if OLD_LOGIN in line]
    assert not hits, f"{OLD_LOGIN} no longer exists (use `hf auth login`): {hits}"
