"""Python bindings of libdsr1 (ctypes; no compiled extension).

Run DeepSeek-R1 and its distilled models from Python through the library's C
API (include/dsr1.h). A thin, safe layer:

* every non-OK status raises :class:`DSR1Error` (``.status``, ``.message``);
* handles are freed by ``close()``, ``with`` blocks or garbage collection, and
  closing an object first closes what borrows it (a Model closes its
  Contexts, a Context its Generations and Chats), so a use after free is an
  exception, never a crash;
* callbacks never let a Python exception escape into C: the exception cancels
  the operation and is re-raised once the C call has returned;
* evaluations can be interrupted: ``Context.cancel()`` from any thread, a
  Context's ``abort`` callback, or Ctrl-C (KeyboardInterrupt) stop a running
  evaluation at the next layer (a long prompt does not have to finish first),
  and the context keeps what was evaluated completely;
* an exception raised by a call on a handle carries that handle's message
  (``Context.errmsg`` and the others).

Example::

    import dsr1

    with dsr1.Model.load("DeepSeek-R1-Distill-Qwen-1.5B-Q8_0.gguf") as model:
        ctx = dsr1.Context(model, n_ctx=4096)
        smp = dsr1.Sampler(model)              # R1's defaults: T 0.6, top-p 0.95
        prompt = model.chat_tokenize([{"role": "user", "content": "2+2?"}])
        out = dsr1.generate(ctx, smp, prompt, max_new_tokens=512,
                            on_event=lambda ev: print(ev.text, end="", flush=True))
        print(out.answer, out.stop_reason)

The shared library is looked up lazily (``$DSR1_LIBRARY``, then the system
library path, then ``build/`` of this source tree); see :func:`load_library`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import threading
import traceback
import weakref
from collections import deque
from collections.abc import Mapping
from ctypes import POINTER, byref, c_char_p, c_float, c_int32, c_size_t, sizeof
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Union

from . import _capi
from ._capi import ABI_VERSION, LibraryError, find_library, load_library

try:  # optional: logits as numpy arrays, numpy inputs without copies
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the environment
    _np = None

__all__ = [
    "ABI_VERSION", "BudgetAction", "BufferTooSmallError", "CancelledError", "Chat", "ChatMessage",
    "Completion", "Context", "ContextFullError", "CtxPolicy", "DSR1Error", "DSR1FileNotFoundError",
    "DSR1IsADirectoryError", "DSR1OSError", "DSR1PermissionError", "FormatError", "InternalError",
    "InvalidArgumentError", "NumericError", "OutOfMemoryError", "StateError", "UnsupportedError",
    "Decoder", "Event", "EventType", "Generation", "GenerationStats", "KVType", "LibraryError", "LogLevel",
    "Grammar", "MemoryEstimate", "Model", "Progress", "Sampler", "Special", "Status", "Step", "StopReason",
    "TensorInfo", "TokenAttr", "Type",
    "abi_version", "backend_available", "backends", "devices", "estimate_memory", "find_library", "generate",
    "json_schema_to_grammar", "load_library",
    "status_string", "stream", "type_name", "version",
]

# ---------------------------------------------------------------------------
# Enums
# ---------------------------------------------------------------------------


class Status(IntEnum):
    OK = 0
    ERR_INVALID_ARGUMENT = 1
    ERR_IO = 2
    ERR_FORMAT = 3
    ERR_UNSUPPORTED = 4
    ERR_OUT_OF_MEMORY = 5
    ERR_BUFFER_TOO_SMALL = 6
    ERR_CONTEXT_FULL = 7
    ERR_NUMERIC = 8
    ERR_CANCELLED = 9
    ERR_STATE = 10
    ERR_INTERNAL = 11


class LogLevel(IntEnum):
    ERROR = 0
    WARN = 1
    INFO = 2
    DEBUG = 3


class Type(IntEnum):
    """Tensor weight types (numbered as in GGUF / ggml)."""
    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    IQ4_NL = 20
    IQ4_XS = 23
    BF16 = 30


class Special(IntEnum):
    BOS = 0
    EOS = 1
    PAD = 2
    USER = 3
    ASSISTANT = 4
    THINK_BEGIN = 5
    THINK_END = 6


class TokenAttr(IntEnum):
    UNDEFINED = 0
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


class EventType(IntEnum):
    REASONING_BEGIN = 0
    REASONING_TEXT = 1
    REASONING_END = 2
    ANSWER_TEXT = 3
    DONE = 4


class StopReason(IntEnum):
    NONE = 0
    EOS = 1
    LENGTH = 2
    STRING = 3
    CANCELLED = 4
    BUDGET = 5
    CONTEXT_FULL = 6


class BudgetAction(IntEnum):
    CLOSE = 0
    STOP = 1


class CtxPolicy(IntEnum):
    STOP = 0   # stop with StopReason.CONTEXT_FULL
    SHIFT = 1  # make room with context shifts and go on


class KVType(IntEnum):
    """KV cache element type (dsr1_kv_type). DEFAULT is F16: half the
    memory of F32, logits within about 2e-3 of the f32 cache's."""
    DEFAULT = 0
    F32 = 1
    F16 = 2


def _enum(cls, value):
    """value as cls when it is a known member, else the plain int."""
    try:
        return cls(value)
    except ValueError:
        return int(value)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def _lib() -> _capi.Library:
    return _capi.lib()


def _str(b: Optional[bytes]) -> str:
    return b.decode("utf-8", errors="replace") if b is not None else ""


class DSR1Error(Exception):
    """A libdsr1 call failed.

    ``status`` is the :class:`Status` (a plain int for codes this binding does
    not know), ``message`` the library's message: the failing handle's
    (dsr1_context_errmsg() and the like) for a call on a Context, Sampler,
    Generation, Chat or Decoder, else dsr1_last_error()'s. What is
    raised is the subclass for the status, which also derives from the
    matching built-in exception, so ``except FileNotFoundError`` or ``except
    ValueError`` work as they would for Python's own functions:

    ===========================  ======================  ==========================
    status                       class                   also a
    ===========================  ======================  ==========================
    ERR_INVALID_ARGUMENT         InvalidArgumentError    ValueError
    ERR_IO                       DSR1OSError             OSError (FileNotFoundError,
                                                         PermissionError,
                                                         IsADirectoryError for a
                                                         model path that is one)
    ERR_FORMAT                   FormatError             ValueError
    ERR_UNSUPPORTED              UnsupportedError        NotImplementedError
    ERR_OUT_OF_MEMORY            OutOfMemoryError        MemoryError
    ERR_BUFFER_TOO_SMALL         BufferTooSmallError     BufferError
    ERR_CONTEXT_FULL             ContextFullError        OverflowError
    ERR_NUMERIC                  NumericError            ArithmeticError
    ERR_CANCELLED                CancelledError          (none)
    ERR_STATE                    StateError              RuntimeError
    ERR_INTERNAL                 InternalError           RuntimeError
    ===========================  ======================  ==========================
    """

    def __init__(self, status: int, message: str = ""):
        self.status = _enum(Status, status)
        self.message = message
        name = self.status.name if isinstance(self.status, Status) else f"status {status}"
        super().__init__(f"{name}: {message}" if message else name)

    def __str__(self) -> str:  # OSError's own __str__ would show (errno, strerror)
        return self.args[0] if self.args else ""

    @staticmethod
    def from_status(status: int, message: str = "") -> "DSR1Error":
        """The exception of the class that matches status."""
        return _ERROR_CLASSES.get(int(status), DSR1Error)(status, message)

    @classmethod
    def _last(cls, status: int) -> "DSR1Error":
        return DSR1Error.from_status(status, _str(_lib().last_error()))


class InvalidArgumentError(DSR1Error, ValueError):
    """DSR1_ERR_INVALID_ARGUMENT."""


class DSR1OSError(DSR1Error, OSError):
    """DSR1_ERR_IO: a file cannot be opened, read or mapped."""


class DSR1FileNotFoundError(DSR1OSError, FileNotFoundError):
    """A model path that does not exist."""


class DSR1PermissionError(DSR1OSError, PermissionError):
    """A model path that cannot be read."""


class DSR1IsADirectoryError(DSR1OSError, IsADirectoryError):
    """A model path that is a directory."""


class FormatError(DSR1Error, ValueError):
    """DSR1_ERR_FORMAT: a model file is corrupt or inconsistent."""


class UnsupportedError(DSR1Error, NotImplementedError):
    """DSR1_ERR_UNSUPPORTED: valid, but not supported here."""


class OutOfMemoryError(DSR1Error, MemoryError):
    """DSR1_ERR_OUT_OF_MEMORY."""


class BufferTooSmallError(DSR1Error, BufferError):
    """DSR1_ERR_BUFFER_TOO_SMALL."""


