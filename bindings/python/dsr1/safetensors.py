"""Reader of Hugging Face safetensors checkpoints (pure Python + numpy).

libdsr1's own implementation of the format, so that the converter needs
neither torch nor the ``safetensors`` package.

File layout::

    u64 (little-endian)  N: length of the header
    N bytes              JSON header: {"name": {"dtype": "BF16", "shape": [r, c],
                         "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
    data                 raw little-endian tensors, row-major; offsets are relative
                         to the first byte after the header

A checkpoint directory holds either one ``model.safetensors`` or shards listed
by ``model.safetensors.index.json`` (``weight_map``: tensor name -> file).

Decoded dtypes: F64, F32, F16, BF16, F8_E4M3 (``float8_e4m3fn``: no infinities,
0x7F/0xFF are NaN), F8_E5M2 and the integer types. FP8 values decode exactly to
float32 through a 256-entry table; a block-scaled FP8 weight (DeepSeek-V3's
``weight_scale_inv``) is dequantized by :func:`dequantize_blockwise`.
"""

from __future__ import annotations

import json
import mmap
import os
import struct

from ._numpy import np

__all__ = [
    "SafetensorsError", "SafetensorsFile", "Checkpoint", "decode_fp8", "dequantize_blockwise",
    "FP8_E4M3_TABLE", "FP8_E5M2_TABLE",
]

MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


class SafetensorsError(ValueError):
    """A malformed or inconsistent safetensors file or checkpoint."""


def _fp8_table(exp_bits: int, man_bits: int, bias: int, fn: bool) -> np.ndarray:
    """float32 value of every byte of an 8-bit float format.

    fn (the "finite" e4m3fn variant): the all-ones exponent is an ordinary
    binade except for mantissa all-ones, which is NaN; no infinities.
    Otherwise (IEEE-like e5m2): all-ones exponent is inf (mantissa 0) or NaN.
    """
    out = np.empty(256, dtype=np.float32)
    emax = (1 << exp_bits) - 1
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        e = (b >> man_bits) & emax
        m = b & ((1 << man_bits) - 1)
        if fn and e == emax and m == (1 << man_bits) - 1:
            v = float("nan")
        elif not fn and e == emax:
            v = float("inf") if m == 0 else float("nan")
        elif e == 0:  # subnormal
            v = (m / (1 << man_bits)) * 2.0 ** (1 - bias)
        else:
            v = (1.0 + m / (1 << man_bits)) * 2.0 ** (e - bias)
        out[b] = sign * v
    return out


FP8_E4M3_TABLE = _fp8_table(4, 3, 7, fn=True)     # max 448
FP8_E5M2_TABLE = _fp8_table(5, 2, 15, fn=False)    # max 57344

# dtype name -> (numpy dtype of the stored elements, bytes per element)
_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "F8_E4M3": "u1", "F8_E5M2": "u1",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")


def decode_fp8(raw: np.ndarray, dtype: str = "F8_E4M3") -> np.ndarray:
    """Exact float32 values of FP8 bytes (a uint8 array of any shape)."""
    table = FP8_E4M3_TABLE if dtype == "F8_E4M3" else FP8_E5M2_TABLE
    return table[np.asarray(raw, dtype=np.uint8)]


