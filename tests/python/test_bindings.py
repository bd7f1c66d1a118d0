"""Tests of the Python bindings (bindings/python/dsr1) against the built library.

Run through meson (``meson test -C build --suite bindings``) or directly::

    DSR1_LIBRARY=build/libdsr1.so /usr/bin/python3 -m pytest -q tests/python

DSR1_TEST_DATA overrides the fixture directory (default: tests/data).
"""

import array
import ctypes
import errno
import gc
import math
import os
import re
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))

import dsr1  # noqa: E402
from dsr1 import DSR1Error, EventType, Status, StopReason  # noqa: E402

try:
    import numpy as np
except ImportError:  # the bindings work without numpy; a few tests need it
    np = None

needs_numpy = pytest.mark.skipif(np is None, reason="numpy is not installed")

DATA = Path(os.environ.get("DSR1_TEST_DATA", ROOT / "tests" / "data"))
MODEL = DATA / "models" / "qwen2-q8_0.gguf"
VOCAB = DATA / "vocab" / "ggml-vocab-qwen2.gguf"
R1_VOCAB = DATA / "vocab" / "ggml-vocab-deepseek-r1.gguf"
TOLERANCE = 1e-3  # with an f32 KV cache (kv_type="f32"): the strict reference
F16_TOLERANCE = 3e-3  # with the default f16 cache (tests/test_logits.c measures it)


def manifest(name):
    for line in (DATA / "models" / "MANIFEST").read_text().splitlines():
        f = line.split()
        if f and f[0] == name:
            return int(f[1]), [int(x) for x in f[2:]]
    raise LookupError(name)


def reference(name):
    """(tokens, rows of reference logits as lists)"""
    n_vocab, toks = manifest(name)
    raw = array.array("f")
    with open(DATA / "models" / f"{name}.strict.f32", "rb") as f:
        raw.frombytes(f.read())
    assert len(raw) == n_vocab * len(toks)
    return toks, [raw[i * n_vocab:(i + 1) * n_vocab] for i in range(len(toks))]


def max_diff(a, b):
    assert len(a) == len(b)
    m = 0.0
    for x, y in zip(a, b):
        d = abs(float(x) - float(y))
        if not d <= m:
            m = math.inf if math.isnan(d) else d
    return m


def argmax(v):
    return max(range(len(v)), key=lambda i: v[i])


@pytest.fixture(scope="module")
def model():
    with dsr1.Model.load(MODEL) as m:
        yield m


@pytest.fixture(scope="module")
def vocab():
    with dsr1.Model.load(VOCAB, vocab_only=True) as m:
        yield m


@pytest.fixture(scope="module")
def r1vocab():
    with dsr1.Model.load(R1_VOCAB, vocab_only=True) as m:
        yield m


@pytest.fixture
def ctx(model):
    with dsr1.Context(model, n_ctx=128, backend="scalar") as c:
        yield c


@pytest.fixture
def greedy(model):
    with dsr1.Sampler.greedy(model) as s:
        yield s


@pytest.fixture(scope="module")
def prompt(model):
    return model.chat_tokenize([{"role": "user", "content": "What is 2+2?"}])


# ---------------------------------------------------------------------------
# library
# ---------------------------------------------------------------------------


def test_library_basics():
    lib = dsr1.load_library()
    assert dsr1.abi_version() == dsr1.ABI_VERSION == 0
    major, minor, patch = (int(x) for x in dsr1.version().split("."))
    assert major >= 0 and minor >= 0 and patch >= 0
    assert "scalar" in dsr1.backends()
    assert dsr1.backend_available("scalar")
    assert not dsr1.backend_available("no-such-backend")
    assert dsr1.type_name(dsr1.Type.Q8_0) == "q8_0"
    assert dsr1.type_name(999) == "unknown"
    assert dsr1.status_string(Status.ERR_FORMAT).startswith("DSR1_ERR_FORMAT")
    # every function of dsr1.h is exported and declared
    assert not lib._missing, sorted(lib._missing)
    assert lib.has("generate") and lib.has("dsr1_chat_ask") and not lib.has("nonexistent")