class ContextFullError(DSR1Error, OverflowError):
    """DSR1_ERR_CONTEXT_FULL: the tokens do not fit in the context."""


class NumericError(DSR1Error, ArithmeticError):
    """DSR1_ERR_NUMERIC: NaN or infinite values where numbers were expected."""


class CancelledError(DSR1Error):
    """DSR1_ERR_CANCELLED."""


class StateError(DSR1Error, RuntimeError):
    """DSR1_ERR_STATE: the call is not valid in the object's current state."""


class InternalError(DSR1Error, RuntimeError):
    """DSR1_ERR_INTERNAL."""


_ERROR_CLASSES = {
    Status.ERR_INVALID_ARGUMENT: InvalidArgumentError,
    Status.ERR_IO: DSR1OSError,
    Status.ERR_FORMAT: FormatError,
    Status.ERR_UNSUPPORTED: UnsupportedError,
    Status.ERR_OUT_OF_MEMORY: OutOfMemoryError,
    Status.ERR_BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.ERR_CONTEXT_FULL: ContextFullError,
    Status.ERR_NUMERIC: NumericError,
    Status.ERR_CANCELLED: CancelledError,
    Status.ERR_STATE: StateError,
    Status.ERR_INTERNAL: InternalError,
}


def _check(status: int) -> None:
    if status != Status.OK:
        raise DSR1Error._last(status)


def _check_on(handle: "_Handle", status: int) -> None:
    """_check for a call on handle: the exception carries the handle's own
    message (a call refused because the handle was busy leaves that to the
    running call: then the thread's message is the one about the refusal)."""
    if status == Status.OK:
        return
    message = handle.errmsg if handle._ptr is not None and status != Status.ERR_STATE else ""
    raise DSR1Error.from_status(status, message or _str(_lib().last_error()))


def _check_path(status: int, path) -> None:
    """_check for a call that opened path: an I/O failure whose cause the
    file system shows is raised as FileNotFoundError / PermissionError /
    IsADirectoryError (with errno and filename set, as open() would)."""
    if status != Status.ERR_IO:
        _check(status)
        return
    message = _str(_lib().last_error())
    cls, code = DSR1OSError, None
    if not os.path.lexists(path):
        cls, code = DSR1FileNotFoundError, errno.ENOENT
    elif os.path.isdir(path):
        cls, code = DSR1IsADirectoryError, errno.EISDIR
    elif not os.access(path, os.R_OK):
        cls, code = DSR1PermissionError, errno.EACCES
    e = cls(status, message)
    if code is not None:
        e.errno, e.strerror = code, os.strerror(code)
    e.filename = os.fspath(path)
    raise e


class _Failure:
    """The first exception raised by a callback (or a Ctrl-C) during one C
    call: the callback makes the library stop, and it is re-raised once the
    call has returned, so no exception ever crosses into C."""

    def __init__(self):
        self.exc: Optional[BaseException] = None

    def fail(self, e: BaseException) -> None:
        """Record the exception to re-raise (the first one wins); the next
        callback stops the call."""
        if self.exc is None:
            self.exc = e

    def reraise(self) -> None:
        if self.exc is not None:
            e, self.exc = self.exc, None
            raise e


# ---------------------------------------------------------------------------
# Library-level functions
# ---------------------------------------------------------------------------


def version() -> str:
    """The "MAJOR.MINOR.PATCH" of the loaded library."""
    return _str(_lib().version())


def abi_version() -> int:
    return _lib().abi_version()


def status_string(status: int) -> str:
    return _str(_lib().status_string(int(status)))


def type_name(type_id: int) -> str:
    """"q4_K", "f16", ...; "unknown" for ids the library does not know."""
    return _str(_lib().type_name(int(type_id)))


def backends() -> list:
    """Names of the compute backends compiled in, best first."""
    lib = _lib()
    return [_str(lib.backend_name(i)) for i in range(lib.backend_count())]


def backend_available(name: str) -> bool:
    return bool(_lib().backend_available(name.encode()))


def devices() -> list:
    """The devices a model can offload layers to (``Model.load(...,
    n_gpu_layers=N, device=...)``): one dict per device with ``index``,
    ``name``, ``backend``, ``is_cpu`` (a CPU-type device such as Mesa's
    lavapipe) and ``memory`` (bytes). Empty without a Vulkan loader, driver
    or device."""
    lib = _lib()
    out = []
    for i in range(lib.device_count()):
        p = _capi.dsr1_device_props()
        p.size = ctypes.sizeof(p)
        _check(lib.device_info(i, ctypes.byref(p)))
        out.append({"index": i, "name": _str(p.name), "backend": _str(p.backend), "is_cpu": bool(p.is_cpu),
                    "memory": int(p.memory)})
    return out


# ---------------------------------------------------------------------------
# Buffer protocols
# ---------------------------------------------------------------------------


def _save_blob(call) -> bytes:
    """A state blob: call(buf, buf_size, byref(n)) asked for its exact size
    first, then written (dsr1_context_state_save / dsr1_chat_state_save)."""
    need = c_size_t(0)
    st = call(None, 0, byref(need))
    if st != Status.ERR_BUFFER_TOO_SMALL:
        _check(st)
    buf = ctypes.create_string_buffer(max(need.value, 1))
    _check(call(buf, need.value, byref(need)))
    return buf.raw[:need.value]

_MAX_RETRIES = 8


def _read_bytes(call, guess: int = 256) -> bytes:
    """Run call(buf, buf_size, byref(n)) with a growing buffer until it fits.

    Whatever a function counts in its reported need (with or without the NUL),
    need + 1 bytes are enough, so one retry suffices.
    """
    n = c_size_t(0)
    size = max(int(guess), 1)
    for _ in range(_MAX_RETRIES):
        buf = ctypes.create_string_buffer(size)
        st = call(buf, size, byref(n))
        if st == Status.OK:
            return buf.raw[: n.value]
        if st != Status.ERR_BUFFER_TOO_SMALL:
            raise DSR1Error._last(st)
        size = n.value + 1 if n.value + 1 > size else size * 2
    raise InternalError(Status.ERR_INTERNAL, "the needed buffer size kept growing")


def _read_tokens(call, guess: int) -> list:
    """Run call(tokens, capacity, byref(n)) with a growing array until it fits."""
    n = c_int32(0)
    cap = max(int(guess), 1)
    for _ in range(_MAX_RETRIES):
        arr = (c_int32 * cap)()
        st = call(arr, cap, byref(n))
        if st == Status.OK:
            return arr[: n.value]
        if st != Status.ERR_BUFFER_TOO_SMALL:
            raise DSR1Error._last(st)
        cap = n.value if n.value > cap else cap * 2
    raise InternalError(Status.ERR_INTERNAL, "the needed token count kept growing")


_I32_MIN, _I32_MAX = -(2 ** 31), 2 ** 31 - 1


def _tokens_in(tokens):
    """(pointer, count, keepalive) for a token sequence (or one token)."""
    if _np is not None and isinstance(tokens, _np.ndarray):
        a = _np.ascontiguousarray(tokens, dtype=_np.int32).reshape(-1)
        return a.ctypes.data_as(POINTER(c_int32)), int(a.size), a
    if isinstance(tokens, int):
        tokens = (tokens,)
    tokens = [int(t) for t in tokens]
    for t in tokens:
        if not _I32_MIN <= t <= _I32_MAX:
            raise ValueError(f"token {t} does not fit in int32")
    arr = (c_int32 * len(tokens))(*tokens)
    return arr, len(tokens), arr


