"""Minimal GGUF v3 writer and reader (pure Python + numpy).

This is libdsr1's own implementation of the GGUF container format, so that the
project's tools (tiny-model export, converters) do not depend on an external
``gguf`` package.

File layout (all integers little-endian)::

    magic      4 bytes  b"GGUF"
    version    u32      3
    n_tensors  u64
    n_kv       u64
    kv pairs   n_kv x { key: string, value_type: u32, value }
    tensor info n_tensors x { name: string, n_dims: u32, ne: u64[n_dims],
                              type: u32, offset: u64 }
    padding    to ``general.alignment`` (default 32)
    tensor data, each tensor starting at a multiple of the alignment
               (offsets in the tensor info are relative to the data start)

A string is ``u64 length`` + UTF-8 bytes (no terminator).  An array value is
``u32 element type`` + ``u64 count`` + elements.  ``ne[0]`` is the innermost
(contiguous) dimension: a row-major numpy array of shape ``(a, b, c)`` is
described by ``ne = [c, b, a]``.  Thus a torch ``Linear`` weight of shape
``[out, in]`` is written with ``ne = [in, out]`` and the same bytes.

Supported tensor types: F32, F16, BF16 and Q8_0 (blocks of 32 values: one f16
scale followed by 32 int8 quants, 34 bytes per block).

Example::

    w = GGUFWriter("model.gguf")
    w.add("general.architecture", "qwen2")
    w.add("qwen2.block_count", 2, GGUFValueType.UINT32)
    w.add_tensor("token_embd.weight", emb, GGMLType.F16)
    w.write()

    r = GGUFReader("model.gguf")
    r.kv["general.architecture"]        # -> "qwen2"
    r.tensor("token_embd.weight")       # -> float32 numpy array (dequantized)
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from enum import IntEnum

from ._numpy import np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
GGUF_DEFAULT_ALIGNMENT = 32

__all__ = [
    "GGUFValueType",
    "GGMLType",
    "GGUFWriter",
    "GGUFReader",
    "GGUFTensor",
    "quantize_q8_0",
    "dequantize_q8_0",
]


class GGUFValueType(IntEnum):
    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


class GGMLType(IntEnum):
    F32 = 0
    F16 = 1
    Q8_0 = 8
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ3_S = 21
    IQ2_S = 22
    IQ1_M = 29
    BF16 = 30


# struct format characters of the scalar value types
_SCALAR_FMT = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}

# numpy dtypes for fast (de)serialisation of scalar arrays
_SCALAR_NP = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.BOOL: "?",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}

# (block size in elements, bytes per block)
_TYPE_BLOCK = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.BF16: (1, 2),
    GGMLType.Q8_0: (32, 34),
    GGMLType.IQ2_XXS: (256, 66),
    GGMLType.IQ2_XS: (256, 74),
    GGMLType.IQ3_XXS: (256, 98),
    GGMLType.IQ1_S: (256, 50),
    GGMLType.IQ3_S: (256, 110),
    GGMLType.IQ2_S: (256, 82),
    GGMLType.IQ1_M: (256, 56),
}


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _pack_string(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _guess_type(value) -> GGUFValueType:
    """Default value type for a Python value (override by passing a type)."""
    if isinstance(value, bool):
        return GGUFValueType.BOOL
    if isinstance(value, int):
        return GGUFValueType.UINT32 if 0 <= value < 2**32 else GGUFValueType.INT64
    if isinstance(value, float):
        return GGUFValueType.FLOAT32
    if isinstance(value, (str, bytes)):
        return GGUFValueType.STRING
    if isinstance(value, (list, tuple, np.ndarray)):
        return GGUFValueType.ARRAY
    raise TypeError(f"cannot infer GGUF type of {type(value)!r}")


def _pack_value(value, vtype: GGUFValueType, elem_type: GGUFValueType | None) -> bytes:
    if vtype == GGUFValueType.STRING:
        return _pack_string(value)
    if vtype in _SCALAR_FMT:
        return struct.pack(_SCALAR_FMT[vtype], value)
    if vtype == GGUFValueType.ARRAY:
        items = list(value) if not isinstance(value, np.ndarray) else value
        if elem_type is None:
            if len(items) == 0:
                raise ValueError("empty array needs an explicit element type")
            first = items[0]
            elem_type = _guess_type(first.item() if isinstance(first, np.generic) else first)
            if elem_type == GGUFValueType.UINT32 and isinstance(first, (int, np.integer)):
                # arrays of ints default to INT32 (llama.cpp convention)
                elem_type = GGUFValueType.INT32
        out = struct.pack("<IQ", int(elem_type), len(items))
        if elem_type in _SCALAR_NP:
            out += np.asarray(items, dtype=_SCALAR_NP[elem_type]).tobytes()
        elif elem_type == GGUFValueType.STRING:
            out += b"".join(_pack_string(s) for s in items)
        else:
            raise ValueError(f"unsupported array element type {elem_type!r}")
        return out
    raise ValueError(f"unsupported value type {vtype!r}")


# ---------------------------------------------------------------- quantisation

def quantize_q8_0(x: np.ndarray) -> bytes:
    """Q8_0: per block of 32 values, d = max|x|/127 (stored f16), q = round(x/d)."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 32)
    amax = np.abs(x).max(axis=1, keepdims=True)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    q = np.clip(np.rint(x * inv), -127, 127).astype(np.int8)
    blocks = np.empty(x.shape[0], dtype=[("d", "<f2"), ("q", "i1", (32,))])
    blocks["d"] = d[:, 0].astype(np.float16)
    blocks["q"] = q
    return blocks.tobytes()


