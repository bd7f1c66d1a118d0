"""Tests of the Hugging Face -> GGUF converter (bindings/python/dsr1/convert.py).

The checkpoints in tests/data/hf are the tiny fixture models as Hugging Face
ships them (qwen2 BF16, llama F16 in rotate-half order with llama3 rope
scaling, deepseek2 block-scaled FP8 with an MTP layer in two shards). Each is
converted, loaded through the library and run on the scalar backend against
NAME.strict.f32 (the logits of exactly the checkpoint's values).
"""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))

np = pytest.importorskip("numpy")

import dsr1  # noqa: E402
from dsr1 import convert as cv  # noqa: E402
from dsr1.gguf import GGMLType, GGUFReader  # noqa: E402
from dsr1.safetensors import FP8_E4M3_TABLE, SafetensorsFile, dequantize_blockwise  # noqa: E402

DATA = Path(os.environ.get("DSR1_TEST_DATA", ROOT / "tests" / "data"))
HF = DATA / "hf"
STRICT = 1e-3
NAMES = ("qwen2", "llama", "deepseek2")


def manifest(name):
    for line in (HF / "MANIFEST").read_text().splitlines():
        f = line.split()
        if f and f[0] == name:
            return int(f[1]), [int(x) for x in f[2:]]
    raise LookupError(name)