def _floats_in(values):
    """(pointer, count, keepalive) for float32 values (list, array, numpy)."""
    if _np is not None and isinstance(values, _np.ndarray):
        a = _np.ascontiguousarray(values, dtype=_np.float32).reshape(-1)
        return a.ctypes.data_as(POINTER(c_float)), int(a.size), a
    if isinstance(values, _FloatPtr):
        return values._ptr, values._n, values
    try:
        mv = memoryview(values)
    except TypeError:
        mv = None
    if mv is not None and mv.format == "f" and mv.c_contiguous and not mv.readonly:
        arr = (c_float * (mv.nbytes // 4)).from_buffer(values)  # array('f'): no copy
        return arr, len(arr), (arr, values)
    values = list(values)
    arr = (c_float * len(values))(*values)
    return arr, len(values), arr


class _FloatPtr:
    """Internal: logits straight from the library (no copy), for Sampler."""

    def __init__(self, ptr, n):
        self._ptr, self._n = ptr, n


def _text_in(text) -> bytes:
    if isinstance(text, str):
        return text.encode("utf-8")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"expected str or bytes, not {type(text).__name__}")


def _cstr_in(text, what: str) -> bytes:
    b = _text_in(text)
    if b"\0" in b:
        raise ValueError(f"{what} contains a NUL character")
    return b


# ---------------------------------------------------------------------------
# Handle lifetime
# ---------------------------------------------------------------------------


class _Handle:
    """Owns one C handle. Objects that borrow it register as dependents and
    are closed first when it closes."""

    _kind = "object"

    def __init__(self):
        self._ptr = None
        self._dependents = weakref.WeakSet()
        self._capi = _lib()

    def _adopt(self, dependent: "_Handle") -> None:
        self._dependents.add(dependent)

    @property
    def _p(self):
        if self._ptr is None:
            raise ValueError(f"operation on a closed {type(self).__name__}")
        return self._ptr

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _free(self, ptr) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    _errmsg_fn: Optional[str] = None  # the C *_errmsg function of the handle type

    @property
    def errmsg(self) -> str:
        """The message of the last call on this handle ("" after a success)."""
        if self._errmsg_fn is None or self._ptr is None:
            return ""
        return _str(getattr(self._capi, self._errmsg_fn)(self._ptr))

    def close(self) -> None:
        """Free the C object (and first everything that borrows it). Idempotent."""
        deps = getattr(self, "_dependents", None)
        if deps:
            for d in list(deps):
                d.close()
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr is not None:
            self._free(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing useful to do
            pass


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


class TensorInfo(NamedTuple):
    name: str
    type: Union[Type, int]
    type_name: str
    shape: tuple  # ne[0..n_dims): ne[0] is the contiguous dimension
    n_bytes: int

    @property
    def n_dims(self) -> int:
        return len(self.shape)


class ChatMessage(NamedTuple):
    """A chat message. An assistant message that calls tools is given as a
    dict (as chat templates take them): {"role": "assistant", "content":
    None, "tool_calls": [...]}, each call {"type": "function", "function":
    {"name": ..., "arguments": ...}}, {"name": ..., "arguments": ...} or a
    (name, arguments) pair (arguments: JSON text, or a value written with
    json.dumps); objects with a tool_calls attribute work too."""
    role: str
    content: str


class Metadata(Mapping):
    """The GGUF key/value pairs of a model, values rendered as text by the
    library (numbers in decimal, arrays as "[a, b, ...]", long ones cut)."""

    def __init__(self, model: "Model"):
        self._model = model

    def __getitem__(self, key: str) -> str:
        if not isinstance(key, str) or "\0" in key:
            raise KeyError(key)
        m = self._model
        lib, p = m._capi, m._p
        kb = key.encode("utf-8")
        try:
            return _str(_read_bytes(lambda b, s, n: lib.model_meta_value(p, kb, b, s, n)))
        except DSR1Error as e:
            if e.status == Status.ERR_INVALID_ARGUMENT:
                raise KeyError(key) from None
            raise

    def __iter__(self) -> Iterator[str]:
        m = self._model
        lib = m._capi
        for i in range(len(self)):
            p = m._p
            yield _str(_read_bytes(lambda b, s, n: lib.model_meta_key(p, i, b, s, n), 64))

    def __len__(self) -> int:
        return int(self._model._capi.model_meta_count(self._model._p))

    def __repr__(self) -> str:
        return f"<dsr1.Metadata of {len(self)} keys>"


def _tool_call_in(call):
    """(type, name, arguments) as bytes for one tool call."""
    import json
    if isinstance(call, Mapping):
        kind = call.get("type", "function")
        fn = call.get("function", call)
        name, args = fn["name"], fn["arguments"]
    else:
        kind, (name, args) = "function", call
    if not isinstance(args, (str, bytes)):
        args = json.dumps(args)
    return (_cstr_in(kind, "tool call type"), _cstr_in(name, "tool call name"),
            _cstr_in(args, "tool call arguments"))


def _messages_in(messages):
    """(ctypes array of dsr1_message, count, keepalive) for chat messages
    given as dicts, (role, content) pairs, or objects with role and content
    (and tool_calls) attributes."""
    items = []
    for m in messages:
        calls = ()
        if isinstance(m, Mapping):
            role, content, calls = m["role"], m.get("content"), m.get("tool_calls") or ()
        elif isinstance(m, (tuple, list)):
            role, content = m
        else:
            role, content, calls = m.role, m.content, getattr(m, "tool_calls", ()) or ()
        content = None if content is None else _cstr_in(content, "message content")
        items.append((_cstr_in(role, "role"), content, [_tool_call_in(c) for c in calls]))
    arr = (_capi.dsr1_message * len(items))()
    keep = [arr, items]
    for i, (r, c, calls) in enumerate(items):
        arr[i].size = sizeof(_capi.dsr1_message)
        arr[i].role = r
        arr[i].content = c
        if calls:
            ca = (_capi.dsr1_tool_call * len(calls))()
            for j, (kind, name, args) in enumerate(calls):
                ca[j].size = sizeof(_capi.dsr1_tool_call)
                ca[j].type, ca[j].name, ca[j].arguments = kind, name, args
            arr[i].tool_calls = ca
            arr[i].n_tool_calls = len(calls)
            keep.append(ca)
    return arr, len(items), keep


class Progress(NamedTuple):
    """How far a load is (dsr1_progress): tensor data bytes validated (or read,
    with preload) and tensors, of the model's totals."""
    bytes_done: int
    bytes_total: int
    tensors_done: int
    tensors_total: int


class _ProgressHook:
    """The load's progress callback: calls the Python one (a truthy return
    cancels), and cancels the load for an exception it raises or a Ctrl-C
    (installed without a Python callback too, so Ctrl-C stops a long load)."""

    def __init__(self, fn, sink: _Failure):
        self.fn, self.sink = fn, sink
        self.c_fn = _capi.dsr1_progress_fn(self._callback)

    def _callback(self, p, _user_data):
        if self.sink.exc is not None:
            return 1
        if self.fn is None:
            return 0
        try:
            c = p.contents
            if self.fn(Progress(int(c.bytes_done), int(c.bytes_total), int(c.tensors_done),
                                int(c.tensors_total))):
                return 1
        except BaseException as e:  # noqa: B902 - KeyboardInterrupt too
            self.sink.fail(e)
        return 1 if self.sink.exc is not None else 0


class Model(_Handle):
    """A loaded GGUF model (immutable; may be shared by threads).

    ``log`` receives the library's log lines as ``log(level, message)`` for
    levels up to ``log_level``; exceptions it raises are printed and ignored.
    ``n_gpu_layers`` and ``device`` offload layers to a device (see
    dsr1_model_params; -1: every layer); ``cpu_moe`` keeps a mixture of
    experts' routed experts on the CPU meanwhile (llama.cpp's --cpu-moe). ``progress`` is called with a
    :class:`Progress` during the load (at the start, at the end, and about
    every 1/256 of the model): a truthy return cancels the load
    (:class:`CancelledError`), and an exception it raises cancels it and
    propagates; Ctrl-C cancels it too. ``preload`` reads every weight page
    during the load, so the first evaluation does not wait for the disk.
    """

    _kind = "model"

    def __init__(self, path: Union[str, os.PathLike], *, vocab_only: bool = False,
                 log: Optional[Callable[[LogLevel, str], None]] = None,
                 log_level: Optional[int] = None, n_gpu_layers: int = 0,
                 device: Optional[str] = None, progress: Optional[Callable[[Progress], object]] = None,
                 preload: bool = False, cpu_moe: bool = False, _data: Optional[bytes] = None):
        super().__init__()
        lib = self._capi
        params, self._log_fn = self._params(vocab_only, log, log_level)
        params.n_gpu_layers = int(n_gpu_layers)
        self._device = None if device is None else str(device).encode()
        params.device = self._device
        params.preload = 1 if preload else 0
        params.cpu_moe = 1 if cpu_moe else 0
        sink = _Failure()
        hook = _ProgressHook(progress, sink)  # only called during the load
        params.progress_callback = hook.c_fn
        out = _capi.model_p()
        with _InterruptGuard(sink):
            if _data is None:
                self.path = os.fspath(path)
                st = lib.model_load(os.fsencode(path), byref(params), byref(out))
            else:
                self.path = None
                # the library uses the buffer in place until dsr1_model_free()
                self._buffer = ctypes.create_string_buffer(_data, len(_data))
                st = lib.model_load_from_memory(self._buffer, len(_data), byref(params), byref(out))
        sink.reraise()
        if _data is None:
            _check_path(st, path)
        _check(st)
        self._ptr = out

    @classmethod
    def load(cls, path: Union[str, os.PathLike], vocab_only: bool = False, **kw) -> "Model":
        """Map and validate a GGUF file (see dsr1_model_load)."""
        return cls(path, vocab_only=vocab_only, **kw)

    @classmethod
    def from_bytes(cls, data: bytes, vocab_only: bool = False, **kw) -> "Model":
        """Load from a bytes-like object (copied once into a buffer the Model owns)."""
        return cls(None, vocab_only=vocab_only, _data=bytes(data), **kw)

    @staticmethod
    def _params(vocab_only, log, log_level):
        lib = _lib()
        p = _capi.dsr1_model_params()
        lib.model_params_default(byref(p), sizeof(p))
        p.vocab_only = 1 if vocab_only else 0
        fn = None
        if log is not None:
            def tramp(level, message, _user_data):
                try:
                    log(_enum(LogLevel, level), _str(message))
                except BaseException:  # never into C
                    traceback.print_exc()
            fn = _capi.dsr1_log_fn(tramp)
            p.log_callback = fn
            if log_level is not None:
                p.log_level = int(log_level)
        return p, fn  # fn must live as long as the model

    def _free(self, ptr):
        self._capi.model_free(ptr)

    def __repr__(self):
        if self.closed:
            return "<dsr1.Model closed>"
        return f"<dsr1.Model {self.arch} n_vocab={self.n_vocab} n_layer={self.n_layer}>"

    # -- properties --------------------------------------------------------

    @property
    def arch(self) -> str:
        return _str(self._capi.model_arch(self._p))

    @property
    def n_vocab(self) -> int:
        return self._capi.model_n_vocab(self._p)

    @property
    def n_ctx_train(self) -> int:
        return self._capi.model_n_ctx_train(self._p)

    @property
    def n_embd(self) -> int:
        return self._capi.model_n_embd(self._p)

    @property
    def n_layer(self) -> int:
        return self._capi.model_n_layer(self._p)

    @property
    def n_head(self) -> int:
        return self._capi.model_n_head(self._p)

    @property
    def n_head_kv(self) -> int:
        return self._capi.model_n_head_kv(self._p)

    @property
    def n_params(self) -> int:
        return int(self._capi.model_n_params(self._p))

    @property
    def size_bytes(self) -> int:
        return int(self._capi.model_size_bytes(self._p))

    @property
    def metadata(self) -> Metadata:
        return Metadata(self)

    @property
    def tensors(self) -> list:
        lib, p = self._capi, self._p
        out = []
        for i in range(int(lib.model_tensor_count(p))):
            info = _capi.dsr1_tensor_info()
            info.size = sizeof(info)
            _check(lib.model_tensor_info(p, i, byref(info)))
            nd = min(int(info.n_dims), 4)
            out.append(TensorInfo(_str(info.name), _enum(Type, info.type), type_name(info.type),
                                  tuple(int(x) for x in info.ne[:nd]), int(info.n_bytes)))
        return out

    # -- tokenizer ---------------------------------------------------------

    def tokenize(self, text: Union[str, bytes], add_bos: bool = False,
                 parse_special: bool = False) -> list:
        """Token ids of text. Without parse_special, special-token spellings
        in the text are plain text (user input cannot inject control tokens)."""
        data = _text_in(text)
        flags = (_capi.TOKENIZE_ADD_BOS if add_bos else 0) | \
                (_capi.TOKENIZE_PARSE_SPECIAL if parse_special else 0)
        lib, p = self._capi, self._p
        return _read_tokens(lambda t, cap, n: lib.tokenize(p, data, len(data), t, cap, n, flags),
                            len(data) + 2)

    def detokenize_bytes(self, tokens, render_control: bool = False) -> bytes:
        ptr, count, _keep = _tokens_in(tokens)
        flags = _capi.PIECE_RENDER_CONTROL if render_control else 0
        lib, p = self._capi, self._p
        return _read_bytes(lambda b, s, n: lib.detokenize(p, ptr, count, b, s, n, flags),
                           count * 8 + 16)

    def detokenize(self, tokens, render_control: bool = False) -> str:
        """The text of tokens (invalid UTF-8 becomes U+FFFD)."""
        return self.detokenize_bytes(tokens, render_control).decode("utf-8", errors="replace")

    def token_to_piece(self, token: int, render_control: bool = False) -> bytes:
        """The bytes of one token (possibly part of a UTF-8 character)."""
        flags = _capi.PIECE_RENDER_CONTROL if render_control else 0
        lib, p = self._capi, self._p
        return _read_bytes(lambda b, s, n: lib.token_to_piece(p, int(token), b, s, n, flags), 32)

    def decoder(self, render_control: bool = False) -> "Decoder":
        return Decoder(self, render_control)

    def special(self, which: int) -> Optional[int]:
        """The id of a special token by role (Special), None when there is none."""
        t = self._capi.token_special(self._p, int(which))
        return None if t < 0 else int(t)

    bos = property(lambda self: self.special(Special.BOS))
    eos = property(lambda self: self.special(Special.EOS))
    pad = property(lambda self: self.special(Special.PAD))
    user = property(lambda self: self.special(Special.USER))
    assistant = property(lambda self: self.special(Special.ASSISTANT))
    think_begin = property(lambda self: self.special(Special.THINK_BEGIN))
    think_end = property(lambda self: self.special(Special.THINK_END))

    def token_attr(self, token: int) -> Union[TokenAttr, int]:
        return _enum(TokenAttr, self._capi.token_get_attr(self._p, int(token)))

    def is_eog(self, token: int) -> bool:
        return bool(self._capi.token_is_eog(self._p, int(token)))

    # -- chat format ---------------------------------------------------------

    def chat_format(self, messages, add_generation_prompt: bool = True) -> str:
        """The conversation in DeepSeek-R1's chat format, as text. messages:
        dicts with "role"/"content" (and "tool_calls", as chat templates
        take them, with content None), (role, content) pairs or ChatMessage."""
        arr, count, _keep = _messages_in(messages)
        flags = _capi.CHAT_ADD_GENERATION_PROMPT if add_generation_prompt else 0
        lib, p = self._capi, self._p
        data = _read_bytes(lambda b, s, n: lib.chat_format_messages(p, arr, count, flags, b, s, n), 1024)
        return data.decode("utf-8", errors="replace")

    def chat_tokenize(self, messages, add_generation_prompt: bool = True) -> list:
        """The same directly as tokens (markers as their ids, contents as plain text)."""
        arr, count, keep = _messages_in(messages)
        flags = _capi.CHAT_ADD_GENERATION_PROMPT if add_generation_prompt else 0
        lib, p = self._capi, self._p
        guess = sum(len(r) + len(c or b"") + sum(len(x) for call in calls for x in call) + 16 * len(calls)
                    for r, c, calls in keep[1]) + 8 * count + 8
        return _read_tokens(lambda t, cap, n: lib.chat_tokenize_messages(p, arr, count, flags, t, cap, n), guess)


class Decoder(_Handle):
    """Streaming detokenizer: push tokens one at a time, get whole characters."""

    _kind = "decoder"
    _errmsg_fn = "decoder_errmsg"

    def __init__(self, model: Model, render_control: bool = False):
        super().__init__()
        out = _capi.decoder_p()
        flags = _capi.PIECE_RENDER_CONTROL if render_control else 0
        _check(self._capi.decoder_new(model._p, flags, byref(out)))
        self._ptr = out
        self.model = model
        model._adopt(self)

    def _free(self, ptr):
        self._capi.decoder_free(ptr)

    def push(self, token: int) -> str:
        lib, p = self._capi, self._p
        return _str(_read_bytes(lambda b, s, n: lib.decoder_push(p, int(token), b, s, n), 64))

    def flush(self) -> str:
        lib, p = self._capi, self._p
        return _str(_read_bytes(lambda b, s, n: lib.decoder_flush(p, b, s, n), 16))


# ---------------------------------------------------------------------------
# Contexts
# ---------------------------------------------------------------------------


class MemoryEstimate(NamedTuple):
    """What a model and a context will cost (dsr1_memory_estimate), in bytes."""
    weight_bytes: int        # tensor data mapped from the file
    file_bytes: int          # the whole file, as mapped
    kv_bytes_per_token: int  # KV cache per token, all layers
    kv_bytes: int            # the KV cache for n_ctx tokens
    scratch_bytes: int       # activations, logits, positions, token history
    n_ctx: int               # the n_ctx the parameters resolve to
    n_batch: int             # the n_batch they resolve to


def _kv_type_in(kv_type) -> int:
    if isinstance(kv_type, str):
        names = {"f16": KVType.F16, "f32": KVType.F32, "default": KVType.DEFAULT}
        if kv_type.lower() not in names:
            raise ValueError(f"kv_type must be 'f16' or 'f32', not {kv_type!r}")
        kv_type = names[kv_type.lower()]
    return int(kv_type)  # other ints: the library refuses them (DSR1Error)


def estimate_memory(path: Union[str, os.PathLike], *, n_ctx: int = 0, n_batch: int = 0,
                    kv_type: Union[KVType, int, str] = KVType.DEFAULT,
                    vocab_only: bool = False) -> MemoryEstimate:
    """What loading path and a Context(n_ctx, n_batch, kv_type) of it would
    cost, from the file's header alone (dsr1_model_estimate_memory): the
    weights are not read."""
    lib = _lib()
    mp = _capi.dsr1_model_params()
    lib.model_params_default(byref(mp), sizeof(mp))
    mp.vocab_only = 1 if vocab_only else 0
    cp = _capi.dsr1_context_params()
    lib.context_params_default(byref(cp), sizeof(cp))
    cp.n_ctx, cp.n_batch, cp.kv_type = int(n_ctx), int(n_batch), _kv_type_in(kv_type)
    e = _capi.dsr1_memory_estimate()
    e.size = sizeof(e)
    _check_path(lib.model_estimate_memory(os.fsencode(path), byref(mp), byref(cp), byref(e)), path)
    return MemoryEstimate(int(e.weight_bytes), int(e.file_bytes), int(e.kv_bytes_per_token), int(e.kv_bytes),
                          int(e.scratch_bytes), int(e.n_ctx), int(e.n_batch))


class _AbortHook:
    """A context's abort callback (dsr1_abort_fn), polled by the library
    before every layer of every evaluation on the context: it stops the
    evaluation when the host's abort callable says so, when cancel() was
    called, or when the call running on the context recorded an exception
    (a Ctrl-C, an event handler's). Costs one Python call (and the GIL) per
    layer."""

    def __init__(self, fn):
        self.fn = fn
        self.sink: Optional[_Failure] = None  # the call running on the context
        self.requested = False                # Context.cancel() during that call
        self.c_fn = _capi.dsr1_abort_fn(self._callback)

    def _callback(self, _user_data):
        sink = self.sink
        try:
            if self.fn is not None and self.fn():
                return 1
        except BaseException as e:  # noqa: B902 - never into C
            if sink is None:
                traceback.print_exc()
            else:
                sink.fail(e)
            return 1
        return 1 if self.requested or (sink is not None and sink.exc is not None) else 0


class _Running:
    """A C call that may evaluate on ctx: routes Ctrl-C and cancel() to it."""

    def __init__(self, ctx: "Context", sink: _Failure):
        self.hook, self.sink = ctx._abort, sink
        self.guard = _InterruptGuard(sink)

    def __enter__(self):
        self.hook.sink, self.hook.requested = self.sink, False
        self.guard.__enter__()
        return self

    def __exit__(self, *exc):
        self.guard.__exit__(*exc)
        self.hook.sink, self.hook.requested = None, False


class Context(_Handle):
    """KV cache, scratch memory and logits for one model (one thread at a time).

    n_ctx 0: min(4096, trained context); n_threads 0: all cores; n_batch 0:
    512; backend None: $DSR1_BACKEND, else the best available; kv_type: a
    KVType or "f16" / "f32" (DEFAULT: f16, half the memory; F32: the exact
    reference).

    Interrupting: every evaluation on the context (eval, and the generations
    and chat turns on it) polls, before each layer, the ``abort`` callable
    (returns truthy to stop), :meth:`cancel` (any thread) and Ctrl-C. A stop
    raises :class:`CancelledError` (KeyboardInterrupt for Ctrl-C, the
    exception for one raised by ``abort``) and the context keeps the tokens
    evaluated completely (``n_past``): the next call continues from there.
    ``abort`` runs on the evaluating thread once per layer: keep it cheap;
    it must not call methods of this context (they raise StateError).
    """

    _kind = "context"
    _errmsg_fn = "context_errmsg"

    def __init__(self, model: Model, n_ctx: int = 0, n_threads: int = 0,
                 backend: Optional[str] = None, n_batch: int = 0,
                 kv_type: Union[KVType, int, str] = KVType.DEFAULT,
                 abort: Optional[Callable[[], object]] = None):
        super().__init__()
        lib = self._capi
        p = _capi.dsr1_context_params()
        lib.context_params_default(byref(p), sizeof(p))
        p.n_ctx = int(n_ctx)
        p.n_threads = int(n_threads)
        p.n_batch = int(n_batch)
        p.kv_type = _kv_type_in(kv_type)
        self._abort = _AbortHook(abort)  # lives as long as the context
        p.abort_callback = self._abort.c_fn
        self._backend_name = _cstr_in(backend, "backend") if backend is not None else None
        if self._backend_name is not None:
            p.backend = self._backend_name
        out = _capi.context_p()
        _check(lib.context_new(model._p, byref(p), byref(out)))
        self._ptr = out
        self.model = model
        self._n_vocab = model.n_vocab
        model._adopt(self)

    def _free(self, ptr):
        self._capi.context_free(ptr)

    def __repr__(self):
        if self.closed:
            return "<dsr1.Context closed>"
        return f"<dsr1.Context n_ctx={self.n_ctx} n_past={self.n_past} backend={self.backend!r}>"

    @property
    def n_ctx(self) -> int:
        return self._capi.context_n_ctx(self._p)

    @property
    def n_past(self) -> int:
        """Positions held in the KV cache (the next position)."""
        return self._capi.context_n_past(self._p)

    @property
    def backend(self) -> str:
        return _str(self._capi.context_backend(self._p))

    @property
    def kv_bytes_per_token(self) -> int:
        return int(self._capi.context_kv_bytes_per_token(self._p))

    def eval(self, tokens, pos: Optional[int] = None, logits_all: bool = False) -> None:
        """Evaluate tokens at positions pos, pos+1, ... (pos None: n_past).
        Cache entries at positions >= pos are dropped first. Interrupted
        (see the class): CancelledError, with n_past the tokens evaluated
        completely."""
        p = self._p
        ptr, count, _keep = _tokens_in(tokens)
        if pos is None:
            pos = self._capi.context_n_past(p)
        flags = _capi.EVAL_LOGITS_ALL if logits_all else 0
        sink = _Failure()
        with _Running(self, sink):
            st = self._capi.eval(p, ptr, count, int(pos), flags)
        sink.reraise()
        _check_on(self, st)

    def cancel(self) -> None:
        """Stop the evaluation running on this context (an eval, a
        generation's or a chat turn's) at its next layer; safe from any
        thread. It raises CancelledError in the thread that runs it. Does
        nothing when no evaluation is running (a later one is not
        affected)."""
        hook = getattr(self, "_abort", None)
        if hook is not None and hook.sink is not None:
            hook.requested = True

    def _logits_ptr(self, i: int):
        out = _capi._float_p()
        _check_on(self, self._capi.context_logits(self._p, int(i), byref(out)))
        return out

    def logits(self, i: int = -1, as_numpy: Optional[bool] = None):
        """A copy of the n_vocab logits of token i of the last eval (-1: the
        last token; others need logits_all=True). A float32 numpy array when
        numpy is available (or as_numpy=True), else a list of floats."""
        ptr = self._logits_ptr(i)
        n = self._n_vocab
        if as_numpy is None:
            as_numpy = _np is not None
        if as_numpy:
            if _np is None:
                raise ImportError("numpy is not installed")
            return _np.ctypeslib.as_array(ptr, shape=(n,)).copy()
        return ptr[:n]

    def truncate(self, pos: int) -> None:
        """Drop cache entries at positions >= pos."""
        _check_on(self, self._capi.context_truncate(self._p, int(pos)))

    def shift(self, n_keep: int, n_discard: int) -> None:
        """Context shift (dsr1_context_shift): drop the cached tokens at
        positions [n_keep, n_keep + n_discard) and move the later ones down,
        re-rotating their keys, so n_past shrinks by n_discard without
        evaluating anything again. The last logits are dropped.
        InvalidArgumentError for bad counts, StateError during a Generation."""
        _check_on(self, self._capi.context_shift(self._p, int(n_keep), int(n_discard)))

    def reset(self) -> None:
        """Empty the cache. StateError while a Generation on the context is
        unfinished (it continues from the cache)."""
        p = self._p
        self._capi.context_reset(p)
        if self.errmsg:  # dsr1_context_reset is void: a refusal leaves its message
            raise StateError(Status.ERR_STATE, self.errmsg)

    def save_state(self, sampler: Optional["Sampler"] = None) -> bytes:
        """The context's state (tokens, KV cache, last logits) and, when
        given, the sampler's, as one validated blob (dsr1_context_state_save)."""
        sp = sampler._p if sampler is not None else None
        return _save_blob(lambda buf, size, n: self._capi.context_state_save(self._p, sp, buf, size, n))

    def load_state(self, blob: bytes, sampler: Optional["Sampler"] = None) -> None:
        """Continue from a save_state() blob (a Chat.save_state() one too).
        FormatError when damaged, truncated or of another model;
        InvalidArgumentError when this context or sampler cannot take it."""
        data = bytes(blob)
        sp = sampler._p if sampler is not None else None
        _check(self._capi.context_state_load(self._p, sp, data, len(data)))

    def save_state_file(self, path: Union[str, os.PathLike], sampler: Optional["Sampler"] = None) -> None:
        """save_state() into a file (written whole, then renamed over path)."""
        sp = sampler._p if sampler is not None else None
        _check_path(self._capi.context_state_save_file(self._p, sp, os.fsencode(path)), path)

    def load_state_file(self, path: Union[str, os.PathLike], sampler: Optional["Sampler"] = None) -> None:
        """load_state() from a file."""
        sp = sampler._p if sampler is not None else None
        _check_path(self._capi.context_state_load_file(self._p, sp, os.fsencode(path)), path)


# ---------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------

_SAMPLER_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "frequency_penalty",
                   "presence_penalty", "penalty_last_n", "seed")


class Sampler(_Handle):
    """Token chooser: logit bias, penalties, temperature, top-k, top-p, min-p,
    then a seeded random choice (argmax when temperature <= 0).

    Arguments left as None keep the library's defaults (DeepSeek's R1
    recommendation: temperature 0.6, top-p 0.95). n_vocab may be a Model.
    logit_bias: {token: bias} or (token, bias) pairs; -inf bans a token.
    """

    _kind = "sampler"
    _errmsg_fn = "sampler_errmsg"

    def __init__(self, n_vocab: Union[int, Model], *, temperature: Optional[float] = None,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 min_p: Optional[float] = None, repeat_penalty: Optional[float] = None,
                 frequency_penalty: Optional[float] = None, presence_penalty: Optional[float] = None,
                 penalty_last_n: Optional[int] = None, seed: Optional[int] = None, logit_bias=None):
        super().__init__()
        if isinstance(n_vocab, Model):
            n_vocab = n_vocab.n_vocab
        self.n_vocab = int(n_vocab)
        lib = self._capi
        p = _capi.dsr1_sampler_params()
        lib.sampler_params_default(byref(p), sizeof(p))
        given = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                     repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                     presence_penalty=presence_penalty, penalty_last_n=penalty_last_n, seed=seed)
        for k, v in given.items():
            if v is not None:
                setattr(p, k, v)
        bias = None
        if logit_bias:
            pairs = list(logit_bias.items()) if isinstance(logit_bias, Mapping) else list(logit_bias)
            bias = (_capi.dsr1_logit_bias * len(pairs))()
            for i, (t, b) in enumerate(pairs):
                bias[i].token = int(t)
                bias[i].bias = float(b)
            p.logit_bias = ctypes.cast(bias, POINTER(_capi.dsr1_logit_bias))
            p.n_logit_bias = len(pairs)
        #: the parameters in effect (defaults filled in)
        self.params = {k: getattr(p, k) for k in _SAMPLER_FIELDS}
        out = _capi.sampler_p()
        _check(lib.sampler_new(self.n_vocab, byref(p), byref(out)))  # copies logit_bias
        self._ptr = out

    @classmethod
    def greedy(cls, n_vocab: Union[int, Model], **kw) -> "Sampler":
        """Always the most likely token (temperature 0)."""
        return cls(n_vocab, temperature=0.0, **kw)

    def _free(self, ptr):
        self._capi.sampler_free(ptr)

    def sample(self, logits) -> int:
        """Choose a token from n_vocab logits (a list, array('f'), numpy
        array...). Does not record it: call accept() with the token used."""
        ptr, count, _keep = _floats_in(logits)
        out = c_int32(-1)
        _check_on(self, self._capi.sampler_sample(self._p, ptr, count, byref(out)))
        return out.value

    def sample_logprobs(self, logits, n_top: int = 0):
        """sample() plus log-probabilities (dsr1_sampler_sample_logprobs):
        (token, its log-probability, [(token, logprob)] of the n_top most
        likely, best first). The probabilities are the softmax after bias,
        penalties and temperature, before top-k / top-p / min-p."""
        ptr, count, _keep = _floats_in(logits)
        out = c_int32(-1)
        lp = c_float(0.0)
        top = (_capi.dsr1_token_logprob * max(int(n_top), 1))()
        _check_on(self, self._capi.sampler_sample_logprobs(self._p, ptr, count, byref(out), byref(lp), top,
                                                          int(n_top)))
        return out.value, lp.value, [(top[i].token, top[i].logprob) for i in range(int(n_top))
                                     if top[i].token >= 0]

    def sample_context(self, ctx: Context, i: int = -1) -> int:
        """sample() on a context's logits without copying them."""
        return self.sample(_FloatPtr(ctx._logits_ptr(i), ctx._n_vocab))

    def accept(self, token: int) -> None:
        """Record a token in the penalty history."""
        self._capi.sampler_accept(self._p, int(token))

    def reset(self, seed: int = 0) -> None:
        """Forget the history and reseed."""
        self._capi.sampler_reset(self._p, int(seed))

    def save_state(self) -> bytes:
        """The random generator and penalty history (dsr1_sampler_state_save)."""
        need = c_size_t(0)
        st = self._capi.sampler_state_save(self._p, None, 0, byref(need))
        if st != Status.ERR_BUFFER_TOO_SMALL:
            _check(st)
        buf = ctypes.create_string_buffer(need.value)
        _check(self._capi.sampler_state_save(self._p, buf, need.value, byref(need)))
        return buf.raw[:need.value]

    def load_state(self, blob: bytes) -> None:
        """Continue from a save_state() blob (validated: DSR1Error when damaged or foreign)."""
        data = bytes(blob)
        _check_on(self, self._capi.sampler_state_load(self._p, data, len(data)))