def _header():
    text = (ROOT / "include" / "dsr1.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def test_bindings_mirror_header():
    """Every function and struct field of dsr1.h is declared, in order."""
    hdr = _header()
    funcs = set(re.findall(r"DSR1_API[^;{]*?\b(dsr1_\w+)\s*\(", hdr))
    assert funcs == set(dsr1._capi.PROTOTYPES), funcs ^ set(dsr1._capi.PROTOTYPES)
    structs = re.findall(r"typedef struct (dsr1_\w+) \{(.*?)\} \1;", hdr, flags=re.S)
    assert len(structs) >= 8
    for name, body in structs:
        fields = [re.search(r"(\w+)\s*(\[[^]]*\])?\s*$", decl.strip()).group(1)
                  for decl in body.split(";") if decl.strip()]
        ours = [f[0] for f in getattr(dsr1._capi, name)._fields_]
        assert ours == fields, name


def test_library_lookup_env():
    assert dsr1.find_library() == os.environ.get("DSR1_LIBRARY", dsr1.find_library())


def test_bad_library_path(tmp_path):
    bogus = tmp_path / "libdsr1.so"
    bogus.write_bytes(b"not an ELF file")
    with pytest.raises(dsr1.LibraryError):
        dsr1._capi.Library(str(bogus))


# ---------------------------------------------------------------------------
# models: properties, metadata, tensors, lifetime, errors
# ---------------------------------------------------------------------------


def test_model_properties(model):
    n_vocab, _ = manifest("qwen2-q8_0")
    assert model.arch == "qwen2"
    assert model.n_vocab == n_vocab
    assert model.n_layer == int(model.metadata["qwen2.block_count"])
    assert model.n_embd == int(model.metadata["qwen2.embedding_length"])
    assert model.n_ctx_train == int(model.metadata["qwen2.context_length"])
    assert model.n_head == int(model.metadata["qwen2.attention.head_count"])
    assert model.n_head_kv == int(model.metadata["qwen2.attention.head_count_kv"])
    assert model.n_params > 0 and model.size_bytes > 0
    assert "qwen2" in repr(model)


def test_metadata_mapping(model):
    md = model.metadata
    keys = list(md)
    assert len(keys) == len(md) > 0
    assert len(set(keys)) == len(keys)
    assert md["general.architecture"] == "qwen2"
    assert "general.architecture" in md
    assert "no.such.key" not in md
    with pytest.raises(KeyError):
        md["no.such.key"]
    with pytest.raises(KeyError):
        md[42]
    assert md.get("no.such.key", "x") == "x"
    for k, v in md.items():
        assert isinstance(v, str)
    # long arrays are cut after 16 elements
    toks = md["tokenizer.ggml.tokens"]
    assert toks.startswith("[") and toks.endswith(f"({model.n_vocab} items)]")


def test_buffer_retry_protocol(model):
    """The needed-size protocol: start with a buffer of 1 and grow."""
    lib, p = model._capi, model._p
    full = model.metadata["tokenizer.ggml.tokens"]
    got = dsr1._read_bytes(lambda b, s, n: lib.model_meta_value(p, b"tokenizer.ggml.tokens", b, s, n), 1)
    assert got.decode() == full
    text = b"Hello world, hello tokens " * 20
    ids = model.tokenize(text)
    got = dsr1._read_tokens(lambda t, c, n: lib.tokenize(p, text, len(text), t, c, n, 0), 1)
    assert got == ids
    ptr, count, _keep = dsr1._tokens_in(ids)
    got = dsr1._read_bytes(lambda b, s, n: lib.detokenize(p, ptr, count, b, s, n, 0), 1)
    assert got == text


def test_tensors(model):
    ts = model.tensors
    names = [t.name for t in ts]
    assert len(set(names)) == len(names) == len(ts) > 0
    emb = {t.name: t for t in ts}["token_embd.weight"]
    assert emb.shape == (model.n_embd, model.n_vocab)
    assert emb.n_dims == 2
    assert emb.type == dsr1.Type.Q8_0 and emb.type_name == "q8_0"
    assert sum(t.n_bytes for t in ts) <= model.size_bytes
    assert all(1 <= t.n_dims <= 4 and all(d > 0 for d in t.shape) for t in ts)


def test_model_close_and_context_manager():
    with dsr1.Model.load(MODEL) as m:
        ctx = dsr1.Context(m, n_ctx=16)
        dec = m.decoder()
        assert not m.closed
    assert m.closed and ctx.closed and dec.closed  # closing cascades to borrowers
    with pytest.raises(ValueError):
        m.arch
    with pytest.raises(ValueError):
        ctx.eval([1])
    m.close()  # idempotent
    ctx.close()


def test_garbage_collection_frees():
    m = dsr1.Model.load(MODEL)
    ctx = dsr1.Context(m, n_ctx=16)
    del m  # the context keeps the model alive
    ctx.eval([1, 2])
    assert ctx.model.n_vocab > 0
    del ctx
    gc.collect()


def test_model_from_bytes(model):
    data = MODEL.read_bytes()
    m = dsr1.Model.from_bytes(data)
    del data
    gc.collect()
    assert m.n_vocab == model.n_vocab
    assert m.path is None
    with dsr1.Context(m, n_ctx=16, backend="scalar") as c:
        c.eval([1, 2, 3])
        assert len(c.logits(as_numpy=False)) == m.n_vocab
    m.close()


def test_log_callback():
    lines = []
    with dsr1.Model.load(MODEL, log=lambda lvl, msg: lines.append((lvl, msg)),
                         log_level=dsr1.LogLevel.DEBUG) as m:
        dsr1.Context(m, n_ctx=16).close()
    assert lines and all(isinstance(lv, dsr1.LogLevel) and isinstance(s, str) for lv, s in lines)

    def bad(lvl, msg):
        raise RuntimeError("log callback failure")
    # an exception in the log callback is printed, never crashes or propagates
    with dsr1.Model.load(MODEL, log=bad, log_level=dsr1.LogLevel.DEBUG) as m:
        assert m.n_vocab > 0


def test_load_errors(tmp_path):
    with pytest.raises(DSR1Error) as e:
        dsr1.Model.load(tmp_path / "missing.gguf")
    assert e.value.status == Status.ERR_IO
    assert "missing.gguf" in e.value.message
    assert str(e.value).startswith("ERR_IO")
    # and it is what Python's own open() would raise
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, dsr1.DSR1OSError)
    assert e.value.errno == errno.ENOENT and e.value.filename == str(tmp_path / "missing.gguf")
    with pytest.raises(IsADirectoryError):
        dsr1.Model.load(tmp_path)

    good = MODEL.read_bytes()
    bad_magic = tmp_path / "magic.gguf"
    bad_magic.write_bytes(b"XXXX" + good[4:])
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good[: len(good) // 2])
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(good[:100])
    for path in (bad_magic, truncated, header_only):
        with pytest.raises(DSR1Error) as e:
            dsr1.Model.load(path)
        assert e.value.status == Status.ERR_FORMAT, (path.name, e.value)
        assert isinstance(e.value, dsr1.FormatError) and isinstance(e.value, ValueError)
        assert e.value.message
    with pytest.raises(DSR1Error) as e:
        dsr1.Model.from_bytes(b"GGUF")
    assert e.value.status == Status.ERR_FORMAT


def test_error_type():
    e = DSR1Error(Status.ERR_NUMERIC, "bad numbers")
    assert e.status is Status.ERR_NUMERIC and e.message == "bad numbers"
    assert "ERR_NUMERIC" in str(e)
    assert DSR1Error(1234).status == 1234  # unknown codes stay ints
    # each status has its class, which also derives from the matching built-in
    builtin = {
        Status.ERR_INVALID_ARGUMENT: ValueError, Status.ERR_IO: OSError, Status.ERR_FORMAT: ValueError,
        Status.ERR_UNSUPPORTED: NotImplementedError, Status.ERR_OUT_OF_MEMORY: MemoryError,
        Status.ERR_BUFFER_TOO_SMALL: BufferError, Status.ERR_CONTEXT_FULL: OverflowError,
        Status.ERR_NUMERIC: ArithmeticError, Status.ERR_CANCELLED: DSR1Error,
        Status.ERR_STATE: RuntimeError, Status.ERR_INTERNAL: RuntimeError,
    }
    assert set(builtin) == set(Status) - {Status.OK}
    for st, base in builtin.items():
        e = DSR1Error.from_status(st, "why")
        assert isinstance(e, DSR1Error) and isinstance(e, base), st
        assert type(e) is not DSR1Error and e.status is st
        assert str(e) == f"{st.name}: why"
    assert type(DSR1Error.from_status(1234)) is DSR1Error


# ---------------------------------------------------------------------------
# contexts: eval and logits against the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["qwen2-q8_0", "llama-q8_0", "deepseek2-q8_0"])
def test_logits_batch_matches_reference(name):
    toks, ref = reference(name)
    with dsr1.Model.load(DATA / "models" / f"{name}.gguf") as m, \
            dsr1.Context(m, n_ctx=64, backend="scalar", kv_type="f32") as c:
        assert m.arch == name.split("-")[0]
        c.eval(toks, logits_all=True)
        assert c.n_past == len(toks)
        worst = max(max_diff(c.logits(i, as_numpy=False), ref[i]) for i in range(len(toks)))
        assert worst < TOLERANCE
        assert max_diff(c.logits(-1, as_numpy=False), ref[-1]) < TOLERANCE


def test_generate_deepseek2():
    """The MoE architecture through the whole generation path."""
    with dsr1.Model.load(DATA / "models" / "deepseek2-q8_0.gguf") as m, \
            dsr1.Context(m, n_ctx=128, backend="scalar") as c:
        prompt = m.chat_tokenize([("user", "Hello")])
        events = []
        out = dsr1.generate(c, dsr1.Sampler.greedy(m), prompt, max_new_tokens=16, on_event=events.append)
        check_stream(events, out, m, 16)


def test_logits_step_matches_reference(model):
    toks, ref = reference("qwen2-q8_0")
    with dsr1.Context(model, n_ctx=64, n_batch=5, backend="scalar", n_threads=2, kv_type=dsr1.KVType.F32) as c:
        for i, t in enumerate(toks):
            c.eval(t)  # one int, at n_past
            assert c.n_past == i + 1
            assert max_diff(c.logits(as_numpy=False), ref[i]) < TOLERANCE


@needs_numpy
def test_logits_numpy(model):
    toks, ref = reference("qwen2-q8_0")
    with dsr1.Context(model, n_ctx=64, backend="scalar", kv_type="f32") as c:
        c.eval(np.array(toks, dtype=np.int64), logits_all=True)
        ref_np = np.array([list(r) for r in ref], dtype=np.float32)
        for i in range(len(toks)):
            lg = c.logits(i)
            assert isinstance(lg, np.ndarray) and lg.dtype == np.float32 and lg.shape == (model.n_vocab,)
            assert np.abs(lg - ref_np[i]).max() < TOLERANCE
        first = c.logits(0)
        c.eval([toks[0]], pos=0)
        assert np.abs(first - ref_np[0]).max() < TOLERANCE  # a copy, not a view


def test_truncate_rewind_reset(model):
    toks, ref = reference("qwen2-q8_0")
    with dsr1.Context(model, n_ctx=64, backend="scalar", kv_type="f32") as c:
        assert c.n_ctx == 64 and c.backend == "scalar" and c.kv_bytes_per_token > 0
        c.eval(toks)
        c.truncate(10)
        assert c.n_past == 10
        c.eval(toks[10:])
        assert max_diff(c.logits(as_numpy=False), ref[-1]) < TOLERANCE
        c.eval(toks[5:], pos=5)  # rewind and re-evaluate
        assert c.n_past == len(toks)
        assert max_diff(c.logits(as_numpy=False), ref[-1]) < TOLERANCE
        c.reset()
        assert c.n_past == 0
        c.eval(toks[:1])
        assert max_diff(c.logits(as_numpy=False), ref[0]) < TOLERANCE


def test_kv_type(model):
    """f16 (the default) halves the cache and stays within F16_TOLERANCE of
    the reference; batched and one token at a time agree bit for bit."""
    toks, ref = reference("qwen2-q8_0")
    sizes = {}
    for kv in (dsr1.KVType.DEFAULT, dsr1.KVType.F16, "f16", dsr1.KVType.F32, "F32"):
        with dsr1.Context(model, n_ctx=64, backend="scalar", kv_type=kv) as c:
            sizes[str(kv)] = c.kv_bytes_per_token
            if kv in (dsr1.KVType.DEFAULT, "f16"):
                c.eval(toks, logits_all=True)
                batched = [list(c.logits(i, as_numpy=False)) for i in range(len(toks))]
                assert max(max_diff(b, r) for b, r in zip(batched, ref)) < F16_TOLERANCE
                c.reset()
                for i, t in enumerate(toks):
                    c.eval(t)
                    assert list(c.logits(as_numpy=False)) == batched[i]
    f16, f32 = sizes[str(dsr1.KVType.F16)], sizes[str(dsr1.KVType.F32)]
    assert f32 == 2 * f16 == model.n_layer * 2 * 2 * 64 * 4
    assert sizes[str(dsr1.KVType.DEFAULT)] == sizes["f16"] == f16 and sizes["F32"] == f32
    # the ctypes struct is the library's: the default function fills all of it
    p = dsr1._capi.dsr1_context_params()
    p.kv_type = 77
    dsr1._capi.lib().context_params_default(ctypes.byref(p), ctypes.sizeof(p))
    assert p.size == ctypes.sizeof(p) and p.kv_type == dsr1.KVType.DEFAULT
    for bad in (3, -1):
        with pytest.raises(DSR1Error) as e:
            dsr1.Context(model, n_ctx=16, kv_type=bad)
        assert e.value.status == Status.ERR_INVALID_ARGUMENT and "kv_type" in str(e.value)
    with pytest.raises(ValueError):
        dsr1.Context(model, n_ctx=16, kv_type="q8_0")


def test_context_errors(model, vocab):
    with dsr1.Context(model, n_ctx=16, backend="scalar") as c:
        with pytest.raises(DSR1Error) as e:
            c.logits()
        assert e.value.status == Status.ERR_STATE
        with pytest.raises(DSR1Error) as e:
            c.eval([1, 2], pos=5)
        assert e.value.status == Status.ERR_INVALID_ARGUMENT
        with pytest.raises(DSR1Error) as e:
            c.eval([model.n_vocab])
        assert e.value.status == Status.ERR_INVALID_ARGUMENT
        with pytest.raises(DSR1Error) as e:
            c.eval([1] * 17)
        assert e.value.status == Status.ERR_CONTEXT_FULL
        with pytest.raises(ValueError):
            c.eval([2 ** 40])
        c.eval([1, 2, 3])
        with pytest.raises(DSR1Error) as e:
            c.logits(0)  # only the last row without logits_all
        assert e.value.status == Status.ERR_INVALID_ARGUMENT
        with pytest.raises(DSR1Error) as e:
            c.truncate(-1)
        assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(DSR1Error) as e:
        dsr1.Context(model, backend="no-such-backend")
    assert e.value.status in (Status.ERR_INVALID_ARGUMENT, Status.ERR_UNSUPPORTED)
    with pytest.raises(DSR1Error):
        dsr1.Context(model, n_ctx=-1)
    with pytest.raises(DSR1Error):
        dsr1.Context(vocab)  # no weights


# ---------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------

SEP = b"\n__ggml_vocab_test__\n"


def vocab_cases(name):
    inp = (DATA / "vocab" / f"ggml-vocab-{name}.gguf.inp").read_bytes().split(SEP)[:-1]
    out = (DATA / "vocab" / f"ggml-vocab-{name}.gguf.out").read_bytes().split(b"\n")
    assert len(out) >= len(inp)
    return [(text, [int(x) for x in line.split()]) for text, line in zip(inp, out)]


@pytest.mark.parametrize("name", ["qwen2", "deepseek-r1", "llama-bpe"])
def test_tokenizer_reference_cases(name):
    cases = vocab_cases(name)
    assert len(cases) > 10
    with dsr1.Model.load(DATA / "vocab" / f"ggml-vocab-{name}.gguf", vocab_only=True) as vocab:
        for text, expect in cases:
            ids = vocab.tokenize(text, parse_special=True)
            assert ids == expect, text
            assert vocab.detokenize_bytes(ids, render_control=True) == text
            # a str gives the same ids as its UTF-8 bytes
            assert vocab.tokenize(text.decode("utf-8"), parse_special=True) == expect


def test_tokenizer_stream_decoder(vocab):
    for text, expect in vocab_cases("qwen2"):
        with vocab.decoder(render_control=True) as dec:
            s = "".join(dec.push(t) for t in expect) + dec.flush()
        assert s == text.decode("utf-8"), text


def test_tokenize_flags_and_specials(r1vocab):
    vocab = r1vocab
    bos, eos = vocab.bos, vocab.eos
    assert isinstance(bos, int) and isinstance(eos, int)
    assert vocab.tokenize("") == []
    assert vocab.tokenize("hi", add_bos=True)[0] == bos
    assert vocab.tokenize("hi", add_bos=True)[1:] == vocab.tokenize("hi")
    tb, te = vocab.think_begin, vocab.think_end
    assert tb is not None and te is not None
    assert vocab.tokenize("<think>", parse_special=True) == [tb]
    assert tb not in vocab.tokenize("<think>")  # user text cannot inject control tokens
    assert vocab.token_attr(bos) == dsr1.TokenAttr.CONTROL
    assert vocab.is_eog(eos) and not vocab.is_eog(vocab.tokenize("a")[0])
    for which in dsr1.Special:
        sid = vocab.special(which)
        assert sid is None or 0 <= sid < vocab.n_vocab
    # control tokens render as nothing unless asked
    assert vocab.detokenize([bos]) == ""
    assert vocab.detokenize([bos], render_control=True) == vocab.token_to_piece(bos, True).decode()


def test_pieces_and_invalid_utf8(model):
    vocab = model  # the fixture's tiny byte-level vocabulary splits characters
    text = "naïve 日本語 🙂 end"
    ids = vocab.tokenize(text)
    pieces = [vocab.token_to_piece(t) for t in ids]
    assert all(isinstance(p, bytes) for p in pieces)
    assert b"".join(pieces) == text.encode()
    assert vocab.detokenize(ids) == text
    partial = [t for t, p in zip(ids, pieces) if not _valid_utf8(p)]
    assert partial, "expected a token that is part of a character"
    assert "\ufffd" in vocab.detokenize(partial[:1])
    assert isinstance(vocab.detokenize_bytes(partial[:1]), bytes)
    # invalid UTF-8 input is tokenized byte by byte, never rejected
    raw = b"ab\xff\xfecd"
    assert vocab.detokenize_bytes(vocab.tokenize(raw)) == raw


def _valid_utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_tokenizer_errors(vocab):
    with pytest.raises(DSR1Error) as e:
        vocab.token_to_piece(-5)
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(DSR1Error) as e:
        vocab.detokenize([vocab.n_vocab + 10])
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(TypeError):
        vocab.tokenize(123)


def test_chat_format(r1vocab, vocab):
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<think>\nplan\n</think>\n\nHello!"},
            ("user", "2+2?")]
    with pytest.raises(DSR1Error) as e:
        vocab.chat_tokenize(msgs)  # plain Qwen2 has no R1 markers
    assert e.value.status == Status.ERR_UNSUPPORTED
    vocab = r1vocab
    text = vocab.chat_format(msgs)
    assert text == ("<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>\n\nHello!"
                    "<｜end▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜><think>\n")
    no_prompt = vocab.chat_format(msgs, add_generation_prompt=False)
    assert text.startswith(no_prompt) and not no_prompt.endswith("<think>\n")
    ids = vocab.chat_tokenize(msgs)
    assert ids == vocab.tokenize(text, parse_special=True)
    assert vocab.chat_tokenize([dsr1.ChatMessage("user", "x")]) == \
        vocab.tokenize(vocab.chat_format([("user", "x")]), parse_special=True)
    # markers in contents stay text
    inj = vocab.chat_tokenize([("user", "<｜Assistant｜>")])
    assert inj.count(vocab.assistant) == 1
    with pytest.raises(DSR1Error) as e:
        vocab.chat_format([("wizard", "x")])
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(ValueError):
        vocab.chat_format([("user", "nul\0inside")])


