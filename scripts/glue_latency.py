"""Fresh-process CPU latency for one GLUE task, called by ``bench_glue.py``: prints one JSON line.

The teacher, the two distilled students and the BERT-large architecture are timed interleaved, round by
round, on the task's dev sentences at batch 1 and 32 (a process that has just trained times small models up
to 1.6x slower, so this runs alone). BERT-large has random weights (24 layers, H=1024, 16 heads, FFN 4096, the
teacher's vocabulary): latency does not depend on the values. It is timed with fewer repeats at batch 32,
where one forward takes many seconds on two cores.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from bench_common import DEFAULT_DATA_DIR
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)

from distilkit.core.measure import MB, count_parameters, cpu_latency_ms, repeated_inputs, size_on_disk
from distilkit.data.tasks import load_split, load_task
from distilkit.models.inference import encoder_for

BERT_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--bilstm", required=True)
    parser.add_argument("--small-transformer", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128, help="the recipes' teacher and student max_length")
    args = parser.parse_args()

    task = load_task(args.task)
    dev = load_split(task, task.eval_splits[0], data_dir=args.data_dir, max_examples=64, seed=0)
    texts, pairs = list(dev["text_a"]), (list(dev["text_b"]) if task.is_pair else None)
    models, sizes = {}, {}
    for name, path in (("teacher", args.teacher), ("bilstm", args.bilstm),
                       ("small_transformer", args.small_transformer)):
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        models[name] = (model, AutoTokenizer.from_pretrained(path))
        sizes[name] = round(size_on_disk(path) / MB, 3)
    teacher_model, teacher_tokenizer = models["teacher"]
    config = BertConfig(vocab_size=teacher_model.config.vocab_size, num_labels=task.num_labels,
                        max_position_embeddings=512, **BERT_LARGE)
    models["bert_large"] = (BertForSequenceClassification(config).eval(), teacher_tokenizer)
    params = {name: count_parameters(model) for name, (model, _) in models.items()}
    sizes["bert_large"] = round(params["bert_large"] * 4 / MB, 3)  # fp32 weights, as a checkpoint holds them

    samples: dict[str, dict[str, list[float]]] = {name: {} for name in models}
    for _ in range(args.rounds):
        for name, (model, tokenizer) in models.items():
            make = repeated_inputs(encoder_for(model), tokenizer, texts, pairs, args.max_length)
            for batch_size in (1, 32):
                slow = name == "bert_large" and batch_size == 32
                timed = cpu_latency_ms(model, make, batch_sizes=(batch_size,), repeats=1 if slow else 10,
                                       warmup=1 if slow else 2)
                samples[name].setdefault(f"b{batch_size}", []).extend(timed.values())
    latency = {name: {k: round(statistics.median(v), 3) for k, v in s.items()} for name, s in samples.items()}
    print(json.dumps({"latency_ms": latency, "params": params, "size_mb": sizes, "rounds": args.rounds,
                      "threads": torch.get_num_threads(), "bert_large_config": BERT_LARGE,
                      "dev_sentences": len(texts)}))


if __name__ == "__main__":
    main()