# ---------------------------------------------------------------------------
# Grammars
# ---------------------------------------------------------------------------


def json_schema_to_grammar(schema) -> str:
    """The GBNF text for a JSON schema (a dict or JSON text); see dsr1.h for
    the supported subset."""
    import json
    text = schema if isinstance(schema, (str, bytes)) else json.dumps(schema)
    data = text.encode() if isinstance(text, str) else text
    lib = _lib()
    need = c_size_t(0)
    st = lib.json_schema_to_grammar(data, len(data), None, 0, byref(need))
    if st != Status.ERR_BUFFER_TOO_SMALL:
        _check(st)
    buf = ctypes.create_string_buffer(need.value + 1)
    _check(lib.json_schema_to_grammar(data, len(data), buf, len(buf), byref(need)))
    return buf.value.decode()


class Grammar(_Handle):
    """A grammar the answer must follow (dsr1_grammar): GBNF text (llama.cpp's
    syntax) or, with Grammar.from_json_schema, a JSON schema. With an R1
    model the reasoning stays free and the grammar applies from </think> on.
    Pass it as generate(..., grammar=g). It borrows the model."""

    _kind = "grammar"

    def __init__(self, model: Model, gbnf: str, root: Optional[str] = None, *, _schema=None):
        super().__init__()
        out = _capi.grammar_p()
        if _schema is not None:
            import json
            text = _schema if isinstance(_schema, (str, bytes)) else json.dumps(_schema)
            data = text.encode() if isinstance(text, str) else text
            _check(self._capi.grammar_from_json_schema(model._p, data, len(data), byref(out)))
        else:
            data = gbnf.encode() if isinstance(gbnf, str) else gbnf
            _check(self._capi.grammar_new(model._p, data, len(data),
                                          None if root is None else _cstr_in(root, "root"), byref(out)))
        self._ptr = out
        self.model = model
        model._adopt(self)

    @classmethod
    def from_json_schema(cls, model: Model, schema) -> "Grammar":
        """A grammar for the JSON values a schema (dict or JSON text) describes."""
        return cls(model, "", _schema=schema)

    def _free(self, ptr):
        self._capi.grammar_free(ptr)