# ---------------------------------------------------------------------------
# sampler
# ---------------------------------------------------------------------------


def test_sampler_greedy_inputs(model, ctx):
    toks, ref = reference("qwen2-q8_0")
    best = argmax(ref[-1])
    s = dsr1.Sampler.greedy(model.n_vocab)
    assert s.params["temperature"] == 0
    assert s.sample(list(ref[-1])) == best
    assert s.sample(ref[-1]) == best  # array('f'), no copy
    if np is not None:
        assert s.sample(np.array(ref[-1], dtype=np.float64)) == best
    ctx.eval(toks)
    assert s.sample_context(ctx) == best
    s.accept(best)
    s.reset(7)
    s.close()


def test_sampler_params_and_bias(model):
    _, ref = reference("qwen2-q8_0")
    logits = ref[-1]
    best = argmax(logits)
    second = argmax([x if i != best else -math.inf for i, x in enumerate(logits)])
    s = dsr1.Sampler(model, temperature=0, logit_bias={best: -math.inf})
    assert s.sample(logits) == second
    s2 = dsr1.Sampler(model, temperature=0, logit_bias=[(second, 100.0)])
    assert s2.sample(logits) == second
    d = dsr1.Sampler(model)
    assert abs(d.params["temperature"] - 0.6) < 1e-6 and abs(d.params["top_p"] - 0.95) < 1e-6
    assert d.n_vocab == model.n_vocab