def dequantize_q8_0(raw: bytes | np.ndarray, n: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=[("d", "<f2"), ("q", "i1", (32,))], count=n // 32)
    return (blocks["d"].astype(np.float32)[:, None] * blocks["q"].astype(np.float32)).reshape(-1)


def _f32_to_bf16_bytes(x: np.ndarray) -> bytes:
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    # round to nearest even
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


def _bf16_bytes_to_f32(raw, n: int) -> np.ndarray:
    u = np.frombuffer(raw, dtype="<u2", count=n).astype(np.uint32) << 16
    return u.view(np.float32)


def _encode_tensor(data: np.ndarray, ttype: GGMLType) -> bytes:
    if ttype == GGMLType.F32:
        return np.ascontiguousarray(data, dtype="<f4").tobytes()
    if ttype == GGMLType.F16:
        return np.ascontiguousarray(data, dtype="<f2").tobytes()
    if ttype == GGMLType.BF16:
        return _f32_to_bf16_bytes(data)
    if ttype == GGMLType.Q8_0:
        if data.shape[-1] % 32:
            raise ValueError("Q8_0 needs the innermost dimension to be a multiple of 32")
        return quantize_q8_0(data)
    raise ValueError(f"unsupported tensor type {ttype!r}")


# ---------------------------------------------------------------------- writer

class GGUFWriter:
    """Collects metadata and tensors in memory and writes a GGUF v3 file.

    Keys and tensors are written in insertion order.
    """

    def __init__(self, path: str, alignment: int = GGUF_DEFAULT_ALIGNMENT):
        self.path = path
        self.alignment = alignment
        self.kv: "OrderedDict[str, tuple]" = OrderedDict()
        self.tensors: "OrderedDict[str, tuple]" = OrderedDict()
        if alignment != GGUF_DEFAULT_ALIGNMENT:
            self.add("general.alignment", alignment, GGUFValueType.UINT32)

    def add(self, key: str, value, vtype: GGUFValueType | None = None,
            elem_type: GGUFValueType | None = None) -> None:
        """Add a metadata key.  ``vtype`` defaults to a guess from the value
        (int -> UINT32, float -> FLOAT32, str -> STRING, list -> ARRAY);
        ``elem_type`` is the element type of an ARRAY."""
        if key in self.kv:
            raise KeyError(f"duplicate key {key!r}")
        if vtype is None:
            vtype = _guess_type(value)
        self.kv[key] = (GGUFValueType(vtype), value,
                        None if elem_type is None else GGUFValueType(elem_type))

    def add_tensor(self, name: str, data: np.ndarray, ttype: GGMLType = GGMLType.F32) -> None:
        """Add a tensor given as a row-major numpy array; GGUF dims are the
        numpy shape reversed (ne[0] = last axis)."""
        if name in self.tensors:
            raise KeyError(f"duplicate tensor {name!r}")
        data = np.asarray(data)
        ttype = GGMLType(ttype)
        raw = _encode_tensor(data, ttype)
        ne = list(reversed(data.shape)) or [1]
        self.tensors[name] = (ne, ttype, raw)

    def add_tensor_lazy(self, name: str, shape: tuple, ttype: GGMLType, produce) -> None:
        """Add a tensor whose encoded bytes ``produce()`` returns only when
        write() reaches it, so that a file larger than memory can be written
        one tensor at a time. ``shape`` is row-major as for add_tensor;
        ``produce()`` must return exactly the bytes the shape and type take."""
        if name in self.tensors:
            raise KeyError(f"duplicate tensor {name!r}")
        ttype = GGMLType(ttype)
        block, nbytes = _TYPE_BLOCK[ttype]
        n = int(np.prod(shape))
        if shape[-1] % block:
            raise ValueError(f"{name}: innermost dimension not a multiple of {block}")
        self.tensors[name] = (list(reversed(shape)), ttype, (n // block * nbytes, produce))

    def _header(self) -> bytes:
        """Everything before the tensor data, padded to the alignment."""
        out = bytearray()
        out += GGUF_MAGIC
        out += struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv))
        for key, (vtype, value, elem_type) in self.kv.items():
            out += _pack_string(key)
            out += struct.pack("<I", int(vtype))
            out += _pack_value(value, vtype, elem_type)
        offset = 0
        for name, (ne, ttype, raw) in self.tensors.items():
            out += _pack_string(name)
            out += struct.pack("<I", len(ne))
            out += struct.pack(f"<{len(ne)}Q", *ne)
            out += struct.pack("<IQ", int(ttype), offset)
            offset = _align(offset + _raw_size(raw), self.alignment)
        out += b"\0" * (_align(len(out), self.alignment) - len(out))
        return bytes(out)

    def _chunks(self):
        """The file as a sequence of byte strings (lazy tensors produced as
        they come)."""
        head = self._header()
        yield head
        pos = 0
        for ne, ttype, raw in self.tensors.values():
            pad = _align(pos, self.alignment) - pos
            if pad:
                yield b"\0" * pad
            pos += pad
            data = raw if isinstance(raw, (bytes, bytearray)) else raw[1]()
            if len(data) != _raw_size(raw):
                raise ValueError(f"tensor produced {len(data)} bytes, expected {_raw_size(raw)}")
            yield data
            pos += len(data)
        pad = _align(len(head) + pos, self.alignment) - (len(head) + pos)
        if pad:
            yield b"\0" * pad

    def to_bytes(self) -> bytes:
        return b"".join(self._chunks())

    def write(self) -> int:
        """Write the file (one tensor in memory at a time); returns its size
        in bytes."""
        n = 0
        with open(self.path, "wb") as f:
            for chunk in self._chunks():
                f.write(chunk)
                n += len(chunk)
        return n


def _raw_size(raw) -> int:
    """Bytes of a tensor's data: encoded bytes, or (size, produce) of a lazy one."""
    return len(raw) if isinstance(raw, (bytes, bytearray)) else raw[0]


# ---------------------------------------------------------------------- reader

class GGUFTensor:
    __slots__ = ("name", "ne", "type", "offset", "_raw")

    def __init__(self, name, ne, ttype, offset, raw):
        self.name, self.ne, self.type, self.offset, self._raw = name, ne, ttype, offset, raw

    @property
    def shape(self) -> tuple:
        """numpy shape (ne reversed)."""
        return tuple(reversed(self.ne))

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.ne:
            n *= d
        return n

    @property
    def raw(self) -> memoryview:
        return self._raw

    def numpy(self) -> np.ndarray:
        """The tensor as a float32 numpy array of shape ``self.shape``."""
        n = self.n_elements
        if self.type == GGMLType.F32:
            a = np.frombuffer(self._raw, dtype="<f4", count=n)
        elif self.type == GGMLType.F16:
            a = np.frombuffer(self._raw, dtype="<f2", count=n).astype(np.float32)
        elif self.type == GGMLType.BF16:
            a = _bf16_bytes_to_f32(self._raw, n)
        elif self.type == GGMLType.Q8_0:
            a = dequantize_q8_0(self._raw, n)
        else:
            raise ValueError(f"unsupported tensor type {self.type}")
        return a.reshape(self.shape).astype(np.float32, copy=False)


class GGUFReader:
    """Parses a GGUF v3 file (fully in memory).

    ``kv``: OrderedDict key -> Python value (arrays become lists);
    ``kv_types``: key -> (value type, element type or None);
    ``tensors``: OrderedDict name -> GGUFTensor.
    """

    def __init__(self, path: str):
        with open(path, "rb") as f:
            self.data = f.read()
        self._pos = 0
        if self._take(4) != GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file")
        (self.version,) = self._unpack("<I")
        if self.version != GGUF_VERSION:
            raise ValueError(f"{path}: unsupported GGUF version {self.version}")
        n_tensors, n_kv = self._unpack("<QQ")
        self.kv: "OrderedDict[str, object]" = OrderedDict()
        self.kv_types = {}
        for _ in range(n_kv):
            key = self._string()
            (vtype,) = self._unpack("<I")
            vtype = GGUFValueType(vtype)
            elem = None
            if vtype == GGUFValueType.ARRAY:
                elem, count = self._unpack("<IQ")
                elem = GGUFValueType(elem)
                value = self._array(elem, count)
            else:
                value = self._value(vtype)
            self.kv[key] = value
            self.kv_types[key] = (vtype, elem)
        self.alignment = int(self.kv.get("general.alignment", GGUF_DEFAULT_ALIGNMENT))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            (n_dims,) = self._unpack("<I")
            ne = list(self._unpack(f"<{n_dims}Q"))
            ttype, offset = self._unpack("<IQ")
            infos.append((name, ne, GGMLType(ttype), offset))
        self.data_start = _align(self._pos, self.alignment)
        mv = memoryview(self.data)
        self.tensors: "OrderedDict[str, GGUFTensor]" = OrderedDict()
        for name, ne, ttype, offset in infos:
            if offset % self.alignment:
                raise ValueError(f"tensor {name} misaligned")
            n = 1
            for d in ne:
                n *= d
            bs, bb = _TYPE_BLOCK[ttype]
            nbytes = n // bs * bb
            start = self.data_start + offset
            if start + nbytes > len(self.data):
                raise ValueError(f"tensor {name} extends past end of file")
            self.tensors[name] = GGUFTensor(name, ne, ttype, offset, mv[start:start + nbytes])

    # -- low-level parsing helpers
    def _take(self, n: int) -> bytes:
        b = self.data[self._pos:self._pos + n]
        if len(b) != n:
            raise ValueError("unexpected end of file")
        self._pos += n
        return b

    def _unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self._take(size))

    def _string(self) -> str:
        (n,) = self._unpack("<Q")
        return self._take(n).decode("utf-8")

    def _value(self, vtype: GGUFValueType):
        if vtype == GGUFValueType.STRING:
            return self._string()
        if vtype in _SCALAR_FMT:
            return self._unpack(_SCALAR_FMT[vtype])[0]
        raise ValueError(f"unsupported value type {vtype}")

    def _array(self, elem: GGUFValueType, count: int):
        if elem in _SCALAR_NP:
            dt = np.dtype(_SCALAR_NP[elem])
            a = np.frombuffer(self._take(dt.itemsize * count), dtype=dt)
            return a.tolist()
        if elem == GGUFValueType.STRING:
            return [self._string() for _ in range(count)]
        if elem == GGUFValueType.ARRAY:
            out = []
            for _ in range(count):
                e, c = self._unpack("<IQ")
                out.append(self._array(GGUFValueType(e), c))
            return out
        raise ValueError(f"unsupported array element type {elem}")

    # -- convenience
    def tensor(self, name: str) -> np.ndarray:
        return self.tensors[name].numpy()