class Step:
    """What an on_step hook sees: .logits (n_vocab floats, writable; tokens
    the grammar forbids are -inf), .in_reasoning, .n_generated. The hook
    returns None to let the sampler choose, or a token id to choose it."""

    def __init__(self, c_step):
        self.logits = c_step.logits
        self.n_vocab = int(c_step.n_vocab)
        self.in_reasoning = bool(c_step.in_reasoning)
        self.n_generated = int(c_step.n_generated)


class _StepHook:
    """The C step callback around a Python hook; an exception cancels and is
    re-raised by the caller (through the event sink)."""

    def __init__(self, fn, sink):
        self.fn = fn
        self.sink = sink
        self.c_fn = _capi.dsr1_step_fn(self._callback)

    def _callback(self, step_p, _user_data):
        if self.sink.exc is not None:
            return 1
        try:
            choice = self.fn(Step(step_p.contents))
            if choice is not None:
                step_p.contents.token = int(choice)
            return 0
        except BaseException as e:  # noqa: B902
            self.sink.exc = e
            return 1


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


class Event(NamedTuple):
    """One generation event (see dsr1_event). With n_logprobs: logprobs (one
    per token, NaN for injected ones) and top_logprobs (per token, a list of
    (token, logprob), best first)."""
    type: Union[EventType, int]
    text: str
    tokens: tuple
    stop_reason: Union[StopReason, int]
    logprobs: tuple = ()
    top_logprobs: tuple = ()