def reference(name):
    n_vocab, toks = manifest(f"{name}-hf")
    ref = np.fromfile(HF / f"{name}-hf.strict.f32", dtype="<f4")
    return toks, ref.reshape(len(toks), n_vocab)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> path; deepseek2 (FP8) also in f32 ("deepseek2-f32") and the
    others in q8_0 ("qwen2-q8_0")."""
    d = tmp_path_factory.mktemp("converted")
    out = {}
    for name, key, outtype in (("qwen2", "qwen2", "auto"), ("llama", "llama", "auto"),
                               ("deepseek2", "deepseek2", "auto"), ("deepseek2", "deepseek2-f32", "f32"),
                               ("qwen2", "qwen2-q8_0", "q8_0")):
        path = d / f"{key}.gguf"
        cv.convert(str(HF / f"{name}-hf"), str(path), outtype=outtype)
        out[key] = path
    return out


def all_logits(model, toks, one_by_one=False):
    with dsr1.Context(model, n_ctx=64, backend="scalar", n_threads=1, kv_type="f32") as ctx:
        if not one_by_one:
            ctx.eval(toks, logits_all=True)
            return np.stack([ctx.logits(i) for i in range(len(toks))])
        rows = []
        for t in toks:
            ctx.eval([t])
            rows.append(ctx.logits(-1))
        return np.stack(rows)


@pytest.mark.parametrize("key", ["qwen2", "llama", "deepseek2-f32"])
def test_logits_match_reference(converted, key):
    name = key.split("-")[0]
    toks, ref = reference(name)
    with dsr1.Model.load(converted[key]) as model:
        assert model.arch == name
        for one_by_one in (False, True):
            got = all_logits(model, toks, one_by_one)
            per_pos = np.abs(got - ref).max(axis=1)
            assert per_pos.max() < STRICT, (key, one_by_one, per_pos)


def test_fp8_default_is_bf16(converted):
    """FP8 dequantized values rounded to BF16: close, not exact."""
    r = GGUFReader(str(converted["deepseek2"]))
    assert r.tensors["blk.1.ffn_up_exps.weight"].type == GGMLType.BF16
    assert r.tensors["blk.1.ffn_gate_inp.weight"].type == GGMLType.F32
    assert r.kv["general.file_type"] == 32
    toks, ref = reference("deepseek2")
    with dsr1.Model.load(converted["deepseek2"]) as model:
        got = all_logits(model, toks)
    assert np.abs(got - ref).max() < 0.05
    srt = np.sort(ref, axis=1)
    clear = srt[:, -1] - srt[:, -2] > 0.1
    assert (got.argmax(1) == ref.argmax(1))[clear].all()


def test_q8_0(converted):
    r = GGUFReader(str(converted["qwen2-q8_0"]))
    assert r.tensors["blk.0.attn_q.weight"].type == GGMLType.Q8_0
    assert r.tensors["blk.0.attn_q.bias"].type == GGMLType.F32
    toks, ref = reference("qwen2")
    with dsr1.Model.load(converted["qwen2-q8_0"]) as model:
        got = all_logits(model, toks)
    assert np.abs(got - ref).max() < 0.25


@pytest.mark.parametrize("key,fixture", [("qwen2", "qwen2-bf16"), ("llama", "llama-f16")])
def test_matrices_equal_gguf_fixture(converted, key, fixture):
    """The HF checkpoints were made from these GGUF files: every matrix must
    come back bit-exact (llama: the q/k permutation undone and redone), in the
    lossless type; rope_freqs within float rounding."""
    a = GGUFReader(str(converted[key]))
    b = GGUFReader(str(DATA / "models" / f"{fixture}.gguf"))
    assert set(a.tensors) == set(b.tensors)
    want = GGMLType.BF16 if key == "qwen2" else GGMLType.F16
    for n, t in a.tensors.items():
        if len(t.shape) == 1:
            assert t.type == GGMLType.F32, n
            assert np.allclose(t.numpy(), b.tensor(n), rtol=1e-2, atol=1e-6), n  # BF16-rounded norms
        else:
            assert t.type == want, n
            assert t.shape == b.tensors[n].shape, n
            assert np.array_equal(t.numpy(), b.tensor(n)), n
    for k in ("context_length", "embedding_length", "block_count", "feed_forward_length",
              "attention.head_count", "attention.head_count_kv", "rope.freq_base",
              "attention.layer_norm_rms_epsilon", "rope.dimension_count"):
        assert a.kv[f"{key}.{k}"] == b.kv[f"{key}.{k}"], k


def test_deepseek2_layout(converted):
    a = GGUFReader(str(converted["deepseek2-f32"]))
    b = GGUFReader(str(DATA / "models" / "deepseek2-f16.gguf"))
    assert set(a.tensors) == set(b.tensors)  # the MTP embedding / head equal the main ones: not repeated
    for n, t in a.tensors.items():
        assert t.shape == b.tensors[n].shape, n
    skip = ("general.", "tokenizer.")
    for k, v in b.kv.items():
        if not k.startswith(skip):
            assert a.kv.get(k) == v, k
    # FP8 x block scale decoded exactly
    st = SafetensorsFile(str(HF / "deepseek2-hf" / "model-00001-of-00002.safetensors"))
    w = st.get("model.layers.0.self_attn.o_proj.weight")
    s = st.get("model.layers.0.self_attn.o_proj.weight_scale_inv")
    assert np.array_equal(a.tensor("blk.0.attn_output.weight"), dequantize_blockwise(w, s))
    st.close()


def test_speculative_mtp_on_converted(converted):
    with dsr1.Model.load(converted["deepseek2-f32"]) as model:
        prompt = [295, 12, 7, 40, 41]
        runs = []
        for mtp in (False, True):
            with dsr1.Context(model, n_ctx=64, backend="scalar", n_threads=1) as ctx, \
                    dsr1.Sampler.greedy(model) as smp:
                gen = dsr1.Generation(ctx, smp, prompt, max_new_tokens=16, speculative_mtp=mtp,
                                      speculative_min_p=0.0)  # verify every draft
                runs.append(([t for ev in gen for t in ev.tokens], gen.stats))
                gen.close()
        assert runs[0][0] == runs[1][0]
        assert runs[1][1].n_drafted > 0


TEXTS = [
    "Hello world, the 123 quick brown fox!",
    "<｜User｜>What is 2+2?<｜Assistant｜><think>\nthe answer</think>4",
    "  leading spaces\n\n\tand tabs  ",
    "中文 ünïcödé 😀 12345678",
    "there the then in an inner",
]


@pytest.mark.parametrize("name,fixture", [("qwen2", "qwen2-f16"), ("llama", "llama-f16"),
                                          ("deepseek2", "deepseek2-f16")])
def test_tokenizer_matches_gguf_fixture(converted, name, fixture):
    a = GGUFReader(str(converted[name]))
    b = GGUFReader(str(DATA / "models" / f"{fixture}.gguf"))
    for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
              "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
              "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"):
        assert a.kv[k] == b.kv[k], k
    assert len(a.kv["tokenizer.ggml.tokens"]) == 303
    with dsr1.Model.load(converted[name], vocab_only=True) as ma, \
            dsr1.Model.load(DATA / "models" / f"{fixture}.gguf", vocab_only=True) as mb:
        assert (ma.bos, ma.eos, ma.user, ma.assistant, ma.think_begin, ma.think_end) == \
            (mb.bos, mb.eos, mb.user, mb.assistant, mb.think_begin, mb.think_end)
        for text in TEXTS:
            for special in (False, True):
                ids = ma.tokenize(text, add_bos=True, parse_special=special)
                assert ids == mb.tokenize(text, add_bos=True, parse_special=special), text
                assert ma.detokenize(ids[1:]) == mb.detokenize(ids[1:])


def test_real_r1_tokenizer_vocab_only(tmp_path):
    """The released DeepSeek-R1 tokenizer.json (in tests/data, gzipped)
    converts to exactly the R1 vocabulary fixture (tokens, types, merges,
    specials)."""
    src = DATA / "hf" / "deepseek-r1-tokenizer"
    ck = tmp_path / "r1"
    ck.mkdir()
    with gzip.open(src / "tokenizer.json.gz", "rb") as f:
        (ck / "tokenizer.json").write_bytes(f.read())
    shutil.copy(src / "tokenizer_config.json", ck / "tokenizer_config.json")
    (ck / "config.json").write_text(json.dumps({"architectures": ["DeepseekV3ForCausalLM"]}))
    out = tmp_path / "r1.gguf"
    cv.convert(str(ck), str(out), vocab_only=True)
    a, b = GGUFReader(str(out)), GGUFReader(str(DATA / "vocab" / "ggml-vocab-deepseek-r1.gguf"))
    for k, v in b.kv.items():
        if k != "general.name":
            assert a.kv.get(k) == v, k
    assert not a.tensors


def test_fp8_table():
    t = FP8_E4M3_TABLE
    assert t[0x38] == 1.0 and t[0x7E] == 448.0 and t[0xFE] == -448.0
    assert t[0x01] == 2.0 ** -9 and t[0x08] == 2.0 ** -6 and t[0x07] == 7 * 2.0 ** -9
    assert t[0x00] == 0.0 and np.signbit(t[0x80]) and np.isnan(t[0x7F]) and np.isnan(t[0xFF])
    pos = t[:0x7F]
    assert (np.diff(pos) > 0).all()
    assert np.array_equal(t[0x80:0xFF], -t[:0x7F])


def test_permute_roundtrip():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2 * 8, 3)).astype(np.float32)
    p = cv.permute_rope_rows(w, 2)
    # head 0 rows 0..7: HF (i, i+4) pairs become adjacent (2i, 2i+1)
    assert np.array_equal(p[0], w[0]) and np.array_equal(p[1], w[4]) and np.array_equal(p[2], w[1])
    assert np.array_equal(p[8], w[8]) and np.array_equal(p[9], w[12])


# ---------------------------------------------------------------- bad input

def write_safetensors(path, tensors, header_extra=None):
    """tensors: name -> (dtype name, numpy array of the stored elements)"""
    header, blobs, off = {}, [], 0
    for name, (dt, a) in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header.update(header_extra or {})
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def qwen2_dir(tmp_path, drop=(), extra=None, config=None):
    """A copy of qwen2-hf, optionally without some tensors / with extra ones."""
    d = tmp_path / "ck"
    d.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(HF / "qwen2-hf" / f, d / f)
    if config:
        c = json.loads((d / "config.json").read_text())
        c.update(config)
        (d / "config.json").write_text(json.dumps(c))
    st = SafetensorsFile(str(HF / "qwen2-hf" / "model.safetensors"))
    t = {n: (st.dtype(n), st.raw(n).copy()) for n in st.names if n not in drop}
    st.close()
    t.update(extra or {})
    write_safetensors(d / "model.safetensors", t)
    return d


def test_error_not_a_directory(tmp_path):
    with pytest.raises(cv.ConvertError, match="not a directory"):
        cv.convert(str(tmp_path / "nope"), str(tmp_path / "o.gguf"))


def test_error_no_config(tmp_path):
    with pytest.raises(cv.ConvertError, match="config.json"):
        cv.convert(str(tmp_path), str(tmp_path / "o.gguf"))


def test_error_unknown_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["MistralForCausalLM"]}))
    with pytest.raises(cv.ConvertError, match="MistralForCausalLM.*not supported"):
        cv.convert(str(tmp_path), str(tmp_path / "o.gguf"))


def test_error_missing_tensor(tmp_path):
    d = qwen2_dir(tmp_path, drop=("model.layers.1.mlp.up_proj.weight",))
    with pytest.raises(cv.ConvertError, match="model.layers.1.mlp.up_proj.weight"):
        cv.convert(str(d), str(tmp_path / "o.gguf"))
    assert not (tmp_path / "o.gguf").exists() and not (tmp_path / "o.gguf.part").exists()


def test_error_unexpected_tensor(tmp_path):
    d = qwen2_dir(tmp_path, extra={"model.layers.0.mlp.mystery.weight": ("F32", np.zeros((4, 4), np.float32))})
    with pytest.raises(cv.ConvertError, match="mystery"):
        cv.convert(str(d), str(tmp_path / "o.gguf"))


def test_error_fp8_without_scale(tmp_path):
    d = qwen2_dir(tmp_path, extra={"model.layers.0.mlp.up_proj.weight":
                                   ("F8_E4M3", np.zeros((512, 256), np.uint8))})
    with pytest.raises(cv.ConvertError, match="block scale"):
        cv.convert(str(d), str(tmp_path / "o.gguf"))


def test_error_truncated_safetensors(tmp_path):
    d = qwen2_dir(tmp_path)
    p = d / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(cv.ConvertError, match="data offsets"):
        cv.convert(str(d), str(tmp_path / "o.gguf"))


def test_error_unsupported_rope_scaling(tmp_path):
    d = qwen2_dir(tmp_path, config={"rope_scaling": {"type": "yarn", "factor": 4.0}})
    with pytest.raises(cv.ConvertError, match="rope_scaling"):
        cv.convert(str(d), str(tmp_path / "o.gguf"))


def test_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "bindings" / "python"))
    r = subprocess.run([sys.executable, "-m", "dsr1.convert", str(tmp_path / "missing"), str(tmp_path / "o.gguf")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "not a directory" in r.stderr
    out = tmp_path / "q.gguf"
    r = subprocess.run([sys.executable, "-m", "dsr1.convert", str(HF / "qwen2-hf"), str(out), "--outtype", "f16"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert GGUFReader(str(out)).tensors["blk.0.attn_q.weight"].type == GGMLType.F16


@pytest.mark.skipif(not dsr1.devices(), reason="no Vulkan device (loader, driver or device missing)")
def test_tied_embeddings_offloaded(tmp_path):
    """A checkpoint with tied embeddings (no lm_head; the GGUF has no
    output.weight): every layer and the head on the device, where the head
    is the embedding table's one copy, gives the CPU's logits."""
    d = qwen2_dir(tmp_path, drop=("lm_head.weight",), config={"tie_word_embeddings": True})
    out = tmp_path / "tied.gguf"
    cv.convert(str(d), str(out), outtype="f32")
    r = GGUFReader(str(out))
    names = list(r.tensors)
    assert "output.weight" not in names and "token_embd.weight" in names
    toks = [1, 2, 3, 4, 5, 6, 7, 8]
    logits = {}
    for ngl in (0, -1):
        with dsr1.Model.load(str(out), n_gpu_layers=ngl) as m, \
                dsr1.Context(m, n_ctx=64, backend="scalar", n_threads=1, kv_type="f32") as c:
            assert c.backend == ("vulkan" if ngl else "scalar")
            c.eval(toks, logits_all=True)
            logits[ngl] = np.stack([c.logits(i) for i in range(len(toks))])
    assert np.abs(logits[0] - logits[-1]).max() < 1e-3
