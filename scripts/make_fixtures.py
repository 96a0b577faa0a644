"""Rebuild the real-data GLUE test fixtures in ``tests/fixtures/glue/`` (see its SOURCES.md).

Rows are copied byte for byte (header, BOM, missing final newline and all); a sample keeps the original order of
the rows it picks. Usage, from the repository root::

    python scripts/make_fixtures.py --glue-dir ../shared/glue \\
        --bert-git-dir /path/to/F0restL1n/BERT/.git     # optional: RTE and the test.tsv files

Without ``--bert-git-dir`` only the files from ``--glue-dir`` are rewritten.
"""

from __future__ import annotations

import argparse
import random
import subprocess
from functools import partial
from pathlib import Path

SEED = 2019  # fixed so that the fixtures (and the row counts the tests assert) never change
BERT_COMMIT = "0d0288be08079531c7b3a85af3d532f9adb0f13a"
HEADERLESS = {"CoLA/train.tsv", "CoLA/dev.tsv"}  # CoLA's train/dev files have no header row

# file (relative to the GLUE root) -> rows to keep (None = the whole file)
FROM_GLUE_DIR = {
    "SST-2/train.tsv": 4000,
    "SST-2/dev.tsv": None,  # the quickstart's eval set: all 872 rows
    "CoLA/train.tsv": 40,
    "CoLA/dev.tsv": 40,
    "MRPC/train.tsv": 40,
    "MRPC/dev.tsv": 40,
    "STS-B/train.tsv": 40,
    "STS-B/dev.tsv": 40,
    "QNLI/dev.tsv": 40,
    "WNLI/train.tsv": 40,
    "WNLI/dev.tsv": 40,
}
FROM_BERT_REPO = {
    "RTE/train.tsv": 20,
    "RTE/dev.tsv": 20,
    "RTE/test.tsv": 20,
    "CoLA/test.tsv": 20,
    "SST-2/test.tsv": 20,
    "MRPC/test.tsv": 20,
    "STS-B/test.tsv": 20,
    "QNLI/test.tsv": 20,
    "WNLI/test.tsv": 20,
}


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their ``\\n`` kept; a last line without one stays without one."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def sample(data: bytes, rows: int | None, has_header: bool) -> bytes:
    """The header (if any) plus ``rows`` data lines drawn with :data:`SEED`, in their original order."""
    lines = split_lines(data)
    header, body = (lines[:1], lines[1:]) if has_header else ([], lines)
    if rows is not None and rows < len(body):
        keep = sorted(random.Random(SEED).sample(range(len(body)), rows))
        body = [body[i] for i in keep]
    return b"".join(header + body)


def read_file(path: Path) -> bytes:
    return path.read_bytes()


def read_git(git_dir: Path, spec: str) -> bytes:
    """``git show <commit>:<path>`` of a clone (the snapshot used for SOURCES.md)."""
    return subprocess.run(["git", f"--git-dir={git_dir}", "show", spec], check=True, capture_output=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue-dir", type=Path, default=Path("../shared/glue"))
    parser.add_argument("--bert-git-dir", type=Path, default=None, help="git dir of a F0restL1n/BERT clone")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/glue"))
    args = parser.parse_args()

    jobs = {name: (rows, partial(read_file, args.glue_dir / name)) for name, rows in FROM_GLUE_DIR.items()}
    if args.bert_git_dir is not None:
        jobs.update({name: (rows, partial(read_git, args.bert_git_dir, f"{BERT_COMMIT}:glue_data/{name}"))
                     for name, rows in FROM_BERT_REPO.items()})
    for name, (rows, read) in sorted(jobs.items()):
        out = args.out / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(sample(read(), rows, has_header=name not in HEADERLESS))
        print(f"{out}: {rows or 'all'} rows")


if __name__ == "__main__":
    main()