class Completion(NamedTuple):
    """The result of generate() / Chat.ask_full()."""
    reasoning: str
    answer: str
    stop_reason: Union[StopReason, int]
    tokens: list  # the ids the events covered, in order


@dataclass
class GenerationStats:
    n_prompt_eval: int
    n_generated: int
    n_reasoning: int
    prompt_seconds: float
    generate_seconds: float
    n_drafted: int = 0   # speculative_mtp: drafts the main model checked
    n_accepted: int = 0  # of which it confirmed
    n_declined: int = 0  # drafts below speculative_min_p, not checked
    n_ctx_shifts: int = 0   # context shifts made (ctx_policy CtxPolicy.SHIFT)
    n_ctx_dropped: int = 0  # tokens they dropped


def _event_from_c(ev) -> Event:
    text = ctypes.string_at(ev.text, ev.text_len) if ev.text and ev.text_len else b""
    n = int(ev.n_tokens)
    tokens = tuple(ev.tokens[:n]) if ev.tokens and n > 0 else ()
    lps, tops = (), ()
    if ev.logprobs and n > 0:
        k = int(ev.n_top_logprobs)
        lps = tuple(ev.logprobs[:n])
        tops = tuple([(ev.top_logprobs[i * k + j].token, ev.top_logprobs[i * k + j].logprob)
                      for j in range(k) if ev.top_logprobs[i * k + j].token >= 0] for i in range(n))
    return Event(_enum(EventType, ev.type), text.decode("utf-8", errors="replace"), tokens,
                 _enum(StopReason, ev.stop_reason), lps, tops)