def _selftest() -> None:
    import os
    import tempfile

    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 64)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.gguf")
        w = GGUFWriter(p)
        w.add("general.architecture", "test")
        w.add("u32", 7)
        w.add("f32", 1.5)
        w.add("b", True)
        w.add("i64", -5, GGUFValueType.INT64)
        w.add("strs", ["a", "b c", "\u00e9"])
        w.add("ints", [1, -2, 3])
        w.add_tensor("f32", a)
        w.add_tensor("f16", a, GGMLType.F16)
        w.add_tensor("bf16", a, GGMLType.BF16)
        w.add_tensor("q8", a, GGMLType.Q8_0)
        w.add_tensor("v", a[0, :5])
        w.add_tensor_lazy("lazy", (3, 64), GGMLType.F16, lambda: a.astype("<f2").tobytes())
        w.add_tensor("after", a[1])
        w.write()
        r = GGUFReader(p)
        assert r.kv["u32"] == 7 and r.kv["f32"] == 1.5 and r.kv["b"] is True
        assert r.kv["i64"] == -5 and r.kv["strs"] == ["a", "b c", "\u00e9"]
        assert r.kv["ints"] == [1, -2, 3]
        assert r.kv_types["ints"] == (GGUFValueType.ARRAY, GGUFValueType.INT32)
        assert r.tensors["f32"].ne == [64, 3]
        assert np.array_equal(r.tensor("f32"), a)
        assert np.allclose(r.tensor("f16"), a, atol=1e-3)
        assert np.allclose(r.tensor("bf16"), a, atol=2e-2)
        assert np.allclose(r.tensor("q8"), a, atol=np.abs(a).max() / 100)
        assert np.array_equal(r.tensor("v"), a[0, :5])
        assert np.array_equal(r.tensor("lazy"), a.astype(np.float16).astype(np.float32))
        assert np.array_equal(r.tensor("after"), a[1])
        w = GGUFWriter(p)
        w.add_tensor_lazy("short", (64,), GGMLType.F32, lambda: b"\0" * 8)
        try:
            w.write()
            raise AssertionError("a lazy tensor of the wrong size was written")
        except ValueError:
            pass
    print("gguf selftest ok")


if __name__ == "__main__":
    _selftest()
