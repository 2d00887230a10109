"""Token grids on disk: int32 safetensors, written as a stream and read through a memory map.

Why: a 500M-token corpus is 2 GB as int32 and 4 GB as int64. Tokenizing must not hold the grid (nor the
documents' token arrays) in memory, and training/extraction must not load it: they read the rows they need.

- `TokenWriter` appends `[n, C]` int32 rows to `tokens.safetensors` as they are produced. The header's size is
  reserved up front (HEADER_BYTES, padded with spaces as the safetensors format allows) and written at `close()`,
  once the number of rows is known, so the file is standard: `safetensors.safe_open`/`load_file` read it.
- `mmap_tokens(path)` returns a `torch.int32` tensor backed by a copy-on-write numpy memmap of the file's data:
  opening is instant, resident memory is only the pages read, and `grid[rows].long()` widens only those rows.
  Files written by `safetensors.save_file` (any header size) open the same way.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from ..platform.errors import ValidationError

HEADER_BYTES = 256  # room for {"tokens": {"dtype": "I32", "shape": [n, C], "data_offsets": [0, bytes]}}
KEY = "tokens"


class TokenWriter:
    """Stream int32 contexts `[n, context_size]` into a safetensors file (key `tokens`)."""

    def __init__(self, path: str | Path, context_size: int):
        self.path, self.context_size, self.n_rows = Path(path), int(context_size), 0
        self._f = open(self.path, "wb")
        self._f.write(b"\0" * (8 + HEADER_BYTES))

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=np.int32)
        if rows.ndim != 2 or rows.shape[1] != self.context_size:
            raise ValueError(f"rows must be [n, {self.context_size}] (got {rows.shape})")
        self._f.write(rows.tobytes())
        self.n_rows += rows.shape[0]

    def close(self) -> int:
        """Write the header; returns the number of rows. The file is only valid after this."""
        size = self.n_rows * self.context_size * 4
        header = json.dumps({KEY: {"dtype": "I32", "shape": [self.n_rows, self.context_size],
                                   "data_offsets": [0, size]}}).encode()
        if len(header) > HEADER_BYTES:
            raise ValueError("safetensors header does not fit the reserved space")
        self._f.seek(0)
        self._f.write(struct.pack("<Q", HEADER_BYTES) + header.ljust(HEADER_BYTES, b" "))
        self._f.close()
        return self.n_rows

    def abort(self) -> None:
        self._f.close()


def mmap_tokens(path: str | Path) -> torch.Tensor:
    """The `tokens` tensor of a safetensors file as a memory-mapped int32 tensor (nothing read yet)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if n > min(path.stat().st_size, 100 * 2**20):
                raise ValueError(f"header length {n} is not plausible")
            info = json.loads(f.read(n))[KEY]
    except (OSError, ValueError, KeyError, struct.error) as e:
        raise ValidationError(f"Corrupt token file {path} ({e}). Tokenize the dataset again.") from e
    if info["dtype"] != "I32" or len(info["shape"]) != 2:
        raise ValidationError(f"Token file {path} holds {info['dtype']} {info['shape']}, not an int32 grid. "
                              "Tokenize the dataset again.")
    begin, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if end - begin != shape[0] * shape[1] * 4 or path.stat().st_size < 8 + n + end:
        raise ValidationError(f"Token file {path} is truncated. Tokenize the dataset again.")
    if shape[0] == 0:
        return torch.zeros(shape, dtype=torch.int32)
    arr = np.memmap(path, dtype=np.int32, mode="c", offset=8 + n + begin, shape=shape)  # "c": writable view,
    return torch.from_numpy(arr)  # so torch does not warn; writes would stay private, never reach the file