class _EventSink(_Failure):
    """The C callback. Collects the streams, forwards events to a Python
    handler, and turns a handler exception into a cancel (return 1) plus a
    deferred re-raise: no exception ever crosses into C."""

    def __init__(self, on_event=None, queue: Optional[list] = None):
        super().__init__()
        self.on_event = on_event
        self.queue = queue
        self.reasoning: list = []
        self.answer: list = []
        self.tokens: list = []
        self.stop_reason = None
        self.c_fn = _capi.dsr1_event_fn(self._callback)

    def _callback(self, ev_p, _user_data):
        if self.exc is not None:
            return 1
        try:
            ev = _event_from_c(ev_p.contents)
            self.tokens.extend(ev.tokens)
            if ev.type == EventType.REASONING_TEXT:
                self.reasoning.append(ev.text)
            elif ev.type == EventType.ANSWER_TEXT:
                self.answer.append(ev.text)
            elif ev.type == EventType.DONE:
                self.stop_reason = ev.stop_reason
            if self.queue is not None:
                self.queue.append(ev)
            if self.on_event is not None and self.on_event(ev):
                return 1
        except BaseException as e:  # noqa: B902 - KeyboardInterrupt too
            self.fail(e)
        # an interrupt that arrived during the handler cancels too
        return 1 if self.exc is not None else 0

    def completion(self, stop_reason) -> Completion:
        return Completion("".join(self.reasoning), "".join(self.answer),
                          _enum(StopReason, stop_reason), list(self.tokens))


class _InterruptGuard:
    """Ctrl-C during a C call that calls back into Python.

    Python runs a signal handler in the main thread at the next Python
    bytecode, which during a generation is the entry of the ctypes event
    callback: the KeyboardInterrupt it raises there cannot reach the caller
    (ctypes prints "Exception ignored on calling ctypes callback function"
    and the generation carries on). So, in the main thread and while the C
    call runs, SIGINT goes to a handler that calls the one installed before
    (Python's default raises KeyboardInterrupt) and records what it raises in
    the sink: the callback then cancels the generation (within the step
    under way) and the exception is re-raised when the C call returns. Other
    threads cannot set signal handlers and get no signals: nothing changes
    there. A SIGINT handler that is not a Python callable (SIG_IGN, SIG_DFL)
    is left alone."""

    def __init__(self, sink: _Failure):
        self.sink = sink
        self.previous = None

    def _handler(self, signum, frame):
        try:
            self.previous(signum, frame)
        except BaseException as e:  # noqa: B902 - KeyboardInterrupt is the point
            self.sink.fail(e)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):
                self.previous = previous
                signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


def _generate_params(sink: _EventSink, max_new_tokens=None, think_budget=None,
                     think_budget_action=None, hide_reasoning=None, stop_strings=None,
                     starts_in_reasoning=None, speculative_mtp=None, speculative_min_p=None,
                     grammar=None, n_logprobs=None, on_step=None, max_prompt_per_step=None,
                     ctx_policy=None, n_keep=None):
    """(dsr1_generate_params, keepalive). None keeps the library's default."""
    lib = _lib()
    p = _capi.dsr1_generate_params()
    lib.generate_params_default(byref(p), sizeof(p))
    keep = [sink]
    if max_new_tokens is not None:
        p.max_new_tokens = int(max_new_tokens)
    if think_budget is not None:
        p.think_budget = int(think_budget)
    if think_budget_action is not None:
        p.think_budget_action = int(think_budget_action)
    if hide_reasoning is not None:
        p.hide_reasoning = 1 if hide_reasoning else 0
    if speculative_mtp is not None:
        p.speculative_mtp = 1 if speculative_mtp else 0
    if speculative_min_p is not None:
        p.speculative_min_p = float(speculative_min_p)
    if starts_in_reasoning is not None:
        p.starts_in_reasoning = int(starts_in_reasoning) if not isinstance(starts_in_reasoning, bool) \
            else (1 if starts_in_reasoning else 0)
    if stop_strings:
        if isinstance(stop_strings, (str, bytes)):
            stop_strings = [stop_strings]
        enc = [_cstr_in(s, "stop string") for s in stop_strings]
        arr = (c_char_p * len(enc))(*enc)
        p.stop_strings = ctypes.cast(arr, POINTER(c_char_p))
        p.n_stop_strings = len(enc)
        keep += [enc, arr]
    if grammar is not None:
        p.grammar = grammar._p
        keep.append(grammar)
    if n_logprobs is not None:
        p.n_logprobs = int(n_logprobs)
    if max_prompt_per_step is not None:
        p.max_prompt_per_step = int(max_prompt_per_step)
    if ctx_policy is not None:
        p.ctx_policy = int(CtxPolicy[ctx_policy.upper()] if isinstance(ctx_policy, str) else ctx_policy)
    if n_keep is not None:
        p.n_keep = int(n_keep)
    if on_step is not None:
        hook = _StepHook(on_step, sink)
        p.on_step = hook.c_fn
        keep.append(hook)
    p.on_event = sink.c_fn
    return p, keep


def generate(ctx: Context, sampler: Sampler, prompt, *, on_event: Optional[Callable[[Event], object]] = None,
             max_new_tokens: Optional[int] = None, think_budget: Optional[int] = None,
             think_budget_action: Optional[int] = None, hide_reasoning: Optional[bool] = None,
             stop_strings: Optional[Iterable[str]] = None,
             starts_in_reasoning: Optional[bool] = None,
             speculative_mtp: Optional[bool] = None,
             speculative_min_p: Optional[float] = None,
             grammar: Optional[Grammar] = None, n_logprobs: Optional[int] = None,
             on_step: Optional[Callable[[Step], Optional[int]]] = None,
             ctx_policy=None, n_keep: Optional[int] = None) -> Completion:
    """Prompt tokens -> completion in one call (dsr1_generate).

    on_event(Event) is called for every event; a truthy return cancels. An
    exception it raises cancels generation and propagates from here. Options
    left as None keep the library defaults (max_new_tokens 0: until EOS or the
    context is full; think_budget -1: unlimited). ctx_policy
    CtxPolicy.SHIFT (or "shift") goes on past a full context by dropping old
    tokens after the first n_keep (dsr1_generate_params). ctx.cancel() from another
    thread, or Ctrl-C, stops it within a layer (CancelledError,
    KeyboardInterrupt).
    """
    sink = _EventSink(on_event)
    params, _keep = _generate_params(sink, max_new_tokens, think_budget, think_budget_action,
                                     hide_reasoning, stop_strings, starts_in_reasoning,
                                     speculative_mtp, speculative_min_p, grammar, n_logprobs, on_step,
                                     ctx_policy=ctx_policy, n_keep=n_keep)
    ptr, count, _keep_prompt = _tokens_in(prompt)
    stop = ctypes.c_int(0)
    with _Running(ctx, sink):
        st = _lib().generate(ctx._p, sampler._p, ptr, count, byref(params), byref(stop))
    sink.reraise()
    _check_on(ctx, st)
    return sink.completion(stop.value)


