"""Command line: ``distilkit run RECIPE --set key=value ...`` and friends.

Also works under Accelerate: ``accelerate launch -m distilkit run RECIPE`` starts one process per device.
User mistakes (bad recipe, missing data, wrong teacher) print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from distilkit.core.errors import DistilkitError, RecipeError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a recipe (distillation)")
    run.add_argument("recipe", help="recipe YAML file, e.g. recipes/glue/sst2/bert-large-to-bilstm.yaml")
    run.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                     help="override recipe values, e.g. --set train.epochs=2 data.dir=/data/glue")

    validate = sub.add_parser("validate", help="check a recipe without running it")
    validate.add_argument("recipe")
    validate.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")

    augment = sub.add_parser("augment", help="build a recipe's Tang et al. transfer set and label it with its teacher")
    augment.add_argument("recipe", help="a recipe with a data.augment section")
    augment.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    augment.add_argument("--out", default=None, help="where to save the labelled table (default OUTPUT_DIR/transfer_set)")

    quant = sub.add_parser("quantize", help="quantize a saved model (int8/int4/ternary/binary, bitsandbytes)")
    quant.add_argument("model_dir", help="a save_pretrained directory (a recipe's OUTPUT_DIR/model)")
    quant.add_argument("--out", required=True, help="directory for the quantized model")
    quant.add_argument("--linear", default="int8", help="int8, int4, ternary, binary, bnb8, bnb4-nf4, bnb4-fp4 or none")
    quant.add_argument("--embedding", default="none", help="int8, int4 or none")
    quant.add_argument("--backend", default="fbgemm", help="fbgemm (CPU engine), int_mm (torch._int_mm) or torchao")
    quant.add_argument("--asymmetric", action="store_true", help="asymmetric grids (zero points; float compute)")
    quant.add_argument("--skip", nargs="+", default=None, metavar="MODULE", help="modules left float (classifier)")
    quant.add_argument("--task", default=None, help="evaluate float and quantized on this task's eval split")
    quant.add_argument("--data-dir", default=None)
    quant.add_argument("--max-examples", type=int, default=None)
    quant.add_argument("--max-length", type=int, default=128)

    push = sub.add_parser("push", help="upload a finished run's model with a measured model card to the Hub")
    push.add_argument("run_dir", help="a recipe's or pipeline's OUTPUT_DIR")
    push.add_argument("--repo", required=True, help="user/name on the Hub")
    push.add_argument("--private", action="store_true")
    push.add_argument("--dry-run", metavar="DIR", default=None, help="write the folder to DIR, upload nothing")

    report = sub.add_parser("report", help="compare runs: table and Pareto plots of accuracy vs size/ops/latency")
    report.add_argument("run_dirs", nargs="+", help="recipe or pipeline OUTPUT_DIRs")
    report.add_argument("--out", required=True, help="directory for report.md, report.html and the plots")
    report.add_argument("--length", type=int, default=64, help="tokens per example when counting operations")

    export = sub.add_parser("export", help="export a saved student to ONNX (checked against PyTorch on dev rows)")
    export.add_argument("model_dir", help="a save_pretrained directory (a recipe's OUTPUT_DIR/model)")
    export.add_argument("--onnx", required=True, metavar="OUT_DIR", help="folder for model.onnx, tokenizer, export.json")
    export.add_argument("--int8", nargs="?", const="dynamic", default=None, metavar="dynamic|static",
                        help="ONNX Runtime int8: dynamic (default when given alone: activations quantized at run "
                             "time) or static (QDQ, activation ranges calibrated on --calibrate rows)")
    export.add_argument("--optimize", default="basic", metavar="LEVEL",
                        help="ORT transformer optimizer on transformer students (fused attention, skip-layer-norm, "
                             "GELU): none, fusion, basic (default), extended or all")
    export.add_argument("--calibrate", type=int, default=512, metavar="N",
                        help="rows int8 is calibrated and checked on (default 512: with the default "
                             "--fallback-tolerance, auto fallback may change one prediction in them)")
    export.add_argument("--calibration-data", default=None, metavar="DIR",
                        help="a transfer set saved by distilkit augment (default: the task's train split)")
    export.add_argument("--fp32-fallback", default="none", metavar="none|auto|NODE,...",
                        help="int8 nodes kept in fp32: auto keeps the most sensitive ones until int8 agrees with fp32 "
                             "on the calibration rows within --fallback-tolerance; or name the nodes")
    export.add_argument("--fallback-tolerance", type=float, default=0.003,
                        help="auto fallback's bound on the fraction of calibration predictions int8 changes")
    export.add_argument("--task", default=None, help="task of the dev rows to check on (default: the run's recipe)")
    export.add_argument("--data-dir", default=None)
    export.add_argument("--max-examples", type=int, default=256, help="dev rows the export is checked on")
    export.add_argument("--max-length", type=int, default=128)

    predict = sub.add_parser("predict", help="labels and probabilities from a saved student (PyTorch or ONNX)")
    predict.add_argument("model_dir", help="a save_pretrained folder or an exported ONNX folder")
    predict.add_argument("texts", nargs="*", help="a sentence, and a second one for pair tasks")
    predict.add_argument("--file", default=None, help="a TSV with a header row: one prediction per row")
    predict.add_argument("--text-a", default=None, help="column of the first sentence (default: the first column)")
    predict.add_argument("--text-b", default=None, help="column of the second sentence (pair tasks)")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--threads", type=int, default=None,
                         help="ONNX Runtime session threads (intra-op); for a PyTorch folder, torch's threads")
    predict.add_argument("--json", default=None, help="also write the predictions to this JSON file")
    predict.add_argument("--time", action="store_true",
                         help="also time the model on the inputs at batch 1 and --batch-size (tokenization excluded), "
                              "side by side with --against or, for an ONNX folder, the PyTorch model it came from")
    predict.add_argument("--against", default=None, metavar="DIR",
                         help="with --time: another folder (PyTorch or ONNX) timed interleaved on the same inputs")
    predict.add_argument("--rounds", type=int, default=5, help="with --time: interleaved timing rounds")

    sub.add_parser("tasks", help="list built-in tasks")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``distilkit`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "tasks":
            from distilkit.data.tasks import list_tasks, load_task

            for name in list_tasks():
                task = load_task(name)
                kind = "pair" if task.is_pair else "single"
                print(f"{name:8s} {task.problem_type:27s} {kind:6s} labels={task.num_labels} metric={task.main_metric}")
            return 0
        if args.command in ("quantize", "export", "predict", "push", "report"):
            from distilkit.run.command_preflight import preflight_command

            preflight_command(args)  # folders, files, packages: before torch or a model is loaded
        if args.command == "report":
            from distilkit.report.pareto import write_report

            print(f"wrote {write_report(args.run_dirs, args.out, args.length) / 'report.md'}")
            return 0
        if args.command == "push":
            from distilkit.report.hub import push_command

            push_command(args)
            return 0
        if args.command in ("export", "predict"):
            from distilkit.deploy.commands import export_command, predict_command

            (export_command if args.command == "export" else predict_command)(args)
            return 0
        if args.command == "quantize":
            from distilkit.run.commands import quantize_command

            quantize_command(args)
            return 0

        from distilkit.core.yaml_files import read_yaml
        from distilkit.run.pipeline_config import is_pipeline
        from distilkit.run.recipe_io import dump_recipe, load_recipe

        if is_pipeline(read_yaml(args.recipe)):
            return _pipeline(args)
        recipe = load_recipe(args.recipe, args.overrides)
        from distilkit.run.preflight import preflight

        preflight(recipe, args.recipe)  # files, models, packages, folders: before any model is loaded
        if args.command == "augment":
            from distilkit.run.commands import augment_command

            augment_command(recipe, args.out)
            return 0
        if args.command == "validate":
            from distilkit.data.tasks import load_task

            load_task(recipe.task)
            print(dump_recipe(recipe), end="")
            return 0

        from distilkit.run.pipeline import run_recipe

        metrics = run_recipe(recipe)  # iterative pruning's rounds run as pipeline stages
        if metrics is not None:
            print(format_summary(metrics))
        return 0
    except DistilkitError as exc:
        for line in str(exc).splitlines():  # one "distilkit: error:" line per problem
            print(f"distilkit: error: {line}", file=sys.stderr)
        return 2


def _pipeline(args) -> int:
    """``run``/``validate`` of a pipeline recipe (a file with ``stages``)."""
    import yaml

    from distilkit.run.pipeline_config import load_pipeline, stage_tree

    pipeline = load_pipeline(args.recipe, args.overrides)
    from distilkit.run.preflight import preflight
    from distilkit.run.recipe_io import validate_recipe

    problems = []
    for index, stage in enumerate(pipeline.stages):  # every stage, before the first one starts
        source = f"{args.recipe}: stages[{index}] ({stage.name})"
        try:  # later stages' teachers are written by the stage before them
            preflight(validate_recipe(stage_tree(pipeline, index), source), source, teacher_exists=index == 0)
        except DistilkitError as exc:
            problems.append(str(exc))
    if problems:
        raise RecipeError("\n".join(dict.fromkeys("\n".join(problems).splitlines())))
    if args.command == "validate":
        trees = [stage_tree(pipeline, i) for i in range(len(pipeline.stages))]
        print(yaml.safe_dump({"stages": trees}, sort_keys=False), end="")
        return 0
    from distilkit.report.pipeline_summary import summary_markdown
    from distilkit.run.pipeline import run_pipeline

    print(summary_markdown(run_pipeline(pipeline)))
    return 0


def format_summary(metrics: dict) -> str:
    """A small teacher-vs-student table for the terminal."""
    teacher, student = metrics["teacher"], metrics["student"]
    rows = [("", "teacher", "student", "ratio")]
    for key, value in student["metrics"].items():
        rows.append((key, f"{teacher['metrics'].get(key, float('nan')):.4f}", f"{value:.4f}",
                     f"{metrics['retained_fraction_of_teacher'].get(key, float('nan')):.3f}"))
    if "params" in teacher:
        rows.append(("params", f"{teacher['params']:,}", f"{student['params']:,}",
                     f"{metrics['ratios']['params_teacher_over_student']}x"))
    for key, value in student.get("latency_ms", {}).items():
        if "latency_ms" in teacher:
            rows.append((f"latency {key} (ms)", f"{teacher['latency_ms'][key]:.2f}", f"{value:.2f}",
                         f"{metrics['ratios'][f'latency_{key}_teacher_over_student']}x"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    return f"{metrics['task']} ({metrics['eval_split']})\n" + "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
