"""The Deep Compression file format: sparse, shared and Huffman-coded weights inside ``model.safetensors``,
reloaded bit-exactly by ``AutoModelForSequenceClassification.from_pretrained`` (Han et al. 2016, Figure 1).

Every compressed weight tensor is stored as small integer tensors instead of float32 values:

* **where the kept weights are** (tensors with at least :data:`SPARSE_FROM` zeros): a bitmask (``mask``,
  one bit per weight), or with ``huffman`` the gaps between consecutive kept weights, Huffman-coded
  (``gaps``: Han et al.'s relative index, section 2, without its filler zeros: the code takes any gap);
* **their values**: with at most 256 distinct non-zero values (a shared tensor, section 3) a ``codebook``
  (float32) plus one index per kept weight -- packed at ``bits`` bits, or Huffman-coded (``index``); else
  the float32 ``values`` themselves.

The float values are never rounded: decoding gives back the very tensor that was saved. ``config.json``
carries ``quantization_config: {quant_method: distilkit-deep-compression, modules: ...}`` with each tensor's
layout; ``import distilkit`` registers a transformers quantizer that swaps the listed modules for holders of
these tensors before the weights load, then decodes them into ordinary float modules (and drops the
``quantization_config``: the loaded model is a plain float model). Size on disk is the file's real size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from distilkit.core.hf_quantizers import register_weight_format
from distilkit.methods.deep_compression.huffman import HuffmanStream, huffman_decode, huffman_encode

QUANT_METHOD = "distilkit-deep-compression"
#: A tensor is stored sparse when at least this fraction of its weights is zero (a bitmask costs 1 bit per
#: weight; each dropped float32 saves 32).
SPARSE_FROM = 0.05
_STREAM_PARTS = ("lengths", "data", "starts")


def encode_tensor(weight: torch.Tensor, huffman: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Encode one weight tensor. Returns ``(arrays by part name, layout)``; :func:`decode_tensor` inverts it."""
    flat = weight.detach().float().cpu().numpy().ravel()
    layout: dict = {"shape": list(weight.shape), "streams": {}}
    arrays: dict[str, np.ndarray] = {}
    nonzero = flat != 0
    sparse = flat.size > 0 and 1 - nonzero.mean() >= SPARSE_FROM
    kept = flat[nonzero] if sparse else flat
    layout["sparse"], layout["kept"] = bool(sparse), int(kept.size)
    if sparse and huffman:
        positions = np.flatnonzero(nonzero)
        _put_stream(arrays, layout, "gaps", huffman_encode(np.diff(positions, prepend=-1) - 1))
    elif sparse:
        arrays["mask"] = np.packbits(nonzero)
    codebook, index = np.unique(kept, return_inverse=True)
    if 0 < len(codebook) <= 256:
        bits = max(1, math.ceil(math.log2(len(codebook))))
        layout["bits"] = bits
        arrays["codebook"] = codebook.astype(np.float32)
        if huffman:
            _put_stream(arrays, layout, "index", huffman_encode(index, alphabet=len(codebook)))
        else:
            arrays["index"] = pack_bits(index, bits)
    else:
        arrays["values"] = kept.astype(np.float32)
    layout["arrays"] = {name: [list(a.shape), str(a.dtype)] for name, a in arrays.items()}
    return arrays, layout


def decode_tensor(arrays: dict[str, np.ndarray], layout: dict) -> torch.Tensor:
    """The float32 tensor :func:`encode_tensor` encoded, bit-exact."""
    size, kept = math.prod(layout["shape"]), layout["kept"]
    if "codebook" in arrays:
        if "index" in layout["streams"]:
            index = huffman_decode(_get_stream(arrays, layout, "index"))
        else:
            index = unpack_bits(arrays["index"], layout["bits"], kept)
        values = arrays["codebook"][index]
    else:
        values = arrays["values"]
    flat = np.zeros(size, dtype=np.float32)
    if not layout["sparse"]:
        flat[:] = values
    elif "gaps" in layout["streams"]:
        flat[np.cumsum(huffman_decode(_get_stream(arrays, layout, "gaps")) + 1) - 1] = values
    else:
        flat[np.unpackbits(arrays["mask"], count=size).astype(bool)] = values
    return torch.from_numpy(flat).view(layout["shape"])


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integers below ``2**bits``, ``bits`` bits each, most significant first, in bytes."""
    planes = (np.asarray(values, dtype=np.uint32)[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1
    return np.packbits(planes.astype(np.uint8).ravel())


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`."""
    planes = np.unpackbits(packed, count=count * bits).reshape(count, bits).astype(np.int64)
    return planes @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))


