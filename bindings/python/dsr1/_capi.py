"""Low-level ctypes declarations of include/dsr1.h.

Everything here mirrors the C header one to one: the enums, the plain-data
structs (with the exact field order of dsr1.h) and the prototypes of every
function.  The friendly classes live in ``dsr1/__init__.py``; use this module
directly only when you need something they do not wrap.

The shared library is found lazily, on first use, so that ``import dsr1`` (and
``dsr1.gguf``, which does not need the library at all) never fails because the
library has not been built. The first that exists is loaded:

1. ``$DSR1_LIBRARY`` (a path to the shared library);
2. the copy a self-contained wheel carries (``dsr1/_lib/libdsr1.so``);
3. ``build/libdsr1.so`` of the source tree, when this package is run from
   one (``bindings/python/dsr1``);
4. an installed library: ``ctypes.util.find_library("dsr1")`` (the dynamic
   loader's cache), then the ``libdir`` pkg-config reports for ``dsr1``
   (``meson install`` writes dsr1.pc), then ``/usr/local/lib`` and its
   multiarch directory (meson's default prefix, often not in the cache).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path

#: The DSR1_ABI_VERSION these bindings were written against.
ABI_VERSION = 0

# ---------------------------------------------------------------------------
# Constants (#defines of dsr1.h)
# ---------------------------------------------------------------------------

EVAL_LOGITS_ALL = 1
TOKENIZE_ADD_BOS = 1
TOKENIZE_PARSE_SPECIAL = 2
PIECE_RENDER_CONTROL = 1
CHAT_ADD_GENERATION_PROMPT = 1

# Enums are passed as C ints (every ABI this library targets uses int).
c_enum = c_int

dsr1_token = c_int32

# ---------------------------------------------------------------------------
# Opaque handles: distinct pointer types, so a Context can never be passed
# where a Model is expected.
# ---------------------------------------------------------------------------


class dsr1_model(Structure):
    pass


class dsr1_context(Structure):
    pass


class dsr1_decoder(Structure):
    pass


class dsr1_sampler(Structure):
    pass


class dsr1_generation(Structure):
    pass


class dsr1_chat(Structure):
    pass


class dsr1_threadpool(Structure):
    pass


class dsr1_grammar(Structure):
    pass


model_p = POINTER(dsr1_model)
context_p = POINTER(dsr1_context)
decoder_p = POINTER(dsr1_decoder)
sampler_p = POINTER(dsr1_sampler)
generation_p = POINTER(dsr1_generation)
chat_p = POINTER(dsr1_chat)
threadpool_p = POINTER(dsr1_threadpool)
grammar_p = POINTER(dsr1_grammar)

# ---------------------------------------------------------------------------
# Callbacks and structs
# ---------------------------------------------------------------------------

# void (*dsr1_log_fn)(dsr1_log_level level, const char *message, void *user_data)
dsr1_log_fn = CFUNCTYPE(None, c_enum, c_char_p, c_void_p)


class dsr1_device_props(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("name", c_char * 128),
        ("backend", c_char * 16),
        ("is_cpu", c_int32),
        ("memory", c_uint64),
    ]


class dsr1_progress(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("bytes_done", c_uint64),
        ("bytes_total", c_uint64),
        ("tensors_done", c_int64),
        ("tensors_total", c_int64),
    ]


# int (*dsr1_progress_fn)(const dsr1_progress *progress, void *user_data)
dsr1_progress_fn = CFUNCTYPE(c_int, POINTER(dsr1_progress), c_void_p)


class dsr1_model_params(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("vocab_only", c_int32),
        ("log_callback", dsr1_log_fn),
        ("log_user_data", c_void_p),
        ("log_level", c_int32),
        ("progress_callback", dsr1_progress_fn),
        ("progress_user_data", c_void_p),
        ("preload", c_int32),
        ("n_gpu_layers", c_int32),
        ("device", c_char_p),
        ("cpu_moe", c_int32),
    ]


class dsr1_tensor_info(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("name", c_char_p),
        ("type", c_uint32),
        ("n_dims", c_uint32),
        ("ne", c_int64 * 4),
        ("n_bytes", c_uint64),
    ]


# int (*dsr1_abort_fn)(void *user_data)
dsr1_abort_fn = CFUNCTYPE(c_int, c_void_p)


class dsr1_context_params(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("n_ctx", c_int32),
        ("n_batch", c_int32),
        ("n_threads", c_int32),
        ("backend", c_char_p),
        ("kv_type", c_enum),  # dsr1_kv_type
        ("threadpool", threadpool_p),
        ("abort_callback", dsr1_abort_fn),
        ("abort_user_data", c_void_p),
    ]


class dsr1_memory_estimate(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("weight_bytes", c_uint64),
        ("file_bytes", c_uint64),
        ("kv_bytes_per_token", c_uint64),
        ("kv_bytes", c_uint64),
        ("scratch_bytes", c_uint64),
        ("n_ctx", c_int32),
        ("n_batch", c_int32),
    ]


class dsr1_threadpool_params(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("n_threads", c_int32),
        ("spin_us", c_int32),
    ]


class dsr1_chat_message(Structure):
    _fields_ = [
        ("role", c_char_p),
        ("content", c_char_p),
    ]


class dsr1_tool_call(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("type", c_char_p),
        ("name", c_char_p),
        ("arguments", c_char_p),
    ]


class dsr1_message(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("role", c_char_p),
        ("content", c_char_p),
        ("tool_calls", POINTER(dsr1_tool_call)),
        ("n_tool_calls", c_int32),
    ]


class dsr1_logit_bias(Structure):
    _fields_ = [
        ("token", dsr1_token),
        ("bias", c_float),
    ]


class dsr1_sampler_params(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("frequency_penalty", c_float),
        ("presence_penalty", c_float),
        ("penalty_last_n", c_int32),
        ("seed", c_uint64),
        ("logit_bias", POINTER(dsr1_logit_bias)),
        ("n_logit_bias", c_int32),
    ]


class dsr1_token_logprob(Structure):
    _fields_ = [
        ("token", dsr1_token),
        ("logprob", c_float),
    ]


class dsr1_step(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("logits", POINTER(c_float)),
        ("n_vocab", c_int32),
        ("in_reasoning", c_int32),
        ("n_generated", c_int32),
        ("token", dsr1_token),
    ]


# int (*dsr1_step_fn)(dsr1_step *step, void *user_data)
dsr1_step_fn = CFUNCTYPE(c_int, POINTER(dsr1_step), c_void_p)


class dsr1_event(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("type", c_enum),
        # char pointer, not c_char_p: the text is read with its length
        ("text", POINTER(c_char)),
        ("text_len", c_size_t),
        ("tokens", POINTER(dsr1_token)),
        ("n_tokens", c_int32),
        ("stop_reason", c_enum),
        ("logprobs", POINTER(c_float)),
        ("top_logprobs", POINTER(dsr1_token_logprob)),
        ("n_top_logprobs", c_int32),
    ]


# int (*dsr1_event_fn)(const dsr1_event *event, void *user_data)
dsr1_event_fn = CFUNCTYPE(c_int, POINTER(dsr1_event), c_void_p)


class dsr1_generate_params(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("max_new_tokens", c_int32),
        ("think_budget", c_int32),
        ("think_budget_action", c_int32),
        ("hide_reasoning", c_int32),
        ("stop_strings", POINTER(c_char_p)),
        ("n_stop_strings", c_int32),
        ("starts_in_reasoning", c_int32),
        ("on_event", dsr1_event_fn),
        ("user_data", c_void_p),
        ("speculative_mtp", c_int32),
        ("speculative_min_p", c_float),
        ("grammar", grammar_p),
        ("n_logprobs", c_int32),
        ("on_step", dsr1_step_fn),
        ("step_user_data", c_void_p),
        ("max_prompt_per_step", c_int32),
        ("ctx_policy", c_int32),
        ("n_keep", c_int32),
    ]


class dsr1_generation_stats(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("n_prompt_eval", c_int32),
        ("n_generated", c_int32),
        ("n_reasoning", c_int32),
        ("prompt_seconds", c_double),
        ("generate_seconds", c_double),
        ("n_drafted", c_int32),
        ("n_accepted", c_int32),
        ("n_declined", c_int32),
        ("n_ctx_shifts", c_int32),
        ("n_ctx_dropped", c_int32),
    ]


# ---------------------------------------------------------------------------
# Prototypes: name -> (restype, argtypes)
# ---------------------------------------------------------------------------

_status = c_enum
_size_p = POINTER(c_size_t)
_token_p = POINTER(dsr1_token)
_i32_p = POINTER(c_int32)
_enum_p = POINTER(c_enum)
_float_p = POINTER(c_float)

PROTOTYPES = {
    # versions, errors, types, backends
    "dsr1_version": (c_char_p, []),
    "dsr1_abi_version": (c_int, []),
    "dsr1_status_string": (c_char_p, [_status]),
    "dsr1_last_error": (c_char_p, []),
    "dsr1_type_name": (c_char_p, [c_uint32]),
    "dsr1_backend_count": (c_int, []),
    "dsr1_backend_name": (c_char_p, [c_int]),
    "dsr1_backend_available": (c_int, [c_char_p]),
    "dsr1_device_count": (c_int32, []),
    "dsr1_device_info": (_status, [c_int32, POINTER(dsr1_device_props)]),
    # models
    "dsr1_model_params_default": (None, [POINTER(dsr1_model_params), c_size_t]),
    "dsr1_model_load": (_status, [c_char_p, POINTER(dsr1_model_params), POINTER(model_p)]),
    "dsr1_model_load_from_memory": (
        _status, [c_void_p, c_size_t, POINTER(dsr1_model_params), POINTER(model_p)]),
    "dsr1_model_free": (None, [model_p]),
    "dsr1_model_arch": (c_char_p, [model_p]),
    "dsr1_model_n_vocab": (c_int32, [model_p]),
    "dsr1_model_n_ctx_train": (c_int32, [model_p]),
    "dsr1_model_n_embd": (c_int32, [model_p]),
    "dsr1_model_n_layer": (c_int32, [model_p]),
    "dsr1_model_n_head": (c_int32, [model_p]),
    "dsr1_model_n_head_kv": (c_int32, [model_p]),
    "dsr1_model_n_params": (c_uint64, [model_p]),
    "dsr1_model_size_bytes": (c_uint64, [model_p]),
    "dsr1_model_meta_count": (c_int64, [model_p]),
    "dsr1_model_meta_key": (_status, [model_p, c_int64, c_char_p, c_size_t, _size_p]),
    "dsr1_model_meta_value": (_status, [model_p, c_char_p, c_char_p, c_size_t, _size_p]),
    "dsr1_model_tensor_count": (c_int64, [model_p]),
    "dsr1_model_tensor_info": (_status, [model_p, c_int64, POINTER(dsr1_tensor_info)]),
    # contexts
    "dsr1_context_params_default": (None, [POINTER(dsr1_context_params), c_size_t]),
    "dsr1_context_new": (_status, [model_p, POINTER(dsr1_context_params), POINTER(context_p)]),
    "dsr1_context_free": (None, [context_p]),
    "dsr1_context_model": (model_p, [context_p]),
    "dsr1_context_n_ctx": (c_int32, [context_p]),
    "dsr1_context_backend": (c_char_p, [context_p]),
    "dsr1_context_n_past": (c_int32, [context_p]),
    "dsr1_context_kv_bytes_per_token": (c_uint64, [context_p]),
    "dsr1_eval": (_status, [context_p, _token_p, c_int32, c_int32, c_uint32]),
    "dsr1_logits": (_float_p, [context_p, c_int32]),
    "dsr1_context_truncate": (_status, [context_p, c_int32]),
    "dsr1_context_shift": (_status, [context_p, c_int32, c_int32]),
    "dsr1_context_reset": (None, [context_p]),
    "dsr1_context_logits": (_status, [context_p, c_int32, POINTER(_float_p)]),
    "dsr1_context_errmsg": (c_char_p, [context_p]),
    "dsr1_model_estimate_memory": (_status, [c_char_p, POINTER(dsr1_model_params), POINTER(dsr1_context_params),
                                             POINTER(dsr1_memory_estimate)]),
    # tokenizer
    "dsr1_tokenize": (_status, [model_p, c_char_p, c_size_t, _token_p, c_int32, _i32_p, c_uint32]),
    "dsr1_token_to_piece": (_status, [model_p, dsr1_token, c_char_p, c_size_t, _size_p, c_uint32]),
    "dsr1_detokenize": (_status, [model_p, _token_p, c_int32, c_char_p, c_size_t, _size_p, c_uint32]),
    "dsr1_decoder_new": (_status, [model_p, c_uint32, POINTER(decoder_p)]),
    "dsr1_decoder_free": (None, [decoder_p]),
    "dsr1_decoder_push": (_status, [decoder_p, dsr1_token, c_char_p, c_size_t, _size_p]),
    "dsr1_decoder_flush": (_status, [decoder_p, c_char_p, c_size_t, _size_p]),
    "dsr1_decoder_errmsg": (c_char_p, [decoder_p]),
    "dsr1_token_special": (dsr1_token, [model_p, c_enum]),
    "dsr1_token_get_attr": (c_enum, [model_p, dsr1_token]),
    "dsr1_token_is_eog": (c_int, [model_p, dsr1_token]),
    # chat format
    "dsr1_chat_format": (
        _status, [model_p, POINTER(dsr1_chat_message), c_int32, c_uint32, c_char_p, c_size_t, _size_p]),
    "dsr1_chat_tokenize": (
        _status, [model_p, POINTER(dsr1_chat_message), c_int32, c_uint32, _token_p, c_int32, _i32_p]),
    "dsr1_chat_format_messages": (
        _status, [model_p, POINTER(dsr1_message), c_int32, c_uint32, c_char_p, c_size_t, _size_p]),
    "dsr1_chat_tokenize_messages": (
        _status, [model_p, POINTER(dsr1_message), c_int32, c_uint32, _token_p, c_int32, _i32_p]),
    # sampling
    "dsr1_sampler_params_default": (None, [POINTER(dsr1_sampler_params), c_size_t]),
    "dsr1_sampler_new": (_status, [c_int32, POINTER(dsr1_sampler_params), POINTER(sampler_p)]),
    "dsr1_sampler_free": (None, [sampler_p]),
    "dsr1_sampler_sample": (_status, [sampler_p, _float_p, c_int32, _token_p]),
    "dsr1_sampler_sample_logprobs": (
        _status, [sampler_p, _float_p, c_int32, _token_p, _float_p, POINTER(dsr1_token_logprob), c_int32]),
    # grammars
    "dsr1_grammar_new": (_status, [model_p, c_char_p, c_size_t, c_char_p, POINTER(grammar_p)]),
    "dsr1_grammar_from_json_schema": (_status, [model_p, c_char_p, c_size_t, POINTER(grammar_p)]),
    "dsr1_grammar_free": (None, [grammar_p]),
    "dsr1_json_schema_to_grammar": (_status, [c_char_p, c_size_t, c_char_p, c_size_t, _size_p]),
    "dsr1_sampler_accept": (None, [sampler_p, dsr1_token]),
    "dsr1_sampler_reset": (None, [sampler_p, c_uint64]),
    "dsr1_sampler_state_save": (_status, [sampler_p, c_void_p, c_size_t, _size_p]),
    "dsr1_sampler_state_load": (_status, [sampler_p, c_void_p, c_size_t]),
    "dsr1_sampler_errmsg": (c_char_p, [sampler_p]),
    # generation
    "dsr1_generate_params_default": (None, [POINTER(dsr1_generate_params), c_size_t]),
    "dsr1_generation_new": (
        _status, [context_p, sampler_p, _token_p, c_int32, POINTER(dsr1_generate_params),
                  POINTER(generation_p)]),
    "dsr1_generation_free": (None, [generation_p]),
    "dsr1_generation_step": (_status, [generation_p, _token_p, _enum_p]),
    "dsr1_generation_run": (_status, [generation_p, _enum_p]),
    "dsr1_generation_cancel": (None, [generation_p]),
    "dsr1_generation_errmsg": (c_char_p, [generation_p]),
    "dsr1_generation_get_stats": (_status, [generation_p, POINTER(dsr1_generation_stats)]),
    "dsr1_generate": (
        _status, [context_p, sampler_p, _token_p, c_int32, POINTER(dsr1_generate_params), _enum_p]),
    # chat sessions
    "dsr1_chat_new": (_status, [context_p, sampler_p, c_char_p, POINTER(chat_p)]),
    "dsr1_chat_free": (None, [chat_p]),
    "dsr1_chat_ask": (_status, [chat_p, c_char_p, POINTER(dsr1_generate_params), _enum_p]),
    "dsr1_chat_begin": (
        _status, [chat_p, c_char_p, POINTER(dsr1_generate_params), POINTER(generation_p)]),
    "dsr1_chat_reset": (None, [chat_p]),
    "dsr1_chat_n_messages": (c_int32, [chat_p]),
    "dsr1_chat_message_at": (_status, [chat_p, c_int32, POINTER(dsr1_chat_message)]),
    # saved state
    "dsr1_context_state_save": (_status, [context_p, sampler_p, c_void_p, c_size_t, _size_p]),
    "dsr1_context_state_load": (_status, [context_p, sampler_p, c_void_p, c_size_t]),
    "dsr1_context_state_save_file": (_status, [context_p, sampler_p, c_char_p]),
    "dsr1_context_state_load_file": (_status, [context_p, sampler_p, c_char_p]),
    "dsr1_chat_state_save": (_status, [chat_p, c_void_p, c_size_t, _size_p]),
    "dsr1_chat_state_load": (_status, [chat_p, c_void_p, c_size_t]),
    "dsr1_chat_state_save_file": (_status, [chat_p, c_char_p]),
    "dsr1_chat_state_load_file": (_status, [chat_p, c_char_p]),
    # thread pools
    "dsr1_threadpool_params_default": (None, [POINTER(dsr1_threadpool_params), c_size_t]),
    "dsr1_threadpool_new": (_status, [POINTER(dsr1_threadpool_params), POINTER(threadpool_p)]),
    "dsr1_threadpool_free": (None, [threadpool_p]),
    "dsr1_threadpool_n_threads": (c_int32, [threadpool_p]),
    "dsr1_context_set_threads": (_status, [context_p, c_int32]),
    "dsr1_context_n_threads": (c_int32, [context_p]),
    "dsr1_chat_errmsg": (c_char_p, [chat_p]),
}


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


class LibraryError(OSError):
    """The shared library cannot be found, loaded, or has the wrong ABI."""


def _missing(name):
    def stub(*_args, **_kwargs):
        raise NotImplementedError(f"{name} is not exported by the loaded libdsr1")

    stub.__name__ = name
    stub.missing = True
    return stub


class Library:
    """The loaded shared library with every prototype of dsr1.h declared.

    Functions are attributes without the ``dsr1_`` prefix: ``lib.model_load``.
    A function the library does not export (an older or partial build) is a
    stub that raises NotImplementedError; ``lib.has("generate")`` tells.
    """

    def __init__(self, path: str):
        try:
            self.cdll = ctypes.CDLL(path)
        except OSError as e:
            raise LibraryError(f"cannot load libdsr1 from {path}: {e}") from e
        self.path = path
        self._missing = set()
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(self.cdll, name)
            except AttributeError:
                self._missing.add(name)
                fn = _missing(name)
            else:
                fn.restype = restype
                fn.argtypes = argtypes
            setattr(self, name[len("dsr1_"):], fn)
        if "dsr1_abi_version" in self._missing:
            raise LibraryError(f"{path} is not libdsr1 (no dsr1_abi_version)")
        abi = self.abi_version()
        if abi != ABI_VERSION:
            raise LibraryError(
                f"{path} has ABI version {abi}, these bindings need {ABI_VERSION}")

    def has(self, name: str) -> bool:
        """True when the library exports dsr1_<name> (or the full name)."""
        if not name.startswith("dsr1_"):
            name = "dsr1_" + name
        return name in PROTOTYPES and name not in self._missing


def _lib_filenames():
    if sys.platform == "win32":
        return ["dsr1.dll", "libdsr1.dll"]
    if sys.platform == "darwin":
        return ["libdsr1.dylib", "libdsr1.0.dylib"]
    return ["libdsr1.so", "libdsr1.so.0"]


def _candidates():
    """(where, path) pairs in lookup order (see the module docstring)."""
    here = Path(__file__).resolve().parent
    for fname in _lib_filenames():
        yield "bundled", here / "_lib" / fname
    # bindings/python/dsr1 -> the source root is two levels above
    if len(here.parents) > 2 and (here.parents[2] / "include" / "dsr1.h").is_file():
        for fname in _lib_filenames():
            yield "build tree", here.parents[2] / "build" / fname
    found = ctypes.util.find_library("dsr1")
    if found:  # a name the dynamic loader resolves (libdsr1.so.0), or a path
        yield "loader", found
    for libdir in _pkg_config_libdirs() + _default_libdirs():
        for fname in _lib_filenames():
            yield "installed", Path(libdir) / fname


def _pkg_config_libdirs():
    import shutil
    import subprocess
    exe = shutil.which("pkg-config")
    if not exe:
        return []
    try:
        r = subprocess.run([exe, "--variable=libdir", "dsr1"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [r.stdout.strip()] if r.returncode == 0 and r.stdout.strip() else []


def _default_libdirs():
    if sys.platform == "win32":
        return []
    dirs = ["/usr/local/lib"]
    multiarch = getattr(sys.implementation, "_multiarch", None)
    if multiarch:
        dirs.append(f"/usr/local/lib/{multiarch}")
    return dirs


def find_library() -> str | None:
    """The path the bindings would load, or None (see the module docstring)."""
    env = os.environ.get("DSR1_LIBRARY")
    if env:
        return env
    for where, cand in _candidates():
        if where == "loader" or os.path.isfile(cand):
            return str(cand)
    return None


_lock = threading.Lock()
_lib: Library | None = None


def load_library(path: str | os.PathLike | None = None) -> Library:
    """Load (once) and return the library. With a path, load that one instead
    of searching; it replaces a previously loaded one for new objects."""
    global _lib
    with _lock:
        if path is not None:
            _lib = Library(os.fspath(path))
        elif _lib is None:
            found = find_library()
            if found is None:
                raise LibraryError(
                    "libdsr1 not found: set DSR1_LIBRARY to the path of libdsr1.so, install it "
                    "('meson install -C build', or a self-contained dsr1 wheel), or build it in this "
                    "source tree with 'meson setup build && ninja -C build'")
            _lib = Library(found)
        return _lib


def lib() -> Library:
    """The loaded library (loading it on first use)."""
    return _lib if _lib is not None else load_library()
