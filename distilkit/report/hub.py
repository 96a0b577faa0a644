"""Publishing compressed models to the Hugging Face Hub with a model card of *measured* results.

``distilkit push RUN_DIR --repo user/name`` (or ``hub: {push: true, repo: user/name}`` in a recipe) uploads
the folder :func:`prepare_push_folder` builds: the run's best model (``save_pretrained`` output, tokenizer,
any modeling file a custom student needs) plus a ``README.md`` model card generated from ``metrics.json`` (or
``pipeline.json`` for a pipeline): teacher, recipe, every stage, metrics in the Hub's ``model-index`` format,
parameters, size on disk, CPU latency and the hardware it was measured on. ``--dry-run DIR`` writes exactly
that folder and uploads nothing, which is also how the tests check it without network.

The upload goes through ``huggingface_hub`` with the token from ``HF_TOKEN`` or ``huggingface-cli login``;
distilkit never prints or writes the token.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import yaml

from distilkit.core.atomic import atomic_directory
from distilkit.core.errors import RecipeError
from distilkit.core.measure import MB
from distilkit.core.saved_files import read_json
from distilkit.report.pipeline_summary import summary_markdown

GLUE_TASKS = {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"}
METRIC_NAMES = {"accuracy": "Accuracy", "f1": "F1", "matthews_correlation": "Matthews correlation",
                "pearson": "Pearson", "spearmanr": "Spearman", "combined_score": "Combined score"}


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


def model_index(name: str, metrics: dict) -> list[dict]:
    """The ``model-index`` entry of the card's YAML header (Hub evaluation results format)."""
    task, split = metrics["task"], metrics.get("eval_split", "validation")
    dataset = ({"name": f"GLUE {task.upper()}", "type": "nyu-mll/glue", "config": task, "split": split}
               if task in GLUE_TASKS else {"name": task, "type": task, "split": split})
    values = [{"type": key, "value": round(float(value), 4), "name": METRIC_NAMES.get(key, key)}
              for key, value in metrics["student"]["metrics"].items()]
    return [{"name": name, "results": [{"task": {"type": "text-classification", "name": "Text Classification"},
                                        "dataset": dataset, "metrics": values}]}]


def _loading_note(config: dict) -> str:
    quantized = (config.get("quantization_config") or {}).get("quant_method") == "distilkit"
    custom = str(config.get("model_type", "")).startswith("distilkit-")
    if quantized:
        return ("Quantized with distilkit's integer format: `pip install distilkit` and `import distilkit` "
                "before loading (it registers the format with transformers).")
    if custom:
        return ("A distilkit architecture; the modeling file travels with the weights, so plain transformers "
                "loads it with `trust_remote_code=True` (with distilkit installed, no remote code is needed).")
    return "A stock transformers architecture: plain Auto classes load it."


def model_card(run_dir: str | Path, repo: str) -> str:
    """The ``README.md`` of the push folder, from the run's measured results."""
    return _card(_load_run(Path(run_dir)), repo)


def _card(run: dict, repo: str) -> str:
    metrics, summary = run["metrics"], run["pipeline"]
    config = read_json(run["model_dir"] / "config.json")
    teacher, student = metrics["teacher"], metrics["student"]
    task = metrics["task"]
    header = {"library_name": "transformers", "pipeline_tag": "text-classification", "language": ["en"],
              "tags": ["distilkit", "distillation", "model-compression", task]
              + (["quantized"] if "quantization" in student else []),
              "model-index": model_index(repo.split("/")[-1], metrics)}
    original = summary["teacher"]["name"] if summary else teacher["name"]
    if "/" in original and not Path(original).exists():
        header["base_model"] = original
    if task in GLUE_TASKS:
        header["datasets"] = ["nyu-mll/glue"]
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
             f"# {repo.split('/')[-1]}", "",
             f"Compressed with [distilkit](https://github.com/distilkit/distilkit) from `{original}` on "
             f"{task.upper() if task in GLUE_TASKS else task} ({student['kind']} student). Every number below "
             "was measured by distilkit on the model as saved in this repository.", "",
             f"## Results ({metrics.get('eval_split', 'validation')})", "",
             "| | teacher | this model | ratio |", "| --- | ---: | ---: | ---: |"]
    for key, value in student["metrics"].items():
        t = teacher["metrics"].get(key)
        lines.append(f"| {key} | {t:.4f} | {value:.4f} | {value / t:.3f} |" if t else f"| {key} | | {value:.4f} | |")
    if "params" in teacher:
        lines.append(f"| parameters | {teacher['params']:,} | {student['params']:,} | "
                     f"{teacher['params'] / student['params']:.2f}× fewer |")
    lines.append(f"| size on disk (MB) | | {student['size_on_disk_bytes'] / MB:.2f} | |")
    for key, value in student.get("latency_ms", {}).items():
        t = teacher.get("latency_ms", {}).get(key)
        lines.append(f"| CPU latency {key} (ms) | {t:.2f} | {value:.2f} | {t / value:.2f}× faster |" if t
                     else f"| CPU latency {key} (ms) | | {value:.2f} | |")
    hw = metrics.get("hardware", {})
    lines += ["", "Hardware: " + ", ".join(f"{k} {v}" for k, v in hw.items()) + "." if hw else ""]
    if "quantization" in student:
        q = student["quantization"]
        lines += ["", f"Quantization: linear `{q['linear'] or 'float'}`, embedding `{q['embedding'] or 'float'}`"
                  + (" (quantization-aware training)" if q.get("qat") else " (post-training)")
                  + f"; float model {student['float_size_on_disk_bytes'] / MB:.2f} MB on disk."]
    if summary:
        lines += ["", "## Pipeline stages", "", *summary_markdown(summary).splitlines()[2:]]
    lines += ["", "## Use", "", _loading_note(config), "", "```python",
              "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
              f'model = AutoModelForSequenceClassification.from_pretrained("{repo}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{repo}")', "```", "",
              "## Recipe", "", "```yaml", run["recipe"].strip(), "```", ""]
    return "\n".join(lines)


def prepare_push_folder(run_dir: str | Path, dst: str | Path, repo: str) -> Path:
    """Write exactly what :func:`push` uploads into ``dst`` (atomically): model files + model card."""
    run = _load_run(Path(run_dir))
    card = _card(run, repo)
    with atomic_directory(Path(dst)) as tmp:
        for path in run["model_dir"].iterdir():
            if path.is_file():
                shutil.copy2(path, tmp / path.name)
        (tmp / "README.md").write_text(card)
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
