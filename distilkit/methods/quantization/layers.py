"""Post-training quantization of linear layers, LSTMs and embeddings that saves and reloads.

Stored format (what makes the model small on disk): every quantized module keeps integer tensors plus
float32 scales in its state dict -- ``qweight`` (int8, or uint8 with ``8 // bits`` values packed per byte for
2- and 4-bit grids), ``scale`` (one per row) and ``zero_point`` (asymmetric grids only). ``config.json``
carries a ``quantization_config`` with ``quant_method: distilkit`` and the module table; ``import distilkit``
registers a transformers quantizer for it, which swaps the listed modules for these classes *before* the
weights load, so ``AutoModelForSequenceClassification.from_pretrained(dir)`` returns the same model
(:mod:`distilkit.methods.quantization.hf_quantizer`).

Compute (dynamic quantization, Zafrir et al. 2019 "Q8BERT"; Jacob et al. 2018 eq. 1): :class:`QuantLinear`
with a symmetric grid multiplies int8 weights by activations quantized at run time, on one of three kernels
(``backend``), all fed the same stored integers:
  * ``fbgemm`` (default): PyTorch's quantized CPU engine (``torch.ops.quantized.linear_dynamic``, FBGEMM/x86;
    per-tensor activation scales). The fastest on CPU here; on other devices it falls back to ``int_mm``.
  * ``int_mm``: ``torch._int_mm`` (int8 x int8 -> int32) with per-token activation scales, on CPU or CUDA;
    exactly what QAT's fake quantization simulates.
  * ``torchao``: torchao's ``Int8Tensor`` (dynamic int8 activations, per-row weights).
  4-bit, ternary and binary weights run on the same int8 kernels (their integers fit).
  * :class:`QuantLSTM` runs PyTorch's dynamic int8 LSTM kernel on the same FBGEMM engine (CPU, symmetric).
  * Asymmetric grids (and LSTMs off that path) are stored quantized and dequantized once when the model
    first runs (smaller on disk, float speed).
  * :class:`QuantEmbedding`: row-wise int8/int4 word vectors, dequantized only for the rows looked up.

bitsandbytes 8-bit / 4-bit (nf4, fp4) linear layers for GPU users go through transformers'
``BitsAndBytesConfig`` (:func:`distilkit.methods.quantization.hf_quantizer.quantize_bnb`); they save and reload with transformers.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F

from distilkit.core.module_names import skipped
from distilkit.methods.quantization.fake_quant import (
    Grid,
    dequantize_weight,
    quantize_activation,
    quantize_weight,
)
from distilkit.methods.quantization.rounding import check_rounding

QUANT_METHOD = "distilkit"


def pack(q: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Store integers ``[rows, cols]`` of ``grid``: int8 for 8 bits, else ``8 // bits`` values per uint8."""
    if grid.bits == 8:  # asymmetric 8-bit integers are 0..255: unsigned
        return q.to(torch.int8 if grid.symmetric else torch.uint8)
    bits = 2 if grid.bits <= 2 else 4  # 3-bit grids are stored in 4 bits
    per = 8 // bits
    u = (q.to(torch.int16) - grid.qmin).to(torch.uint8)
    u = F.pad(u, (0, (-u.shape[1]) % per)).reshape(u.shape[0], -1, per)
    out = torch.zeros(u.shape[:2], dtype=torch.uint8, device=q.device)
    for i in range(per):
        out |= u[..., i] << (bits * i)
    return out


def unpack(packed: torch.Tensor, grid: Grid, cols: int) -> torch.Tensor:
    """Inverse of :func:`pack` for any leading shape: integers ``[..., cols]`` (int8; int16 for 0..255)."""
    if grid.bits == 8:
        return packed if grid.symmetric else packed.to(torch.int16)
    bits = 2 if grid.bits <= 2 else 4
    per, mask = 8 // bits, (1 << bits) - 1
    parts = [(packed >> (bits * i)) & mask for i in range(per)]
    u = torch.stack(parts, dim=-1).reshape(*packed.shape[:-1], -1)[..., :cols]
    return (u.to(torch.int16) + grid.qmin).to(torch.int8)