class Generation(_Handle):
    """A generation the caller steps (dsr1_generation_*).

    Iterating yields the Events as they are produced::

        for ev in dsr1.Generation(ctx, smp, prompt, max_new_tokens=64):
            print(ev.type.name, ev.text)
    """

    _kind = "generation"
    _errmsg_fn = "generation_errmsg"

    def __init__(self, ctx: Context, sampler: Sampler, prompt, *,
                 on_event: Optional[Callable[[Event], object]] = None, **options):
        super().__init__()
        self._setup(on_event, options)
        ptr, count, self._prompt = _tokens_in(prompt)
        out = _capi.generation_p()
        _check(self._capi.generation_new(ctx._p, sampler._p, ptr, count, byref(self._params),
                                         byref(out)))
        self._attach(out, ctx, sampler)

    def _setup(self, on_event, options):
        self._queue: deque = deque()
        self._sink = _EventSink(on_event, None)
        self._params, self._keep = _generate_params(self._sink, **options)
        self._grammar = options.get("grammar")
        self._stop = None

    def _attach(self, out, ctx, sampler, chat=None):
        self._ptr = out
        # the generation borrows these: keep them alive, close with them
        self.context, self.sampler, self.chat = ctx, sampler, chat
        for owner in (ctx, sampler, chat, self._grammar):
            if owner is not None:
                owner._adopt(self)

    @classmethod
    def _from_chat(cls, chat: "Chat", text: bytes, on_event, options) -> "Generation":
        self = cls.__new__(cls)
        _Handle.__init__(self)
        self._setup(on_event, options)
        self._prompt = None
        out = _capi.generation_p()
        _check(self._capi.chat_begin(chat._p, text, byref(self._params), byref(out)))
        self._attach(out, chat.context, chat.sampler, chat)
        return self

    def _free(self, ptr):
        self._capi.generation_free(ptr)

    @property
    def done(self) -> bool:
        return self._stop is not None

    @property
    def stop_reason(self) -> Union[StopReason, int]:
        """StopReason.NONE while running."""
        return StopReason.NONE if self._stop is None else self._stop

    @property
    def reasoning(self) -> str:
        """The reasoning text so far."""
        return "".join(self._sink.reasoning)

    @property
    def answer(self) -> str:
        """The answer text so far."""
        return "".join(self._sink.answer)

    @property
    def tokens(self) -> list:
        return list(self._sink.tokens)

    def step(self) -> Optional[int]:
        """Produce one token (the first call also evaluates the prompt) and
        deliver its events. Returns the token, or None when none was produced;
        check .done. After the end it returns None without calling the library."""
        if self._stop is not None:
            return None
        tok = c_int32(-1)
        stop = ctypes.c_int(0)
        p = self._p
        with _Running(self.context, self._sink):
            st = self._capi.generation_step(p, byref(tok), byref(stop))
        if stop.value != StopReason.NONE:  # also for a cancel that stopped an evaluation
            self._stop = _enum(StopReason, stop.value)
        self._sink.reraise()
        _check_on(self, st)
        return tok.value if tok.value >= 0 else None

    def run(self) -> Union[StopReason, int]:
        """Step until done; returns the stop reason."""
        if self._stop is None:
            stop = ctypes.c_int(0)
            p = self._p
            with _Running(self.context, self._sink):
                st = self._capi.generation_run(p, byref(stop))
            if stop.value != StopReason.NONE:
                self._stop = _enum(StopReason, stop.value)
            self._sink.reraise()
            _check_on(self, st)
        return self._stop

    def cancel(self) -> None:
        """Ask the generation to stop (any thread): an evaluation in progress
        stops at its next layer (that step raises CancelledError), else the
        next step ends it; either way it is done (StopReason.CANCELLED)."""
        if self._ptr is not None:
            self._capi.generation_cancel(self._ptr)

    @property
    def stats(self) -> GenerationStats:
        s = _capi.dsr1_generation_stats()
        s.size = sizeof(s)
        _check_on(self, self._capi.generation_get_stats(self._p, byref(s)))
        return GenerationStats(s.n_prompt_eval, s.n_generated, s.n_reasoning, s.prompt_seconds,
                               s.generate_seconds, s.n_drafted, s.n_accepted, s.n_declined,
                               s.n_ctx_shifts, s.n_ctx_dropped)

    def completion(self) -> Completion:
        return self._sink.completion(self.stop_reason)

    def __iter__(self) -> Iterator[Event]:
        self._sink.queue = self._queue
        try:
            while True:
                if self._queue:
                    ev = self._queue.popleft()
                    yield ev
                    continue
                if self._stop is not None:
                    return
                self.step()
        finally:
            self._sink.queue = None
            self._queue.clear()


def stream(ctx: Context, sampler: Sampler, prompt, **options) -> Iterator[Event]:
    """generate() as an iterator of Events (stepping a Generation)."""
    with Generation(ctx, sampler, prompt, **options) as gen:
        yield from gen


# ---------------------------------------------------------------------------
# Chat sessions
# ---------------------------------------------------------------------------


class Chat(_Handle):
    """A conversation in R1's chat format that reuses the KV cache for the
    unchanged prefix. Borrows the context and sampler."""

    _kind = "chat"
    _errmsg_fn = "chat_errmsg"

    def __init__(self, ctx: Context, sampler: Sampler, system_prompt: Optional[str] = None):
        super().__init__()
        sp = _cstr_in(system_prompt, "system prompt") if system_prompt is not None else None
        out = _capi.chat_p()
        _check(self._capi.chat_new(ctx._p, sampler._p, sp, byref(out)))
        self._ptr = out
        self.context, self.sampler = ctx, sampler
        self.last_stop_reason: Union[StopReason, int] = StopReason.NONE
        ctx._adopt(self)
        sampler._adopt(self)

    def _free(self, ptr):
        self._capi.chat_free(ptr)

    def ask_full(self, message: str, *, on_event=None, **options) -> Completion:
        """Add a user message and answer it; the reply is recorded."""
        sink = _EventSink(on_event)
        params, _keep = _generate_params(sink, **options)
        stop = ctypes.c_int(0)
        text = _cstr_in(message, "message")
        p = self._p
        with _Running(self.context, sink):
            st = self._capi.chat_ask(p, text, byref(params), byref(stop))
        if st == Status.OK:
            self.last_stop_reason = _enum(StopReason, stop.value)
        sink.reraise()
        _check_on(self, st)
        return sink.completion(stop.value)

    def ask(self, message: str, *, on_event=None, **options) -> tuple:
        """Add a user message and answer it: returns (reasoning, answer).
        The stop reason is in .last_stop_reason."""
        c = self.ask_full(message, on_event=on_event, **options)
        return c.reasoning, c.answer

    def begin(self, message: str, *, on_event=None, **options) -> Generation:
        """The same as a Generation to step; the reply is recorded when it
        finishes or is closed. Only one at a time."""
        return Generation._from_chat(self, _cstr_in(message, "message"), on_event, options)

    def reset(self) -> None:
        """Forget the conversation (keeps the system prompt)."""
        self._capi.chat_reset(self._p)

    def save_state(self) -> bytes:
        """The conversation, its context and sampler as one blob
        (dsr1_chat_state_save); not during a turn (StateError)."""
        return _save_blob(lambda buf, size, n: self._capi.chat_state_save(self._p, buf, size, n))

    def load_state(self, blob: bytes) -> None:
        """Replace the conversation, cache and sampler state with a
        save_state() blob's; the next turn continues from it."""
        data = bytes(blob)
        _check(self._capi.chat_state_load(self._p, data, len(data)))

    def save_state_file(self, path: Union[str, os.PathLike]) -> None:
        _check_path(self._capi.chat_state_save_file(self._p, os.fsencode(path)), path)

    def load_state_file(self, path: Union[str, os.PathLike]) -> None:
        _check_path(self._capi.chat_state_load_file(self._p, os.fsencode(path)), path)

    def __len__(self) -> int:
        return int(self._capi.chat_n_messages(self._p))

    @property
    def messages(self) -> list:
        lib, p = self._capi, self._p
        out = []
        for i in range(lib.chat_n_messages(p)):
            m = _capi.dsr1_chat_message()
            _check(lib.chat_message_at(p, i, byref(m)))
            out.append(ChatMessage(_str(m.role), _str(m.content)))
        return out
