"""Canonical Huffman coding of integer streams: Deep Compression's third stage (Han et al. 2016, "Deep
Compression: Compressing Deep Neural Networks with Pruning, Trained Quantization and Huffman Coding", section 4).

Codebook indices and the gaps between kept weights are far from uniform (a few clusters and short gaps are
common), so a variable-length prefix code stores them in fewer bits than fixed-width integers: Han et al.
save 20-30% of the pruned and shared network this way.

Format (what :class:`HuffmanStream` holds, all plain arrays, saved as safetensors tensors):

* ``lengths`` -- the code length of every symbol (0: absent). The codes themselves are *canonical* (shorter
  codes first, ties by symbol value), so the lengths alone define them and nothing else is stored.
* ``data`` -- the codes, packed most significant bit first.
* ``starts`` -- the bit offset of every ``block``-th symbol. Decoding walks all blocks at once, one symbol per
  step, as NumPy array operations: a stream of n symbols decodes in about ``block`` vectorized steps
  instead of n Python steps. The offsets cost 64 bits per block (under 0.1% at the block sizes chosen).

Decoding is exact: ``huffman_decode(huffman_encode(x))`` returns ``x``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

#: Longest code allowed; peeking a code reads 64-bit windows, and 32 + 7 bits of offset fit.
MAX_CODE_BITS = 32


@dataclass
class HuffmanStream:
    """A Huffman-coded stream of ``count`` symbols (see the module doc for the fields)."""

    lengths: np.ndarray
    data: np.ndarray
    starts: np.ndarray
    count: int
    block: int

    @property
    def nbytes(self) -> int:
        """Bytes the stream takes stored: codes, code lengths and block offsets."""
        return int(self.data.nbytes + self.lengths.nbytes + self.starts.nbytes)


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Huffman code length of every symbol from its count (0 for symbols that never occur), at most
    :data:`MAX_CODE_BITS` bits: counts are flattened (square-rooted) until the longest code fits."""
    counts = np.asarray(counts, dtype=np.float64)
    lengths = np.zeros(len(counts), dtype=np.uint8)
    present = np.flatnonzero(counts > 0)
    if len(present) == 1:  # one symbol still needs one bit per occurrence to be counted
        lengths[present] = 1
    if len(present) <= 1:
        return lengths
    weights = counts[present]
    while True:
        depths = _tree_depths(weights)
        if depths.max() <= MAX_CODE_BITS:
            lengths[present] = depths
            return lengths
        weights = np.sqrt(weights)


