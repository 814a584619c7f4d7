"""Read a TensorFlow checkpoint (the TensorBundle format) without TensorFlow.

A TF2/TF1 "V2" checkpoint is two files: ``PREFIX.index``, a LevelDB-style sorted table (SSTable) mapping each
variable's name to a ``BundleEntryProto`` (dtype, shape, shard, byte offset, size, CRC32C), and
``PREFIX.data-00000-of-00001``, the tensors' raw little-endian bytes one after the other. This module parses
both with the standard library and numpy only: the SSTable's footer, index block and data blocks (uncompressed,
as TensorFlow writes them), the protobuf fields by hand, and the data by offset.

>>> tensors = read_checkpoint("site-packages/musicnn/MSD_musicnn/")     # {name: np.ndarray}
>>> tensors["conv2d/kernel"].shape
(7, 38, 1, 204)
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

_MAGIC = 0xDB4775248B80FB57          # LevelDB/TensorFlow table magic number (last 8 bytes of the .index file)
# DataType enum of tensorflow/core/framework/types.proto -> numpy
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64,
           10: np.bool_, 19: np.float16}


def _varint(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while True:
        if i >= len(b):
            raise CheckpointError("truncated varint")
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if not c & 0x80:
            return r, i


def _fields(b: bytes) -> list[tuple[int, object]]:
    """The (field number, value) pairs of a protobuf message: varints as int, length-delimited as bytes."""
    out, i = [], 0
    while i < len(b):
        tag, i = _varint(b, i)
        f, wire = tag >> 3, tag & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        out.append((f, v))
    return out


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + 5 > len(data):
        raise CheckpointError("block past the end of the file (truncated)")
    if data[offset + size] != 0:
        raise CheckpointError(f"compressed table block (type {data[offset + size]}); TensorFlow writes none")
    return data[offset:offset + size]


def _entries(block: bytes):
    """Key/value pairs of one table block (prefix-compressed keys, restart array at the end)."""
    n_restarts = struct.unpack("<I", block[-4:])[0]
    end, i, key = len(block) - 4 - 4 * n_restarts, 0, b""
    while i < end:
        shared, i = _varint(block, i)
        own, i = _varint(block, i)
        vlen, i = _varint(block, i)
        key = key[:shared] + block[i:i + own]
        i += own
        yield key, block[i:i + vlen]
        i += vlen


def _shape(proto: bytes) -> tuple[int, ...]:
    dims = []
    for f, dim in _fields(proto):
        if f == 2:
            d = dict(_fields(dim))
            size = d.get(1, 0)
            dims.append(size - (1 << 64) if size >= 1 << 63 else size)
    return tuple(dims)


def read_index(prefix: str | os.PathLike) -> dict[str, dict]:
    """The entries of ``PREFIX.index``: {name: {'dtype', 'shape', 'shard', 'offset', 'size'}} (header left out)."""
    path = Path(str(prefix) + ".index")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint index '{path}': {e.strerror or e}") from None
    if len(data) < 48 or struct.unpack("<Q", data[-8:])[0] != _MAGIC:
        raise CheckpointError(f"'{path}' is not a TensorFlow checkpoint index (bad footer: truncated or another "
                              f"format)")
    footer = data[-48:]
    _, j = _varint(footer, 0)                    # metaindex handle (unused)
    _, j = _varint(footer, j)
    io, j = _varint(footer, j)
    isz, j = _varint(footer, j)
    out = {}
    for _, handle in _entries(_block(data, io, isz)):
        o, k = _varint(handle, 0)
        s, _ = _varint(handle, k)
        for key, value in _entries(_block(data, o, s)):
            if not key:                          # the BundleHeaderProto
                continue
            f = {}
            for num, v in _fields(value):
                f.setdefault(num, v)
            out[key.decode()] = dict(dtype=f.get(1, 0), shape=_shape(f.get(2, b"")), shard=f.get(3, 0),
                                     offset=f.get(4, 0), size=f.get(5, 0))
    return out


def read_checkpoint(prefix: str | os.PathLike, names=None, skip_optimizer: bool = True) -> dict[str, np.ndarray]:
    """Tensors of a checkpoint as numpy arrays.

    Parameters
    ----------
    prefix : path
        The checkpoint prefix (``.../MSD_musicnn/`` for files ``.../MSD_musicnn/.index`` and ``.data-*``).
    names : iterable of str, optional
        Only these (all by default).
    skip_optimizer : bool
        Leave out Adam's slots (``*/Adam``, ``*/Adam_1``) and its ``beta*_power`` scalars.

    Returns
    -------
    dict {name: np.ndarray} in the checkpoint's own layout (TensorFlow's: conv kernels (h, w, in, out)).
    """
    index = read_index(prefix)
    want = set(names) if names is not None else None
    shards: dict[int, bytes] = {}
    out = {}
    for name, e in index.items():
        if want is not None and name not in want:
            continue
        if want is None and skip_optimizer and (name.endswith(("/Adam", "/Adam_1")) or name.startswith("beta")):
            continue
        if e["dtype"] not in _DTYPES:
            raise CheckpointError(f"tensor '{name}' has TensorFlow dtype {e['dtype']}, which this reader does not "
                                  f"handle")
        if e["shard"] not in shards:
            n_shards = 1 + max(v["shard"] for v in index.values())
            path = Path(f"{prefix}.data-{e['shard']:05d}-of-{n_shards:05d}")
            try:
                shards[e["shard"]] = path.read_bytes()
            except OSError as err:
                raise CheckpointError(f"cannot read checkpoint data '{path}': {err.strerror or err}") from None
        blob, dt = shards[e["shard"]], np.dtype(_DTYPES[e["dtype"]])
        n = int(np.prod(e["shape"], dtype=np.int64)) if e["shape"] else 1
        if e["size"] != n * dt.itemsize or e["offset"] + e["size"] > len(blob):
            raise CheckpointError(f"tensor '{name}' does not fit the data file of '{prefix}' (truncated or "
                                  f"corrupt): {e['size']} bytes at {e['offset']} of {len(blob)}")
        a = np.frombuffer(blob, dtype=dt.newbyteorder("<"), count=n, offset=e["offset"])
        out[name] = a.reshape(e["shape"]).astype(dt, copy=True)
    if want is not None and want - set(out):
        raise CheckpointError(f"checkpoint '{prefix}' lacks {sorted(want - set(out))[:5]}")
    return out
