"""Benchmark: what makes the PyTorch BiLSTM faster at batch 1 (issue 26, item 2).

At batch 1 the BiLSTM's time is the recurrence: one small matrix-vector product per token per direction, each
a separate kernel launch. Each row below is one way to run the *same* trained BiLSTM (the GLUE recipes' Tang
et al. size: 25,000 x 300 word vectors, 150 units per direction, a 200-unit ReLU layer), timed interleaved on
real dev sentences one at a time, in three fresh processes:

* ``nn-lstm``        -- the reference: ``BiLSTMForSequenceClassification`` with ``fast_batch1: false``, i.e.
  ``nn.LSTM`` (oneDNN's RNN kernel on CPU), one call per sentence, both directions inside it (what shipped
  until the batch-1 loop);
* ``batch1-loop``    -- the model as shipped (``fast_batch1: true``): ``bilstm_recurrence.batch1_recurrence`` through
  TorchScript, both directions and both sentences stepped together, the input projection a table lookup;
* ``batch1-eager``   -- the same loop run eagerly (what TorchScript saves);
* ``aten``           -- ``nn-lstm`` with oneDNN switched off (ATen's own LSTM loop);
* ``one-lstm``       -- both directions as one forward LSTM of twice the width: block-diagonal weights, the
  sentence and its reverse side by side as the input, so each step is one matrix-vector product instead of
  two (for a pair, both sentences are one batch of 2, the shorter one held at the zero state by an input-gate
  mask while it waits); exact to float rounding;
* ``int8-lstm``      -- ``torch.ao`` dynamic int8 LSTM weights (fbgemm; changes the logits slightly);
* ``pair-batch``     -- pair tasks only: sentences a and b packed into one LSTM call of batch 2;
* ``one-thread``     -- ``nn-lstm`` with the torch thread count set to 1 for the call and restored after (the
  recurrence is a chain of small products that two threads must meet on at every step; the process keeps the
  user's setting for everything else);
* ``batch1-loop-one-thread`` -- ``batch1-loop`` the same way.

Cell = one task's sentences (SST-2 single sentences, MRPC pairs), the first ``--sentences`` dev rows tokenized
with the teacher's tokenizer (only their lengths matter to the speed; random weights of the recipe's size, as
speed does not depend on their values). Reports the mean ms per sentence (median over rounds) and the ratio to
``nn-lstm``; a variant counts as faster only when it is faster in all three processes. Writes
docs/results/bilstm_b1.json and a section of docs/benchmarks.md. Time it on an idle machine.

    python scripts/bench_bilstm_b1.py --data-dir ../shared/glue
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time

import torch
from bench_common import ROOT, bench_parser, command_line, publish
from torch import nn

from distilkit.data.tasks import load_split, load_task
from distilkit.models import bilstm_recurrence
from distilkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, encode_bilstm
from distilkit.models.model_names import resolve_model_name

BEGIN, END = "<!-- bench_bilstm_b1:begin -->", "<!-- bench_bilstm_b1:end -->"
RESULTS = ROOT / "docs" / "results" / "bilstm_b1.json"
TASKS = {"sst2": False, "mrpc": True}  # task -> sentence pairs
REFERENCE = "nn-lstm"
VARIANTS = (REFERENCE, "batch1-loop", "batch1-eager", "aten", "one-lstm", "int8-lstm", "pair-batch", "one-thread",
            "batch1-loop-one-thread")


class OneLSTM(nn.Module):
    """Both directions of a 1-layer BiLSTM as one forward LSTM of width ``2H`` (block-diagonal weights).

    Step ``t`` reads ``[x_t, x_(L-1-t), pad_f, pad_b]``: the forward chain's token and the backward chain's
    token side by side. Rows are end-aligned (a shorter row is padded on the left); at a padding step the
    indicator adds -1e4 to the input gate, whose sigmoid is then exactly 0, so ``c = f * 0 + 0`` and ``h = 0``:
    the chain starts from the zero state at its first real token, as ``nn.LSTM`` does.
    """

    def __init__(self, model: BiLSTMForSequenceClassification):
        super().__init__()
        self.model = model
        lstm, e, h = model.lstm, model.lstm.input_size, model.lstm.hidden_size
        self.fused = nn.LSTM(2 * e + 2, 2 * h, batch_first=True)
        w_ih, w_hh, bias = torch.zeros(8 * h, 2 * e + 2), torch.zeros(8 * h, 2 * h), torch.zeros(8 * h)
        directions = [(lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0),
                      (lstm.weight_ih_l0_reverse, lstm.weight_hh_l0_reverse,
                       lstm.bias_ih_l0_reverse + lstm.bias_hh_l0_reverse)]
        for gate in range(4):  # nn.LSTM's gate blocks i, f, g, o; fused block = [forward H rows, backward H rows]
            source = slice(gate * h, (gate + 1) * h)
            for d, (wi, wh, b) in enumerate(directions):
                rows = slice(gate * 2 * h + d * h, gate * 2 * h + (d + 1) * h)
                w_ih[rows, d * e:(d + 1) * e] = wi[source]
                w_hh[rows, d * h:(d + 1) * h] = wh[source]
                bias[rows] = b[source]
        w_ih[:h, 2 * e] = -1e4  # forward chain's input gate, shut while it waits
        w_ih[h:2 * h, 2 * e + 1] = -1e4  # backward chain's
        with torch.no_grad():
            self.fused.weight_ih_l0.copy_(w_ih)
            self.fused.weight_hh_l0.copy_(w_hh)
            self.fused.bias_ih_l0.copy_(bias)
            self.fused.bias_hh_l0.zero_()

    def encode(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """Sentence vectors of token-id rows of any lengths (one LSTM call for all of them)."""
        longest = max(len(r) for r in rows)
        e = self.model.embeddings.embedding_dim
        x = torch.zeros(len(rows), longest, 2 * e + 2)
        for i, ids in enumerate(rows):
            vectors, wait = self.model.embeddings(ids), longest - len(ids)
            x[i, wait:, :e], x[i, wait:, e:2 * e] = vectors, vectors.flip(0)
            x[i, :wait, 2 * e:] = 1.0
        _, (hidden, _) = self.fused(x)
        return hidden[0]

    def forward(self, input_ids, attention_mask=None, input_ids_b=None, attention_mask_b=None):
        if input_ids_b is None:
            h1 = self.encode([input_ids[0]])
            features = h1
        else:
            h1, h2 = self.encode([input_ids[0], input_ids_b[0]]).split(1)
            features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1)
        return self.model.classifier(torch.relu(self.model.mlp(features)))


class PairBatch(nn.Module):
    """Sentences a and b of a pair packed into one LSTM call of batch 2."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, input_ids_b, attention_mask_b):
        width = max(input_ids.shape[1], input_ids_b.shape[1])
        ids = torch.zeros(2, width, dtype=input_ids.dtype)
        mask = torch.zeros(2, width, dtype=attention_mask.dtype)
        ids[0, :input_ids.shape[1]], ids[1, :input_ids_b.shape[1]] = input_ids[0], input_ids_b[0]
        mask[0, :input_ids.shape[1]], mask[1, :input_ids_b.shape[1]] = attention_mask[0], attention_mask_b[0]
        h1, h2 = self.model.encode(ids, mask).split(1)
        features = torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1)
        return self.model.classifier(torch.relu(self.model.mlp(features)))