def _fbgemm_packed(int_weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
    """Prepack integer weights for PyTorch's quantized CPU engine, or ``None`` where it is unavailable.

    PyTorch marks quantized-tensor constructors as deprecated (pytorch#184982) but still ships the FBGEMM
    kernels, the fastest int8 path on x86 CPUs here; when they go, callers fall back to ``torch._int_mm``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            qw = torch._make_per_channel_quantized_tensor(
                int_weight, scale.double(), torch.zeros(int_weight.shape[0], dtype=torch.long), 0)
            return torch.ops.quantized.linear_prepack(qw, bias)
    except (AttributeError, RuntimeError, NotImplementedError):
        return None


def _grid(spec: dict) -> Grid:
    return Grid(**{k: spec[k] for k in ("bits", "mode", "symmetric", "per_channel")})


class _Stored(nn.Module):
    """Integer weight ``[rows, cols]`` + per-row scale (+ zero point) as state-dict buffers."""

    def _init_storage(self, rows: int, cols: int, grid: Grid, device=None) -> None:
        self.grid, self.rows, self.cols = grid, rows, cols
        width = cols if grid.bits == 8 else -(-cols // (8 // (2 if grid.bits <= 2 else 4)))
        dtype = torch.int8 if grid.bits == 8 and grid.symmetric else torch.uint8
        self.register_buffer("qweight", torch.zeros(rows, width, dtype=dtype, device=device))
        self.register_buffer("scale", torch.ones(rows, dtype=torch.float32, device=device))
        if not grid.symmetric:
            self.register_buffer("zero_point", torch.zeros(rows, dtype=torch.float32, device=device))
        self._cache = None  # derived compute tensors, rebuilt when missing or on another device

    def _set(self, w: torch.Tensor, rounding: str = "nearest", generator: torch.Generator | None = None) -> None:
        q, scale, zero = quantize_weight(w.reshape(w.shape[0], -1), self.grid, rounding, generator)
        self.qweight.copy_(pack(q, self.grid))
        self.scale.copy_(scale)
        if zero is not None:
            self.zero_point.copy_(zero)
        self._cache = None

    def int_weight(self) -> torch.Tensor:
        return unpack(self.qweight, self.grid, self.cols)

    def dequantize(self) -> torch.Tensor:
        """The float32 weight these integers represent."""
        return dequantize_weight(self.int_weight(), self.scale, getattr(self, "zero_point", None))

    def _compute(self) -> dict:
        if self._cache is None or self._cache["device"] != self.qweight.device:
            self._cache = {"device": self.qweight.device, **self._build()}
        return self._cache

    def extra_repr(self) -> str:
        return f"rows={self.rows}, cols={self.cols}, grid={self.grid}"


class QuantLinear(_Stored):
    """Linear layer with integer weights (see the module docstring for the compute paths)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, grid: Grid, backend: str = "fbgemm",
                 device=None):
        super().__init__()
        self.in_features, self.out_features, self.backend = in_features, out_features, backend
        self._init_storage(out_features, in_features, grid, device)
        self.bias = nn.Parameter(torch.zeros(out_features, device=device), requires_grad=False) if bias else None

    @classmethod
    def from_float(cls, linear: nn.Linear, grid: Grid, backend: str = "fbgemm", rounding: str = "nearest",
                   generator: torch.Generator | None = None) -> QuantLinear:
        mod = cls(linear.in_features, linear.out_features, linear.bias is not None, grid, backend,
                  device=linear.weight.device)
        mod._set(linear.weight, rounding, generator)
        if linear.bias is not None:
            mod.bias.data.copy_(linear.bias.detach().float())
        return mod

    def _build(self) -> dict:
        if not self.grid.symmetric:
            return {"weight": self.dequantize()}
        w = self.int_weight()
        if self.backend == "torchao":
            from torchao.quantization import Int8Tensor, PerRow
            from torchao.quantization.quantize_.workflows.int8.int8_tensor import QuantizeTensorToInt8Kwargs
            ao = Int8Tensor(w.contiguous(), self.scale[:, None].clone(), [1, self.cols], torch.float32,
                            act_quant_kwargs=QuantizeTensorToInt8Kwargs(granularity=PerRow()))
            return {"ao": ao}
        if self.backend == "fbgemm" and self.qweight.device.type == "cpu":
            packed = _fbgemm_packed(w, self.scale, self.bias.detach().float() if self.bias is not None else None)
            if packed is not None:
                return {"packed": packed}
        return {"w_t": w.t(), "weight": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self._compute()
        if "packed" in c:
            # reduce_range: 7-bit activations keep x86's u8 x s8 -> s16 accumulation from saturating.
            y = torch.ops.quantized.linear_dynamic(x.reshape(-1, self.in_features).float(), c["packed"], True)
            return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        if "ao" in c:
            return F.linear(x, c["ao"], self.bias)
        if c.get("weight") is not None:
            return F.linear(x, c["weight"].to(x.dtype), self.bias)
        flat = x.reshape(-1, self.in_features)
        if x.device.type != "cpu" and (flat.shape[0] <= 16 or self.in_features % 8 or self.out_features % 8):
            # CUDA's int8 matmul needs > 16 rows and multiples of 8: fall back to a float product.
            c["weight"] = self.dequantize()
            return F.linear(x, c["weight"].to(x.dtype), self.bias)
        xq, xs = quantize_activation(flat)
        y = torch._int_mm(xq, c["w_t"]).float() * xs * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


class QuantEmbedding(_Stored):
    """Row-wise quantized embedding table: only the looked-up rows are dequantized."""

    def __init__(self, num_embeddings: int, embedding_dim: int, grid: Grid, padding_idx: int | None = None,
                 device=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self._init_storage(num_embeddings, embedding_dim, grid, device)

    @classmethod
    def from_float(cls, emb: nn.Embedding, grid: Grid, rounding: str = "nearest",
                   generator: torch.Generator | None = None) -> QuantEmbedding:
        mod = cls(emb.num_embeddings, emb.embedding_dim, grid, emb.padding_idx, device=emb.weight.device)
        mod._set(emb.weight, rounding, generator)
        return mod

    @property
    def weight(self) -> torch.Tensor:
        """Dequantized table, for code that reads ``get_input_embeddings().weight``."""
        return self.dequantize()

    def _build(self) -> dict:
        return {}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = unpack(self.qweight[ids], self.grid, self.cols).float()
        if not self.grid.symmetric:
            rows = rows - self.zero_point[ids].unsqueeze(-1)
        return rows * self.scale[ids].unsqueeze(-1)


class QuantLSTM(nn.Module):
    """An ``nn.LSTM`` stored with integer weight matrices.

    On CPU with symmetric grids and ``backend="fbgemm"`` it runs PyTorch's dynamic int8 LSTM kernel
    (``torch.quantized_lstm`` over prepacked FBGEMM cells); otherwise it computes with a float copy made
    on first use.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool, grid: Grid,
                 device=None, backend: str = "fbgemm"):
        super().__init__()
        self.grid, self.backend = grid, backend
        self.shape = {"input_size": input_size, "hidden_size": hidden_size, "num_layers": num_layers,
                      "bidirectional": bidirectional, "batch_first": True}
        probe = nn.LSTM(**self.shape, device="meta")
        self.weights = nn.ModuleDict()
        for name, param in probe.named_parameters():
            if name.startswith("weight"):
                self.weights[name] = _Stored()
                self.weights[name]._init_storage(param.shape[0], param.shape[1], grid, device)
            else:
                self.register_parameter(name, nn.Parameter(torch.zeros(param.shape, device=device),
                                                           requires_grad=False))
        # Compute caches, plain attributes so only the integers reach the state dict: FBGEMM cells
        # (None: not built yet, []: engine unavailable) and a dequantized float LSTM (built on demand).
        self._cells_cache: list | None = None
        self._float: nn.LSTM | None = None

    @classmethod
    def from_float(cls, lstm: nn.LSTM, grid: Grid, backend: str = "fbgemm", rounding: str = "nearest",
                   generator: torch.Generator | None = None) -> QuantLSTM:
        if not lstm.batch_first or lstm.proj_size or not lstm.bias:
            raise ValueError("QuantLSTM supports batch_first LSTMs with biases and no projection")
        mod = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bidirectional, grid,
                  device=lstm.weight_ih_l0.device, backend=backend)
        for name, param in lstm.named_parameters():
            if name.startswith("weight"):
                mod.weights[name]._set(param, rounding, generator)
            else:
                getattr(mod, name).data.copy_(param.detach())
        return mod

    def _cells(self) -> list | None:
        """FBGEMM cell parameters, one per layer and direction, in ``nn.LSTM``'s order (None: no FBGEMM)."""
        cells = []
        for layer in range(self.shape["num_layers"]):
            for suffix in ("", "_reverse") if self.shape["bidirectional"] else ("",):
                packed, biases = [], []
                for kind in ("ih", "hh"):
                    stored = self.weights[f"weight_{kind}_l{layer}{suffix}"]
                    bias = getattr(self, f"bias_{kind}_l{layer}{suffix}").detach().float()
                    packed.append(_fbgemm_packed(stored.int_weight(), stored.scale, bias))
                    biases.append(bias)
                if any(p is None for p in packed):
                    return None
                cells.append(torch.ops.quantized.make_quantized_cell_params_dynamic(*packed, *biases, True))
        return cells

    def forward(self, *args, **kwargs):
        device = self.weights["weight_ih_l0"].qweight.device
        # At batch 1 the int8 kernel (a per-time-step composition of small ops) loses to the fused float
        # LSTM kernel on the dequantized weights: measured 1.02 vs 0.63 ms on a 64->150 BiLSTM step at
        # 2 threads (scripts/bench_pipeline.py). The weights stay int8 on disk either way.
        if self.backend == "fbgemm" and self.grid.symmetric and device.type == "cpu" and not kwargs \
                and _batch_size(args[0]) > 1:
            if self._cells_cache is None:
                self._cells_cache = self._cells() or []
            if self._cells_cache:
                return self._forward_int8(*args)
        return self._forward_float(device, *args, **kwargs)

    def _forward_int8(self, input, hx=None):  # noqa: A002 - nn.LSTM's own signature
        cells, shape = self._cells_cache, self.shape
        directions = 2 if shape["bidirectional"] else 1
        packed = isinstance(input, nn.utils.rnn.PackedSequence)
        batch = _batch_size(input)
        if hx is None:
            zeros = torch.zeros(shape["num_layers"] * directions, batch, shape["hidden_size"])
            hx = (zeros, zeros)
        if packed:
            out = torch.quantized_lstm(input.data, input.batch_sizes, hx, cells, True, shape["num_layers"], 0.0,
                                       False, shape["bidirectional"], dtype=torch.qint8, use_dynamic=True)
            output = nn.utils.rnn.PackedSequence(out[0], input.batch_sizes, input.sorted_indices,
                                                 input.unsorted_indices)
            hidden = tuple(h if input.unsorted_indices is None else h.index_select(1, input.unsorted_indices)
                           for h in out[1:])
            return output, hidden
        out = torch.quantized_lstm(input, hx, cells, True, shape["num_layers"], 0.0, False,
                                   shape["bidirectional"], True, dtype=torch.qint8, use_dynamic=True)
        return out[0], tuple(out[1:])

    def _forward_float(self, device, *args, **kwargs):
        if self._float is None or self._float.weight_ih_l0.device != device:
            lstm = nn.LSTM(**self.shape, device=device)
            with torch.no_grad():
                for name, param in lstm.named_parameters():
                    src = self.weights[name].dequantize() if name.startswith("weight") else getattr(self, name)
                    param.copy_(src)
            lstm.requires_grad_(False)
            object.__setattr__(self, "_float", lstm)  # not a submodule: only the integers are saved
        return self._float(*args, **kwargs)


def _batch_size(input) -> int:  # noqa: A002 - mirrors nn.LSTM's argument
    """Rows of a batch-first LSTM input, packed or not."""
    return int(input.batch_sizes[0]) if isinstance(input, nn.utils.rnn.PackedSequence) else input.shape[0]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def quantize_model(model: nn.Module, linear: Grid | None = None, embedding: Grid | None = None,
                   skip_modules=("classifier",), backend: str = "fbgemm", rounding: str = "nearest",
                   seed: int = 0) -> dict:
    """Replace float layers of ``model`` by quantized ones *in place* and record how, for ``config.json``.

    Args:
        model: A ``PreTrainedModel`` (BERT-like transformer or BiLSTM student); fake-quant layers count as
            their float parents, so a QAT model converts with its own grids.
        linear: Grid of ``nn.Linear`` and ``nn.LSTM`` weights (``None``: keep float).
        embedding: Grid of ``nn.Embedding`` tables, row-wise (``None``: keep float).
        skip_modules: Module names (or last parts of names) left in float, e.g. the classifier head.
        backend: Kernel of symmetric linears: ``fbgemm``, ``int_mm`` or ``torchao`` (see the module docstring).
        rounding: ``nearest``, or ``stochastic`` (unbiased, :mod:`distilkit.methods.quantization.rounding`).
        seed: Seeds the CPU generator of stochastic rounding, drawn module by module in ``named_modules``
            order: the same seed gives the same integers on any device.

    Returns:
        The quantization config dict, also stored as ``model.config.quantization_config``.
    """
    if backend == "torchao" and linear is not None and not linear.symmetric:
        raise ValueError("the torchao backend runs symmetric int8 weights only")
    check_rounding(rounding)
    gen = torch.Generator().manual_seed(seed) if rounding == "stochastic" else None
    table = {}
    for name, module in list(model.named_modules()):
        if not name or skipped(name, skip_modules):
            continue
        if isinstance(module, nn.Linear) and linear is not None:
            new, kind, grid = QuantLinear.from_float(module, linear, backend, rounding, gen), "linear", linear
        elif isinstance(module, nn.LSTM) and linear is not None:
            new, kind, grid = QuantLSTM.from_float(module, linear, backend, rounding, gen), "lstm", linear
        elif isinstance(module, nn.Embedding) and embedding is not None:
            new, kind, grid = QuantEmbedding.from_float(module, embedding, rounding, gen), "embedding", embedding
        else:
            continue
        _set_module(model, name, new)
        table[name] = {"kind": kind, **grid.to_dict()}
    config = {"quant_method": QUANT_METHOD, "backend": backend, "rounding": rounding, "modules": table}
    model.config.quantization_config = config
    return config


def build_quantized_modules(model: nn.Module, config: dict) -> None:
    """Swap the modules listed in a saved ``quantization_config`` for empty quantized ones (before loading)."""
    backend = config.get("backend", "fbgemm")
    for name, spec in config["modules"].items():
        old, grid = model.get_submodule(name), _grid(spec)
        if spec["kind"] == "linear":
            new = QuantLinear(old.in_features, old.out_features, old.bias is not None, grid, backend)
        elif spec["kind"] == "lstm":
            new = QuantLSTM(old.input_size, old.hidden_size, old.num_layers, old.bidirectional, grid,
                            backend=backend)
        elif spec["kind"] == "embedding":
            new = QuantEmbedding(old.num_embeddings, old.embedding_dim, grid, old.padding_idx)
        else:
            raise ValueError(f"quantization_config: unknown module kind {spec['kind']!r} for {name}")
        _set_module(model, name, new)
