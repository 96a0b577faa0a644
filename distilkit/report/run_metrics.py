"""A finished run's ``metrics.json``: teacher vs student quality, size on disk and CPU latency.

Each method adds its own part to ``student`` (:attr:`distilkit.core.method_spec.Method.metrics`); this module
names none of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from distilkit.core.measure import (
    count_parameters,
    hardware_description,
    interleaved_latency_ms,
    repeated_inputs,
    size_on_disk,
)
from distilkit.core.method_spec import Method
from distilkit.core.plugins import resolve
from distilkit.data.tasks import TaskSpec
from distilkit.models.inference import encoder_for, evaluate_model, load_saved
from distilkit.models.teachers import HFTeacher

#: Records a student's ``config.json`` keeps of how the models layer built it -> their ``metrics.json`` key.
CONFIG_RECORDS = {"distilkit_vocab": "vocab",                 # student.vocab trimmed or trained the vocabulary
                  "distilkit_share_layers": "share_layers"}   # layer groups sharing one block (ALBERT)


def measure_run(recipe, task: TaskSpec, teacher, eval_ds, teacher_metrics: dict, progress,
                train_stats: dict, methods: Iterable[Method] = ()) -> dict:
    """Assemble ``metrics.json``: teacher vs student quality, size and CPU latency.

    The student is reloaded from ``output_dir/model`` (which also proves it round-trips). ``recipe`` is the run's
    validated :class:`distilkit.run.schema.Recipe`; each of ``methods`` (the registry,
    :data:`distilkit.run.methods.METHODS`) adds its part to ``student``, and a method that converts the saved
    model (quantization) has it re-scored as reloaded, since its accuracy is not the float model's.
    """
    out, measure = Path(recipe.output_dir), recipe.measure
    student, tokenizer = load_saved(out / "model")
    encode = encoder_for(student)
    texts = list(eval_ds["text_a"])
    pairs = None if eval_ds[0]["text_b"] is None else list(eval_ds["text_b"])

    best = progress.history[[r["epoch"] for r in progress.history].index(progress.best_epoch)]
    main_split = next(iter(teacher_metrics))
    student_info = {
        "kind": recipe.student.kind,
        "metrics": {k.split("/", 1)[1]: v for k, v in best.items() if k.startswith(f"{main_split}/")},
        "best_epoch": progress.best_epoch,
        "params": count_parameters(student),
        "size_on_disk_bytes": size_on_disk(out / "model"),
    }
    for record, key in CONFIG_RECORDS.items():
        if getattr(student.config, record, None):
            student_info[key] = getattr(student.config, record)

    def rescore() -> dict:  # for a method whose saved model is a converted one: score it as reloaded
        return {"float_metrics": student_info.get("float_metrics", student_info["metrics"]),
                "metrics": evaluate_model(student, encode, tokenizer, recipe.student.max_length, eval_ds, task),
                "float_size_on_disk_bytes": size_on_disk(out / "model-float")}

    for method in methods:
        if method.metrics is not None:
            student_info.update(resolve(method.metrics)(recipe, student, out, rescore))
    teacher_info = {"name": getattr(teacher, "name", type(teacher).__name__),
                    "metrics": teacher_metrics[main_split]}
    members = getattr(teacher, "members", None)  # an ensemble: its size is every teacher's parameters
    if isinstance(teacher, HFTeacher):
        teacher_info["params"] = count_parameters(teacher.model)
    elif members and all(isinstance(member, HFTeacher) for member in members):
        teacher_info["params"] = sum(count_parameters(member.model) for member in members)
    if measure.latency:
        candidates = {"student": (student, repeated_inputs(encode, tokenizer, texts, pairs,
                                                           recipe.student.max_length))}
        if isinstance(teacher, HFTeacher):
            candidates["teacher"] = (teacher.model, repeated_inputs(encoder_for(teacher.model), teacher.tokenizer,
                                                                    texts, pairs, teacher.max_length))
        rounds = 3 if len(candidates) > 1 else 1
        timed = interleaved_latency_ms(candidates, rounds, batch_sizes=measure.batch_sizes,
                                       repeats=max(1, measure.repeats // rounds), num_threads=measure.num_threads)
        student_info["latency_ms"] = timed["student"]
        if "teacher" in timed:
            teacher_info["latency_ms"] = timed["teacher"]
    ratios = {}
    if "params" in teacher_info:
        ratios["params_teacher_over_student"] = round(teacher_info["params"] / student_info["params"], 2)
    for key, value in student_info.get("latency_ms", {}).items():
        if "latency_ms" in teacher_info:
            ratios[f"latency_{key}_teacher_over_student"] = round(teacher_info["latency_ms"][key] / value, 2)
    retained = {k: round(v / teacher_info["metrics"][k], 4) for k, v in student_info["metrics"].items()
                if teacher_info["metrics"].get(k)}
    return {"task": task.name, "eval_split": main_split, "teacher": teacher_info, "student": student_info,
            "ratios": ratios, "retained_fraction_of_teacher": retained, "teacher_all_splits": teacher_metrics,
            "history": progress.history, "train": train_stats, "hardware": hardware_description()}
