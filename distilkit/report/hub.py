"""Publishing compressed models to the Hugging Face Hub with a model card of *measured* results.

``distilkit push RUN_DIR --repo user/name`` (or ``hub: {push: true, repo: user/name}`` in a recipe) uploads
the folder :func:`prepare_push_folder` builds: the run's best model (``save_pretrained`` output, tokenizer,
any modeling file a custom student needs) plus a ``README.md`` model card generated from ``metrics.json`` (or
``pipeline.json`` for a pipeline) by :mod:`distilkit.report.model_card`: teacher, recipe, every stage, metrics in
the Hub's ``model-index`` format (written and checked by ``huggingface_hub``), parameters, size on disk, CPU
latency and the hardware it was measured on. ``--dry-run DIR`` writes exactly that folder and uploads nothing,
which is also how the tests check it without network.

The upload goes through ``huggingface_hub`` with the token from ``HF_TOKEN`` or ``hf auth login``;
distilkit never prints or writes the token.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from distilkit.core.atomic import atomic_directory
from distilkit.core.errors import RecipeError
from distilkit.core.saved_files import read_json
from distilkit.models.lora_layers import ADAPTER_DIR
from distilkit.report.model_card import build_model_card

if TYPE_CHECKING:
    from huggingface_hub import ModelCard


def _load_run(run_dir: Path) -> dict:
    """What a card needs from a recipe run or a pipeline run directory."""
    if (run_dir / "pipeline.json").is_file():
        summary = read_json(run_dir / "pipeline.json")
        last = Path(summary["stages"][-1]["dir"])
        metrics = read_json(last / "metrics.json")
        return {"model_dir": last / "model", "metrics": metrics, "pipeline": summary,
                "recipe": (run_dir / "pipeline.yaml").read_text() if (run_dir / "pipeline.yaml").is_file()
                else (last / "recipe.yaml").read_text()}
    if not (run_dir / "metrics.json").is_file() or not (run_dir / "model" / "config.json").is_file():
        raise RecipeError(f"distilkit push: {run_dir} is not a finished run (needs metrics.json and model/; "
                          "run the recipe to the end first)")
    recipe = run_dir / "recipe.yaml"
    return {"model_dir": run_dir / "model", "metrics": read_json(run_dir / "metrics.json"),
            "pipeline": None, "recipe": recipe.read_text() if recipe.is_file() else ""}


def _card(run: dict, repo: str) -> ModelCard:
    return build_model_card(run["metrics"], run["pipeline"], run["recipe"],
                            read_json(run["model_dir"] / "config.json"), repo)


def model_card(run_dir: str | Path, repo: str) -> str:
    """The ``README.md`` of the push folder, from the run's measured results."""
    return str(_card(_load_run(Path(run_dir)), repo))


def prepare_push_folder(run_dir: str | Path, dst: str | Path, repo: str) -> Path:
    """Write exactly what :func:`push` uploads into ``dst`` (atomically): model files + model card."""
    run = _load_run(Path(run_dir))
    card = _card(run, repo)
    with atomic_directory(Path(dst)) as tmp:
        for path in run["model_dir"].iterdir():
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
            elif path.name == ADAPTER_DIR:  # train.lora's adapter beside integer weights is part of the model
                shutil.copytree(path, tmp / path.name)
        card.save(tmp / "README.md")
    return Path(dst)


def push(run_dir: str | Path, repo: str, *, private: bool = False, commit_message: str | None = None) -> str:
    """Upload a run's model and card to ``repo`` on the Hub; returns the repo URL."""
    from huggingface_hub import HfApi  # imported on use: only an upload needs it

    api = HfApi()  # token: HF_TOKEN or the cached login, never passed through distilkit
    with tempfile.TemporaryDirectory(prefix="distilkit-push-") as tmp:
        folder = prepare_push_folder(run_dir, Path(tmp) / "upload", repo)
        url = api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo,
                          commit_message=commit_message or "Upload compressed model (distilkit)")
    return str(url)


def push_command(args) -> None:
    """``distilkit push RUN_DIR --repo user/name [--private] [--dry-run DIR]``."""
    if "/" not in args.repo:
        raise RecipeError(f"distilkit push: --repo must be 'user/name' (got '{args.repo}')")
    if args.dry_run:
        folder = prepare_push_folder(args.run_dir, args.dry_run, args.repo)
        print(f"wrote {folder} (not uploaded): " + ", ".join(sorted(p.name for p in folder.iterdir())))
        return
    print(f"pushed to {push(args.run_dir, args.repo, private=args.private)}")