def _tree_depths(weights: np.ndarray) -> np.ndarray:
    """Depth of every leaf of the Huffman tree of ``weights`` (merging the two lightest nodes first)."""
    n = len(weights)
    heap = [(float(w), i) for i, w in enumerate(weights)]  # ties break on node id: deterministic codes
    heapq.heapify(heap)
    parent = np.zeros(2 * n - 1, dtype=np.int64)
    next_id = n
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = next_id
        heapq.heappush(heap, (w1 + w2, next_id))
        next_id += 1
    depth = np.zeros(2 * n - 1, dtype=np.int64)
    for node in range(2 * n - 3, -1, -1):  # parents have larger ids than their children
        depth[node] = depth[parent[node]] + 1
    return depth[:n]


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical code of every symbol (``uint64``, right-aligned in ``lengths[s]`` bits)."""
    codes = np.zeros(len(lengths), dtype=np.uint64)
    order = _canonical_order(lengths)
    code, previous = 0, 0
    for i, symbol in enumerate(order):
        length = int(lengths[symbol])
        code = 0 if i == 0 else (code + 1) << (length - previous)
        codes[symbol], previous = code, length
    return codes


def _canonical_order(lengths: np.ndarray) -> np.ndarray:
    present = np.flatnonzero(lengths)
    return present[np.lexsort((present, lengths[present]))]


def _block_size(count: int) -> int:
    """About ``2 sqrt(n)`` symbols per block: as many vectorized steps as blocks are decoded in each."""
    return int(min(4096, max(64, 2 ** round(math.log2(max(2 * math.sqrt(max(count, 1)), 1))))))


def huffman_encode(symbols: np.ndarray, alphabet: int | None = None, block: int | None = None) -> HuffmanStream:
    """Huffman-code non-negative integers (``alphabet``: number of possible symbols, default ``max + 1``)."""
    symbols = np.asarray(symbols, dtype=np.int64).ravel()
    if symbols.size and symbols.min() < 0:
        raise ValueError("Huffman coding takes non-negative integers")
    alphabet = alphabet or (int(symbols.max()) + 1 if symbols.size else 1)
    block = block or _block_size(symbols.size)
    lengths = code_lengths(np.bincount(symbols, minlength=alphabet))
    codes = canonical_codes(lengths)
    sym_lengths = lengths[symbols].astype(np.int64)
    ends = np.cumsum(sym_lengths)
    begins = ends - sym_lengths
    bits = np.zeros(int(ends[-1]) if symbols.size else 0, dtype=np.uint8)
    sym_codes = codes[symbols]
    for j in range(int(lengths.max(initial=0))):  # bit j of every code at once, most significant first
        has = sym_lengths > j
        shift = (sym_lengths[has] - 1 - j).astype(np.uint64)
        bits[begins[has] + j] = ((sym_codes[has] >> shift) & np.uint64(1)).astype(np.uint8)
    return HuffmanStream(lengths=lengths, data=np.packbits(bits), starts=begins[::block].astype(np.int64),
                         count=int(symbols.size), block=int(block))


def huffman_decode(stream: HuffmanStream) -> np.ndarray:
    """The symbols of ``stream`` (``int64``), bit-exact."""
    count, block = stream.count, stream.block
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = stream.lengths.astype(np.int64)
    order, codes = _canonical_order(stream.lengths), canonical_codes(stream.lengths)
    top = int(lengths.max())
    # Per code length l: the first canonical code of that length, how many there are, where they start in order.
    first = np.zeros(top + 1, dtype=np.int64)
    per_length = np.bincount(lengths[lengths > 0], minlength=top + 1)
    offset = np.concatenate([[0], np.cumsum(per_length)])[:-1]
    for length in range(1, top + 1):
        if per_length[length]:
            first[length] = int(codes[order[offset[length]]])
    words = _windows(stream.data)
    position = stream.starts.astype(np.int64).copy()
    nblocks = len(position)
    out = np.zeros(nblocks * block, dtype=np.int64)
    last_count = count - (nblocks - 1) * block
    level = np.arange(1, top + 1, dtype=np.int64)
    for step in range(block):
        active = slice(0, nblocks if step < last_count else nblocks - 1)
        pos = position[active]
        peek = ((words[pos >> 3] << (pos & 7).astype(np.uint64)) >> np.uint64(64 - top)).astype(np.int64)
        prefix = peek[:, None] >> (top - level)[None, :]  # the first l bits, for every l
        rank = prefix - first[1:][None, :]
        match = (rank >= 0) & (rank < per_length[1:][None, :])
        length = match.argmax(axis=1) + 1  # the shortest length whose code range holds the prefix
        rows = np.arange(len(pos))
        out[np.arange(nblocks)[active] * block + step] = order[offset[length] + rank[rows, length - 1]]
        position[active] = pos + length
    return out[:count].copy() if nblocks * block != count else out


def _windows(data: np.ndarray) -> np.ndarray:
    """``words[i]``: the 8 bytes from byte ``i`` on, big-endian, as one ``uint64`` (zero-padded at the end)."""
    padded = np.concatenate([np.asarray(data, dtype=np.uint8), np.zeros(8, dtype=np.uint8)]).astype(np.uint64)
    n = len(padded) - 7
    words = np.zeros(n, dtype=np.uint64)
    for k in range(8):
        words |= padded[k:k + n] << np.uint64(56 - 8 * k)
    return words