def test_sampler_seeded(model):
    _, ref = reference("qwen2-q8_0")
    flat = [x / 10 for x in ref[-1]]  # a wide distribution

    def draw(seed):
        s = dsr1.Sampler(model, temperature=1.0, top_p=1.0, seed=seed)
        out = []
        for _ in range(30):
            t = s.sample(flat)
            s.accept(t)
            out.append(t)
        return out
    a = draw(1234)
    assert a == draw(1234)
    assert all(0 <= t < model.n_vocab for t in a)
    assert len(set(a + draw(99))) > 1


def test_sampler_errors(model):
    s = dsr1.Sampler.greedy(model)
    with pytest.raises(DSR1Error) as e:
        s.sample([float("nan")] * model.n_vocab)
    assert e.value.status == Status.ERR_NUMERIC
    with pytest.raises(DSR1Error) as e:
        s.sample([-math.inf] * model.n_vocab)
    assert e.value.status == Status.ERR_NUMERIC
    with pytest.raises(DSR1Error) as e:
        s.sample([0.0] * 10)
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(DSR1Error):
        dsr1.Sampler(0)


# ---------------------------------------------------------------------------
# generation
# ---------------------------------------------------------------------------


def check_stream(events, completion, model, max_new_tokens=None):
    """The invariants of an event stream."""
    assert events, "no events"
    types = [e.type for e in events]
    assert types[-1] == EventType.DONE and types.count(EventType.DONE) == 1
    assert all(isinstance(t, EventType) for t in types)
    done = events[-1]
    assert isinstance(done.stop_reason, StopReason) and done.stop_reason != StopReason.NONE
    assert completion.stop_reason == done.stop_reason
    assert all(e.stop_reason == StopReason.NONE for e in events[:-1])
    # the concatenated texts are the streams
    assert "".join(e.text for e in events if e.type == EventType.REASONING_TEXT) == completion.reasoning
    assert "".join(e.text for e in events if e.type == EventType.ANSWER_TEXT) == completion.answer
    assert all(e.text == "" for e in events
               if e.type not in (EventType.REASONING_TEXT, EventType.ANSWER_TEXT))
    # order: begin < reasoning text < end < answer text
    if EventType.REASONING_TEXT in types:
        assert EventType.REASONING_BEGIN in types
        assert types.index(EventType.REASONING_BEGIN) < types.index(EventType.REASONING_TEXT)
    if EventType.REASONING_END in types:
        end = types.index(EventType.REASONING_END)
        assert all(t != EventType.REASONING_TEXT for t in types[end:])
    assert types.count(EventType.REASONING_BEGIN) <= 1 and types.count(EventType.REASONING_END) <= 1
    # every generated token is covered once; text comes from those tokens
    toks = [t for e in events for t in e.tokens]
    assert toks == completion.tokens
    assert all(0 <= t < model.n_vocab for t in toks)
    if max_new_tokens:
        assert len(toks) <= max_new_tokens
        if done.stop_reason == StopReason.LENGTH:
            assert len(toks) == max_new_tokens