class Logits(nn.Module):
    """The model's logits; ``aten``: with oneDNN switched off (ATen's own LSTM loop)."""

    def __init__(self, model, aten: bool = False):
        super().__init__()
        self.model, self.aten = model, aten

    def forward(self, **inputs):
        if not self.aten:  # no context manager on the timed path of the others
            return self.model(**inputs).logits
        with torch.backends.mkldnn.flags(enabled=False):
            return self.model(**inputs).logits


class EagerLoop(nn.Module):
    """``model``'s batch-1 loop run eagerly: the compiled recurrence swapped for the plain function per call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **inputs):
        compiled = bilstm_recurrence.compiled_recurrence()
        bilstm_recurrence._COMPILED["fn"] = bilstm_recurrence.batch1_recurrence
        try:
            return self.model(**inputs)
        finally:
            bilstm_recurrence._COMPILED["fn"] = compiled


class OneThread(nn.Module):
    """``model`` run with one torch thread, the caller's thread count restored afterwards."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **inputs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.model(**inputs)
        finally:
            torch.set_num_threads(threads)


def models(is_pair: bool) -> dict[str, nn.Module]:
    """Every variant of one seeded recipe-size BiLSTM."""
    torch.manual_seed(0)
    config = BiLSTMConfig(vocab_size=25000, embedding_dim=300, hidden_size=150, mlp_hidden_size=200,
                          is_pair=is_pair, num_labels=2)
    model = BiLSTMForSequenceClassification(config).eval()  # fast_batch1 on: as shipped
    reference = copy.deepcopy(model)
    reference.config.fast_batch1 = False  # nn.LSTM (every other variant below builds on it)
    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(reference), {nn.LSTM}, dtype=torch.qint8)
    out = {REFERENCE: Logits(reference), "batch1-loop": Logits(model), "batch1-eager": EagerLoop(Logits(model)),
           "aten": Logits(reference, aten=True), "one-lstm": OneLSTM(reference).eval(), "int8-lstm": Logits(int8)}
    if is_pair:
        out["pair-batch"] = PairBatch(reference)
    out["one-thread"], out["batch1-loop-one-thread"] = OneThread(out[REFERENCE]), OneThread(out["batch1-loop"])
    return out


