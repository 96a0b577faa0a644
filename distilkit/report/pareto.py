"""``distilkit report RUN_DIR... --out DIR``: compare runs on accuracy vs. size, operations and latency.

Every finished recipe run (``metrics.json``) and every stage of a pipeline run (``pipeline.json``) is one
point; the original teacher of the first run is another. The report is the chart compression papers draw
(e.g. Han et al. 2016, fig. 1; Michel et al. 2019, fig. 3): the task metric against parameters, against
multiply-accumulates per example and against CPU latency at batch 1, with the Pareto frontier (no other point
is both better and cheaper) drawn through the points that are on it. Written as ``report.md``,
``report.html`` and one PNG per axis.

Operations are counted, not estimated from parameters: multiply-accumulates of every linear and recurrent
layer (float or quantized) in one forward pass of a ``--length``-token sequence at batch 1; attention score
products and element-wise work are left out (a few percent for short sequences).
"""

from __future__ import annotations

import html
import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from distilkit.core.atomic import atomic_directory
from distilkit.core.errors import DistilkitError, RecipeError
from distilkit.core.measure import MB, size_on_disk
from distilkit.core.saved_files import read_json
from distilkit.models.inference import load_saved


def count_macs(model: torch.nn.Module, length: int = 64) -> int:
    """Multiply-accumulates of linear and LSTM layers for one ``length``-token example (see module doc)."""
    total = 0

    def linear_hook(module, inputs, output):
        nonlocal total
        rows = inputs[0].numel() // inputs[0].shape[-1]
        total += rows * module.in_features * module.out_features

    def lstm_hook(module, inputs, output):
        nonlocal total
        data = inputs[0].data if hasattr(inputs[0], "batch_sizes") else inputs[0]
        steps = data.shape[0] if hasattr(inputs[0], "batch_sizes") else data.shape[0] * data.shape[1]
        shape = getattr(module, "shape", None) or {"input_size": module.input_size, "hidden_size": module.hidden_size,
                                                   "num_layers": module.num_layers,
                                                   "bidirectional": module.bidirectional}
        h, directions = shape["hidden_size"], 2 if shape["bidirectional"] else 1
        first = 4 * h * (shape["input_size"] + h)
        deeper = 4 * h * (directions * h + h) * (shape["num_layers"] - 1)
        total += steps * directions * (first + deeper)

    handles = []
    for module in model.modules():
        if hasattr(module, "in_features") and hasattr(module, "out_features"):
            handles.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, torch.nn.LSTM) or type(module).__name__ == "QuantLSTM":
            handles.append(module.register_forward_hook(lstm_hook))
    try:
        ids = torch.full((1, length), 1000 % model.config.vocab_size, dtype=torch.long)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if getattr(model.config, "is_pair", False):  # siamese BiLSTM: the second sentence costs the same again
            inputs.update(input_ids_b=ids, attention_mask_b=inputs["attention_mask"])
        with torch.inference_mode():
            model.eval()(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return total


def collect(run_dirs: list[str | Path], length: int = 64) -> tuple[str, list[dict]]:
    """``(metric name, points)`` from run directories; each point has name, metric, params, size, MACs, latency."""
    points, metric = [], None
    dirs = [Path(d) for d in run_dirs]
    labels = [d.name for d in dirs]
    if len(set(labels)) < len(labels):  # runs/a/run, runs/b/run: name them by their parent too
        labels = [f"{d.parent.name}/{d.name}" for d in dirs]
    for run_dir, label in zip(dirs, labels):
        if (run_dir / "pipeline.json").is_file():
            summary = read_json(run_dir / "pipeline.json")
            stages = [(f"{label}/{s['name']}", Path(s["dir"])) for s in summary["stages"]
                      if not s.get("before_quantization")]  # a stage's own metrics.json holds its final model
        elif (run_dir / "metrics.json").is_file():
            stages = [(label, run_dir)]
        else:
            raise RecipeError(f"distilkit report: {run_dir} has neither metrics.json nor pipeline.json")
        for name, directory in stages:
            m = read_json(directory / "metrics.json")
            metric = metric or next(iter(m["student"]["metrics"]))
            model, _ = load_saved(directory / "model", tokenizer=False)
            if not points:  # the original teacher, as measured by the first run
                teacher = m["teacher"]
                local = Path(teacher["name"]).is_dir()  # a Hub teacher is not downloaded for the report
                points.append({"name": f"teacher ({teacher['name'].rstrip('/').split('/')[-1]})",
                               "metric": teacher["metrics"].get(metric), "params": teacher.get("params"),
                               "size_mb": size_on_disk(teacher["name"]) / MB if local else None,
                               "macs": count_macs(AutoModelForSequenceClassification.from_pretrained(
                                   teacher["name"]), length) if local else None,
                               "latency_b1": teacher.get("latency_ms", {}).get("b1")})
            points.append({"name": name, "metric": m["student"]["metrics"].get(metric),
                           "params": m["student"]["params"], "size_mb": m["student"]["size_on_disk_bytes"] / MB,
                           "macs": count_macs(model, length), "latency_b1": m["student"].get("latency_ms", {}).get("b1")})
    return metric, points


def pareto_front(points: list[dict], cost: str) -> list[dict]:
    """Points not dominated on (higher metric, lower ``cost``), sorted by cost."""
    usable = sorted((p for p in points if p.get(cost) is not None and p.get("metric") is not None),
                    key=lambda p: (p[cost], -p["metric"]))
    front, best = [], float("-inf")
    for p in usable:
        if p["metric"] > best:
            front.append(p)
            best = p["metric"]
    return front


def _plot(points: list[dict], cost: str, label: str, metric: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [p for p in points if p.get(cost) is not None and p.get("metric") is not None]
    if len(usable) < 2:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter([p[cost] for p in usable], [p["metric"] for p in usable], zorder=3)
    for p in usable:
        ax.annotate(p["name"], (p[cost], p["metric"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = pareto_front(usable, cost)
    ax.step([p[cost] for p in front], [p["metric"] for p in front], where="post", color="C1", label="Pareto frontier")
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def require_matplotlib() -> None:
    """Raise a :class:`DistilkitError` naming the ``plot`` extra when matplotlib is not installed.

    matplotlib is an optional dependency (``pip install 'distilkit[plot]'``); checked before any model loads, so a
    plain install learns what to add within a second instead of after every run has been read.
    """
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise DistilkitError("distilkit report: the Pareto plots need matplotlib, which is not installed; "
                             "pip install 'distilkit[plot]'")


def write_report(run_dirs: list[str | Path], out: str | Path, length: int = 64) -> Path:
    """Write ``report.md``, ``report.html`` and the Pareto PNGs to ``out`` (atomically).

    Raises:
        DistilkitError: matplotlib (the ``plot`` extra) is not installed; nothing is read or written.
    """
    require_matplotlib()
    metric, points = collect(run_dirs, length)
    axes = [("params", "parameters"), ("macs", f"multiply-accumulates per example ({length} tokens)"),
            ("latency_b1", "CPU latency at batch 1 (ms)"), ("size_mb", "size on disk (MB)")]
    with atomic_directory(Path(out)) as tmp:
        figures = [(f"pareto_{cost}.png", label) for cost, label in axes
                   if _plot(points, cost, label, metric, tmp / f"pareto_{cost}.png")]
        on_front = {p["name"] for cost, _ in axes for p in pareto_front(points, cost)}
        header = ["run", metric, "params", "MACs", "size MB", "latency b1 ms", "Pareto"]

        def cell(value, fmt):
            return "" if value is None else format(value, fmt)
        rows = [[p["name"], cell(p["metric"], ".4f"), cell(p["params"], ","), cell(p["macs"], ","),
                 cell(p["size_mb"], ".2f"), cell(p["latency_b1"], ".2f"), "yes" if p["name"] in on_front else ""]
                for p in points]
        md = ["# distilkit report", "", f"{len(points) - 1} models against the original teacher; {metric} on the "
              "eval split of each run.", "", "| " + " | ".join(header) + " |",
              "|" + " --- |" * len(header), *("| " + " | ".join(r) + " |" for r in rows), ""]
        md += [f"![{label}]({name})" for name, label in figures]
        (tmp / "report.md").write_text("\n".join(md) + "\n")
        table = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        images = "".join(f'<figure><img src="{n}" alt="{html.escape(lbl)}"></figure>' for n, lbl in figures)
        (tmp / "report.html").write_text(
            "<!doctype html><meta charset='utf-8'><title>distilkit report</title><h1>distilkit report</h1>"
            "<table border=1 cellpadding=4><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header)
            + f"</tr>{table}</table>{images}\n")
    return Path(out)