def test_generate_greedy_events(model, ctx, greedy, prompt):
    events = []
    out = dsr1.generate(ctx, greedy, prompt, max_new_tokens=40, on_event=events.append)
    assert isinstance(out, dsr1.Completion)
    check_stream(events, out, model, 40)
    assert out.stop_reason in (StopReason.EOS, StopReason.LENGTH)
    # the prompt ends with "<think>\n": generation starts in reasoning
    assert events[0].type == EventType.REASONING_BEGIN
    # the reasoning text is what the streaming decoder makes of its tokens
    rt = [t for e in events if e.type == EventType.REASONING_TEXT for t in e.tokens]
    with model.decoder() as dec:
        decoded = "".join(dec.push(t) for t in rt) + dec.flush()
    if EventType.REASONING_END in [e.type for e in events] or out.stop_reason == StopReason.LENGTH:
        assert decoded == out.reasoning
    # greedy is deterministic: a fresh context gives the same completion
    with dsr1.Context(model, n_ctx=128, backend="scalar") as c2:
        assert dsr1.generate(c2, dsr1.Sampler.greedy(model), prompt, max_new_tokens=40) == out
    # and so does the same context (the shared prefix is reused)
    assert dsr1.generate(ctx, greedy, prompt, max_new_tokens=40) == out