def sentences(task: str, data_dir: str, count: int) -> list[dict]:
    """The first ``count`` dev rows, tokenized one at a time (no padding), ids folded into the 25,000 rows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name("minilm"))
    rows = load_split(load_task(task), "validation", data_dir=data_dir, max_examples=count, seed=0)
    out = []
    for row in rows:
        batch = encode_bilstm(tokenizer, [row["text_a"]], [row["text_b"]] if TASKS[task] else None, 128)
        out.append({k: v % 25000 if k.startswith("input_ids") else v for k, v in batch.items()})
    return out


def child(args) -> dict:
    """One process: every variant of every task timed in alternating rounds; mean ms per sentence."""
    torch.set_num_threads(args.threads)
    measured = {}
    for task, is_pair in TASKS.items():
        inputs, variants = sentences(task, args.data_dir, args.sentences), models(is_pair)
        reference = None
        samples = {name: [] for name in variants}
        with torch.inference_mode():
            for name, model in variants.items():  # warm-up, and how far each variant's logits are from nn-lstm
                logits = torch.cat([model(**x) for x in inputs[:50]])
                reference = logits if reference is None else reference
                measured[f"{task}/{name}/max_abs_logit_diff"] = float((logits - reference).abs().max())
            for _ in range(args.rounds):
                for name, model in variants.items():
                    start = time.perf_counter()
                    for x in inputs:
                        model(**x)
                    samples[name].append(1e3 * (time.perf_counter() - start) / len(inputs))
        for name, values in samples.items():
            measured[f"{task}/{name}/ms"] = round(statistics.median(values), 4)
    return measured


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--sentences", type=int, default=200, help="dev rows per task")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.rounds = 10, 1
    if args.child:
        print(json.dumps(child(args)))
        return
    start = time.time()
    runs = []
    for _ in range(args.processes):  # fresh processes: a speed verdict must hold in each
        done = subprocess.run([sys.executable, __file__, "--child", *sys.argv[1:]], check=True, capture_output=True,
                              text=True, cwd=ROOT)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    lines, rows = render(runs, args, time.time() - start)
    publish(BEGIN, END, lines, args, rows, RESULTS)


def render(runs: list[dict], args, seconds: float) -> tuple[list[str], list[dict]]:
    """The docs section and the results rows (task, model, metric, value, target, met)."""
    from bench_common import git_commit

    lines = ["## BiLSTM at batch 1 in PyTorch: what helps (issue 26)", "",
             command_line(seconds, threads=str(args.threads), details=(f"torch {torch.__version__}",
                                                                     f"commit {git_commit()}")), "",
             f"Recipe-size BiLSTM (25,000 x 300 word vectors, 150 units per direction, 200-unit ReLU layer), the "
             f"first {args.sentences} dev rows of each task one at a time (tokenized with the teacher's tokenizer), "
             f"{args.rounds} interleaved rounds per process, {len(runs)} fresh processes. ms = mean per sentence "
             f"(median over rounds); ratio = {REFERENCE} / variant (above 1: faster). Max |Δ logit| against "
             f"{REFERENCE} on 50 rows.", "",
             f"| task | variant | ms per sentence (each process) | ratio to {REFERENCE} (each process) | max abs logit diff |",
             "| --- | --- | --- | --- | ---: |"]
    rows = []
    for task in TASKS:
        for name in VARIANTS:
            key = f"{task}/{name}/ms"
            if key not in runs[0]:
                continue
            ms = [r[key] for r in runs]
            ratio = [round(r[f"{task}/{REFERENCE}/ms"] / r[key], 2) for r in runs]
            diff = max(r[f"{task}/{name}/max_abs_logit_diff"] for r in runs)
            lines.append(f"| {task} | {name} | {', '.join(f'{m:.3f}' for m in ms)} | "
                         f"{', '.join(f'{x:.2f}×' for x in ratio)} | {diff:.1e} |")
            faster = name != REFERENCE and min(ratio) > 1.0
            rows.append({"task": task, "model": f"bilstm {name}", "metric": "b1 ms per sentence", "value": ms,
                         "target": None, "met": None})
            if name != REFERENCE:
                rows.append({"task": task, "model": f"bilstm {name}", "metric": f"b1 speed-up vs {REFERENCE}",
                             "value": ratio, "target": "> 1 in every process", "met": faster})
    kept = [f"{r['task']} `{r['model'].removeprefix('bilstm ')}` ({', '.join(f'{x:.2f}×' for x in r['value'])})"
            for r in rows if r["met"]]
    lines += ["", f"Faster than {REFERENCE} in every process: " + ("; ".join(kept) if kept else "**none**") + "."]
    return lines, rows


if __name__ == "__main__":
    main()