def _put_stream(arrays: dict, layout: dict, name: str, stream: HuffmanStream) -> None:
    arrays.update({f"{name}_lengths": stream.lengths, f"{name}_data": stream.data, f"{name}_starts": stream.starts})
    layout["streams"][name] = {"count": stream.count, "block": stream.block}


def _get_stream(arrays: dict, layout: dict, name: str) -> HuffmanStream:
    meta = layout["streams"][name]
    return HuffmanStream(arrays[f"{name}_lengths"], arrays[f"{name}_data"], arrays[f"{name}_starts"],
                         meta["count"], meta["block"])


# ------------------------------------------------------------------------------------- modules and loading
class EncodedModule(nn.Module):
    """Stands in for a compressed module inside a saved model: its state dict is the encoded tensors of
    every compressed weight (``<param>__<part>``) plus its other parameters as they were (biases)."""

    def __init__(self, original: nn.Module, spec: dict):
        super().__init__()
        object.__setattr__(self, "original", original)  # not a submodule: only the encoded tensors are saved
        self.spec = spec
        for pname, layout in spec["params"].items():
            for part, (shape, dtype) in layout["arrays"].items():
                self.register_buffer(f"{pname}__{part}", torch.empty(shape, dtype=getattr(torch, dtype)))
        for pname, (shape, dtype) in spec["raw"].items():
            self.register_buffer(pname, torch.empty(shape, dtype=getattr(torch, dtype)))

    def forward(self, *args, **kwargs):
        raise RuntimeError("an encoded Deep Compression module runs only after decoding (from_pretrained does)")

    def decode(self) -> nn.Module:
        """The original module with decoded float weights."""
        module = self.original
        for pname, layout in self.spec["params"].items():
            arrays = {part: getattr(self, f"{pname}__{part}").cpu().numpy() for part in layout["arrays"]}
            setattr(module, pname, nn.Parameter(decode_tensor(arrays, layout), requires_grad=True))
        for pname in self.spec["raw"]:
            setattr(module, pname, nn.Parameter(getattr(self, pname).detach().clone()))
        if isinstance(module, nn.RNNBase):
            module._init_flat_weights()  # the LSTM's flat weight list still points at the replaced tensors
        return module


def encode_modules(model: nn.Module, names: dict[str, list[str]], huffman: bool) -> dict:
    """Swap every module in ``names`` (module -> parameter names to encode) for an :class:`EncodedModule`,
    in place, and return the ``quantization_config`` that rebuilds them (also set on ``model.config``)."""
    table = {}
    for module_name, pnames in names.items():
        module = model.get_submodule(module_name)
        params = {}
        for pname in pnames:
            arrays, layout = encode_tensor(getattr(module, pname), huffman)
            params[pname] = (arrays, layout)
        raw = {p: v.detach() for p, v in module.named_parameters(recurse=False) if p not in pnames}
        spec = {"params": {p: layout for p, (_, layout) in params.items()},
                "raw": {p: [list(v.shape), str(v.dtype).removeprefix("torch.")] for p, v in raw.items()}}
        holder = EncodedModule(module, spec)
        with torch.no_grad():
            for pname, (arrays, _) in params.items():
                for part, array in arrays.items():
                    setattr(holder, f"{pname}__{part}", torch.from_numpy(np.ascontiguousarray(array)))
            for pname, value in raw.items():
                setattr(holder, pname, value.clone())
        _set_module(model, module_name, holder)
        table[module_name] = spec
    config = {"quant_method": QUANT_METHOD, "modules": table}
    model.config.quantization_config = config
    return config


def build_encoded_modules(model: nn.Module, config: dict) -> None:
    """Before the weights load: swap the modules listed in a saved ``quantization_config`` for holders."""
    for name, spec in config["modules"].items():
        _set_module(model, name, EncodedModule(model.get_submodule(name), spec))


def decode_modules(model: nn.Module) -> int:
    """After the weights load: replace every holder by its decoded float module. Returns how many."""
    holders = [(name, m) for name, m in model.named_modules() if isinstance(m, EncodedModule)]
    for name, holder in holders:
        _set_module(model, name, holder.decode())
    return len(holders)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


# ------------------------------------------------------------------------------------ transformers loading
def register() -> None:
    """Make ``quant_method: distilkit-deep-compression`` loadable by transformers (idempotent; run on
    ``import distilkit``): holders are built before the weights load and decoded after. ``dequantize``: the loaded
    model is plain float, so transformers drops the config; it is not saved as is (save through
    :func:`encode_modules` again)."""
    register_weight_format(QUANT_METHOD, name="DeepCompression", before_weights=build_encoded_modules,
                           after_weights=decode_modules, dequantize=True, serializable=False, trainable=True)