def test_generate_max_new_tokens(model, ctx, greedy, prompt):
    events = []
    out = dsr1.generate(ctx, greedy, prompt, max_new_tokens=3, on_event=events.append)
    check_stream(events, out, model, 3)
    assert out.stop_reason == StopReason.LENGTH and len(out.tokens) == 3


def test_generate_budget(model, ctx, greedy, prompt):
    events = []
    out = dsr1.generate(ctx, greedy, prompt, think_budget=2, max_new_tokens=30,
                        think_budget_action=dsr1.BudgetAction.STOP, on_event=events.append)
    check_stream(events, out, model)
    assert out.stop_reason == StopReason.BUDGET and out.answer == ""
    events = []
    out = dsr1.generate(ctx, greedy, prompt, think_budget=2, max_new_tokens=30, on_event=events.append)
    check_stream(events, out, model)
    assert EventType.REASONING_END in [e.type for e in events]  # closed by the budget


def test_generate_hide_reasoning(model, ctx, greedy, prompt):
    events = []
    out = dsr1.generate(ctx, greedy, prompt, max_new_tokens=20, hide_reasoning=True,
                        on_event=events.append)
    check_stream(events, out, model, 20)
    assert out.reasoning == ""
    assert EventType.REASONING_TEXT not in [e.type for e in events]