def dequantize_blockwise(w: np.ndarray, scale: np.ndarray, block=(128, 128)) -> np.ndarray:
    """w (float32, [rows, cols]) times the scale of its block: scale has shape
    [ceil(rows/br), ceil(cols/bc)] and element (i, j) of w uses
    scale[i // br, j // bc]. The product is computed in float32."""
    if w.ndim != 2 or scale.ndim != 2:
        raise SafetensorsError(f"block scales need a matrix and a 2-D scale, got shapes "
                               f"{w.shape} and {scale.shape}")
    br, bc = int(block[0]), int(block[1])
    rows, cols = w.shape
    want = (-(-rows // br), -(-cols // bc))
    if scale.shape != want:
        raise SafetensorsError(f"a [{rows}, {cols}] weight in {br}x{bc} blocks needs a scale of "
                               f"shape {list(want)}, got {list(scale.shape)}")
    out = np.array(w, dtype=np.float32)  # a copy: scaled in place, one block row at a time
    scale = scale.astype(np.float32)
    for i in range(want[0]):
        out[i * br:(i + 1) * br] *= np.repeat(scale[i], bc)[:cols]
    return out


class SafetensorsFile:
    """One .safetensors file, memory-mapped. ``names`` lists its tensors;
    ``dtype(name)``, ``shape(name)``; ``raw(name)`` the stored elements
    (BF16 as uint16 bits, FP8 as uint8); ``get(name)`` float32 values."""

    def __init__(self, path: str):
        self.path = str(path)
        try:
            f = open(self.path, "rb")
        except OSError as e:
            raise SafetensorsError(f"{self.path}: {e.strerror}") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise SafetensorsError(f"{self.path}: too short for a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", f.read(8))
            if n > MAX_HEADER or 8 + n > size:
                raise SafetensorsError(f"{self.path}: header length {n} is invalid "
                                       f"(file has {size} bytes)")
            try:
                header = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise SafetensorsError(f"{self.path}: header is not valid JSON ({e})") from None
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else b""
        if not isinstance(header, dict):
            raise SafetensorsError(f"{self.path}: header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self._data_start = 8 + n
        data_len = size - self._data_start
        self._info = {}
        for name, info in header.items():
            try:
                dtype = info["dtype"]
                shape = [int(d) for d in info["shape"]]
                begin, end = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise SafetensorsError(f"{self.path}: bad header entry for tensor {name!r}") from None
            if dtype not in _DTYPES:
                raise SafetensorsError(f"{self.path}: tensor {name!r} has unsupported dtype {dtype}")
            count = 1
            for d in shape:
                if d < 0:
                    raise SafetensorsError(f"{self.path}: tensor {name!r} has a negative dimension")
                count *= d
            nbytes = count * np.dtype(_DTYPES[dtype]).itemsize
            if not (0 <= begin <= end <= data_len) or end - begin != nbytes:
                raise SafetensorsError(f"{self.path}: tensor {name!r} ({dtype} {shape}) has data offsets "
                                       f"[{begin}, {end}] that do not fit its size {nbytes} or the file")
            self._info[name] = (dtype, tuple(shape), begin, count)

    @property
    def names(self) -> list:
        return list(self._info)

    def __contains__(self, name) -> bool:
        return name in self._info

    def dtype(self, name: str) -> str:
        return self._info[name][0]

    def shape(self, name: str) -> tuple:
        return self._info[name][1]

    def raw(self, name: str) -> np.ndarray:
        """The stored elements (read-only view of the mapping)."""
        dtype, shape, begin, count = self._info[name]
        a = np.frombuffer(self._map, dtype=_DTYPES[dtype], count=count,
                          offset=self._data_start + begin)
        return a.reshape(shape)

    def get(self, name: str) -> np.ndarray:
        """float32 values (integers are converted too)."""
        dtype = self._info[name][0]
        a = self.raw(name)
        if dtype == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        if dtype in ("F8_E4M3", "F8_E5M2"):
            return decode_fp8(a, dtype)
        return a.astype(np.float32)

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            try:
                self._map.close()
            except BufferError:  # views still alive: the GC closes it later
                pass


class Checkpoint:
    """The safetensors of a checkpoint directory: ``model.safetensors``, the
    shards of ``model.safetensors.index.json``, or else every ``*.safetensors``
    in it. Tensor names must be unique across files."""

    def __init__(self, directory: str):
        self.dir = str(directory)
        index = os.path.join(self.dir, "model.safetensors.index.json")
        if os.path.isfile(index):
            try:
                with open(index, encoding="utf-8") as f:
                    wm = json.load(f)["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise SafetensorsError(f"{index}: cannot read its weight_map ({e})") from None
            files = sorted(set(wm.values()))
        else:
            wm = None
            files = sorted(p for p in os.listdir(self.dir) if p.endswith(".safetensors"))
        if not files:
            raise SafetensorsError(f"{self.dir}: no .safetensors files (and no model.safetensors.index.json)")
        self.files = {}
        self._where = {}
        for fn in files:
            path = os.path.join(self.dir, fn)
            if not os.path.isfile(path):
                raise SafetensorsError(f"{path}: listed in the index but missing")
            st = SafetensorsFile(path)
            self.files[fn] = st
            for name in st.names:
                if name in self._where:
                    raise SafetensorsError(f"tensor {name!r} is in both {self._where[name]} and {fn}")
                self._where[name] = fn
        if wm is not None:
            for name, fn in wm.items():
                if self._where.get(name) != fn:
                    raise SafetensorsError(f"{index}: tensor {name!r} is listed in {fn} but "
                                           f"{'is in ' + self._where[name] if name in self._where else 'not found'}")

    @property
    def names(self) -> list:
        return list(self._where)

    def __contains__(self, name) -> bool:
        return name in self._where

    def file_of(self, name: str) -> SafetensorsFile:
        try:
            return self.files[self._where[name]]
        except KeyError:
            raise SafetensorsError(f"{self.dir}: tensor {name!r} is missing") from None

    def dtype(self, name: str) -> str:
        return self.file_of(name).dtype(name)

    def shape(self, name: str) -> tuple:
        return self.file_of(name).shape(name)

    def raw(self, name: str) -> np.ndarray:
        return self.file_of(name).raw(name)

    def get(self, name: str) -> np.ndarray:
        return self.file_of(name).get(name)

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