def test_generate_stop_string(model, ctx, greedy, prompt):
    # stop strings apply to the answer: let the budget close the reasoning
    opts = dict(think_budget=2, max_new_tokens=40)
    base = dsr1.generate(ctx, greedy, prompt, **opts)
    if len(base.answer) < 4:
        pytest.skip("the fixture model answers too briefly for a stop string")
    ok = [i for i in range(1, len(base.answer) - 1)
          if all(c.isascii() and c.isalnum() for c in base.answer[i:i + 2])]
    if not ok:
        pytest.skip("no plain text in the fixture model's answer for a stop string")
    stop = base.answer[ok[len(ok) // 2]:ok[len(ok) // 2] + 2]
    events = []
    out = dsr1.generate(ctx, greedy, prompt, stop_strings=[stop], on_event=events.append, **opts)
    check_stream(events, out, model)
    assert out.stop_reason == StopReason.STRING
    assert out.answer == base.answer[:base.answer.index(stop)]
    assert stop not in out.answer


def test_generate_callback_cancel(model, ctx, greedy, prompt):
    seen = []

    def on_event(ev):
        seen.append(ev)
        return ev.type == EventType.REASONING_TEXT  # cancel at the first piece
    out = dsr1.generate(ctx, greedy, prompt, max_new_tokens=40, on_event=on_event)
    assert out.stop_reason == StopReason.CANCELLED
    assert len([e for e in seen if e.type == EventType.REASONING_TEXT]) == 1


def test_generate_callback_exception(model, ctx, greedy, prompt):
    calls = []

    def on_event(ev):
        calls.append(ev)
        if ev.type == EventType.REASONING_TEXT:
            raise KeyError("from the callback")
    with pytest.raises(KeyError, match="from the callback"):
        dsr1.generate(ctx, greedy, prompt, max_new_tokens=40, on_event=on_event)
    # the exception cancelled generation: the callback was not called again for text
    assert len([e for e in calls if e.type == EventType.REASONING_TEXT]) == 1
    # everything still works afterwards
    out = dsr1.generate(ctx, greedy, prompt, max_new_tokens=5)
    assert out.stop_reason in (StopReason.LENGTH, StopReason.EOS)


def test_generate_context_full(model, greedy, prompt):
    with dsr1.Context(model, n_ctx=len(prompt) + 4, backend="scalar") as c:
        out = dsr1.generate(c, greedy, prompt, think_budget=1)  # runs until the window is full
        assert out.stop_reason in (StopReason.CONTEXT_FULL, StopReason.EOS)


def test_generation_step_api(model, ctx, greedy, prompt):
    ref = dsr1.generate(ctx, greedy, prompt, max_new_tokens=12)
    ctx.reset()
    seen = []
    with dsr1.Generation(ctx, greedy, prompt, max_new_tokens=12, on_event=seen.append) as gen:
        assert not gen.done and gen.stop_reason == StopReason.NONE
        steps = []
        while not gen.done:
            t = gen.step()
            if t is not None:
                steps.append(t)
        assert gen.step() is None  # after the end: no call into C, no error
        assert gen.stop_reason == ref.stop_reason
        assert gen.completion() == ref
        assert gen.tokens == ref.tokens and gen.reasoning == ref.reasoning and gen.answer == ref.answer
        check_stream(seen, ref, model, 12)
        st = gen.stats
        assert st.n_prompt_eval == len(prompt)
        assert st.n_generated == len(steps) <= 12
        assert 0 <= st.n_reasoning <= st.n_generated
        assert st.prompt_seconds >= 0 and st.generate_seconds >= 0
    # the prompt prefix is reused by the next generation on the same context
    with dsr1.Generation(ctx, greedy, prompt, max_new_tokens=2) as gen:
        assert gen.run() in (StopReason.LENGTH, StopReason.EOS)
        assert gen.stats.n_prompt_eval < len(prompt)


def test_generation_iterate_and_stream(model, ctx, greedy, prompt):
    ref_events = []
    ref = dsr1.generate(ctx, greedy, prompt, max_new_tokens=15, on_event=ref_events.append)
    gen = dsr1.Generation(ctx, greedy, prompt, max_new_tokens=15)
    assert list(gen) == ref_events
    gen.close()
    assert list(dsr1.stream(ctx, greedy, prompt, max_new_tokens=15)) == ref_events
    check_stream(ref_events, ref, model, 15)


def test_generation_cancel_and_errors(model, ctx, greedy, prompt):
    gen = dsr1.Generation(ctx, greedy, prompt, max_new_tokens=30)
    gen.step()
    gen.step()
    gen.cancel()
    while not gen.done:
        gen.step()
    assert gen.stop_reason == StopReason.CANCELLED

    def boom(ev):
        raise ZeroDivisionError
    gen = dsr1.Generation(ctx, greedy, prompt, max_new_tokens=30, on_event=boom)
    with pytest.raises(ZeroDivisionError):
        while not gen.done:
            gen.step()
    gen.close()
    # closing the context closes what borrows it
    with dsr1.Context(model, n_ctx=64, backend="scalar") as c:
        gen = dsr1.Generation(c, greedy, prompt, max_new_tokens=3)
    assert gen.closed
    with pytest.raises(ValueError):
        gen.step()
    with pytest.raises(DSR1Error) as e:
        dsr1.Generation(ctx, greedy, prompt, think_budget_action=7)
    assert e.value.status == Status.ERR_INVALID_ARGUMENT
    with pytest.raises(DSR1Error):
        dsr1.generate(ctx, greedy, [model.n_vocab + 1])


def test_generate_threads(model, prompt):
    """Two contexts on two threads (the GIL is released during C calls)."""
    with dsr1.Context(model, n_ctx=128, backend="scalar") as c:
        ref = dsr1.generate(c, dsr1.Sampler.greedy(model), prompt, max_new_tokens=20)
    results, errors = [None, None], []

    def work(i):
        try:
            with dsr1.Context(model, n_ctx=128, backend="scalar", n_threads=1) as c:
                results[i] = dsr1.generate(c, dsr1.Sampler.greedy(model), prompt, max_new_tokens=20)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == [ref, ref]


# ---------------------------------------------------------------------------
# chat sessions
# ---------------------------------------------------------------------------


def test_chat_session(model, ctx, greedy):
    with dsr1.Chat(ctx, greedy, system_prompt="Be brief.") as chat:
        n0 = len(chat)
        events = []
        reasoning, answer = chat.ask("Hi there", max_new_tokens=16, on_event=events.append)
        assert isinstance(reasoning, str) and isinstance(answer, str)
        assert chat.last_stop_reason in (StopReason.LENGTH, StopReason.EOS)
        assert events[-1].type == EventType.DONE
        msgs = chat.messages
        assert len(msgs) == len(chat) == n0 + 2
        assert msgs[-2] == dsr1.ChatMessage("user", "Hi there")
        assert msgs[-1].role == "assistant"
        assert answer in msgs[-1].content
        if n0:
            assert msgs[0] == ("system", "Be brief.")
        # the step-API form
        gen = chat.begin("And again?", max_new_tokens=5)
        evs = list(gen)
        assert evs[-1].type == EventType.DONE
        gen.close()
        assert len(chat) == n0 + 4 and chat.messages[-2] == ("user", "And again?")
        full = chat.ask_full("Third", max_new_tokens=4)
        assert isinstance(full, dsr1.Completion) and len(full.tokens) <= 4
        chat.reset()
        assert len(chat) == n0


def test_chat_callback_exception(model, ctx, greedy):
    with dsr1.Chat(ctx, greedy) as chat:
        def bad(ev):
            raise RuntimeError("stop here")
        with pytest.raises(RuntimeError, match="stop here"):
            chat.ask("Hi", max_new_tokens=8, on_event=bad)
        reasoning, answer = chat.ask("Hi again", max_new_tokens=4)
        assert chat.last_stop_reason in (StopReason.LENGTH, StopReason.EOS)
        with pytest.raises(ValueError):
            chat.ask("nul\0inside")


def test_speculative_mtp_same_tokens():
    """DeepSeek-V3's MTP head drafts; the tokens must equal plain decoding."""
    with dsr1.Model.load(DATA / "models" / "deepseek2-q8_0.gguf") as model:
        prompt = [295, 12, 7, 40, 41]
        runs = []
        # plain; every draft verified; none verified (min_p 1); the default gate
        for mtp, min_p in ((False, None), (True, 0.0), (True, 1.0), (True, None)):
            with dsr1.Context(model, n_ctx=128, backend="scalar") as ctx, dsr1.Sampler.greedy(model) as smp:
                gen = dsr1.Generation(ctx, smp, prompt, max_new_tokens=32, speculative_mtp=mtp,
                                      speculative_min_p=min_p)
                tokens = [t for ev in gen for t in ev.tokens]
                runs.append((tokens, gen.stats))
                gen.close()
        assert all(r[0] == runs[0][0] for r in runs)
        assert runs[0][1].n_drafted == 0 and runs[0][1].n_declined == 0
        assert runs[1][1].n_drafted > 0 and runs[1][1].n_declined == 0
        assert 0 <= runs[1][1].n_accepted <= runs[1][1].n_drafted
        assert runs[2][1].n_declined > 0  # a random-weight head is never that sure
        with dsr1.Context(model, n_ctx=128) as ctx, dsr1.Sampler.greedy(model) as smp:
            for bad in (-0.1, 1.5, float("nan")):
                with pytest.raises(dsr1.DSR1Error):
                    dsr1.Generation(ctx, smp, prompt, speculative_mtp=True, speculative_min_p=bad)


# ---------------------------------------------------------------------------
# without numpy
# ---------------------------------------------------------------------------

HIDE_NUMPY = "import sys; sys.modules['numpy'] = None\n"  # makes 'import numpy' fail


def _run_python(code, *args):
    import subprocess
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_without_numpy():
    # the bindings work
    r = _run_python(HIDE_NUMPY + "import dsr1\nm = dsr1.Model.load(sys.argv[1])\n"
                    "print(len(m.tokenize('hello')) > 0, type(m.n_vocab).__name__)", str(MODEL))
    assert r.returncode == 0 and r.stdout.split() == ["True", "int"], r.stderr
    # the converter's command line says what to install, without a traceback
    r = _run_python(HIDE_NUMPY + "import runpy; sys.argv = ['convert', '--help']\n"
                    "runpy.run_module('dsr1.convert', run_name='__main__', alter_sys=True)")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "need numpy" in r.stderr and "pip install numpy" in r.stderr and "python3-numpy" in r.stderr
    # importing it raises ModuleNotFoundError (for numpy) with the same advice
    r = _run_python(HIDE_NUMPY + "try:\n    import dsr1.convert\nexcept ModuleNotFoundError as e:\n"
                    "    print(e.name, 'pip install numpy' in str(e))")
    assert r.stdout.split() == ["numpy", "True"], (r.stdout, r.stderr)


# ---------------------------------------------------------------------------
# offload to a Vulkan device (CI: lavapipe)
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not dsr1.devices(), reason="no Vulkan device (loader, driver or device missing)")
def test_offload_matches_reference():
    """Every layer on the first device: the reference logits, the backend
    named, the device listed with its properties."""
    devs = dsr1.devices()
    assert all(d["name"] and d["backend"] == "vulkan" and d["memory"] > 0 for d in devs)
    toks, ref = reference("qwen2-q8_0")
    with dsr1.Model.load(MODEL, n_gpu_layers=-1, device=str(devs[0]["index"])) as m, \
            dsr1.Context(m, n_ctx=64, backend="scalar", kv_type="f32") as c:
        assert c.backend == "vulkan"
        c.eval(toks, logits_all=True)
        worst = max(max_diff(c.logits(i, as_numpy=False), ref[i]) for i in range(len(toks)))
        assert worst < TOLERANCE


@pytest.mark.skipif(not dsr1.devices(), reason="no Vulkan device (loader, driver or device missing)")
def test_offload_experts_on_cpu():
    """DeepSeek-R1's layout with its routed experts kept on the CPU
    (cpu_moe) and the rest on the device: the reference logits."""
    toks, ref = reference("deepseek2-q8_0")
    with dsr1.Model.load(DATA / "models" / "deepseek2-q8_0.gguf", n_gpu_layers=-1, cpu_moe=True) as m, \
            dsr1.Context(m, n_ctx=64, backend="scalar", kv_type="f32") as c:
        assert c.backend == "vulkan"
        c.eval(toks, logits_all=True)
        worst = max(max_diff(c.logits(i, as_numpy=False), ref[i]) for i in range(len(toks)))
        assert worst < TOLERANCE


def test_offload_errors():
    with pytest.raises(dsr1.DSR1Error):
        dsr1.Model.load(MODEL, n_gpu_layers=-1, device="no-such-device")
