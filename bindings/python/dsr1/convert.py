"""Convert a Hugging Face checkpoint to a GGUF file that libdsr1 loads.

Usage::

    PYTHONPATH=bindings/python python3 -m dsr1.convert CHECKPOINT_DIR OUT.gguf \\
        [--outtype auto|f32|f16|bf16|q8_0] [--vocab-only] [--pre NAME]

Needs numpy only (no torch, no ``safetensors``/``transformers`` packages).
Reads ``config.json``, the safetensors weights (one file or shards with
``model.safetensors.index.json``), ``tokenizer.json`` and
``tokenizer_config.json``. Supported ``architectures``:

* ``Qwen2ForCausalLM`` -> GGUF ``qwen2`` (DeepSeek-R1-Distill-Qwen);
* ``LlamaForCausalLM`` -> ``llama`` (DeepSeek-R1-Distill-Llama): q/k rows are
  permuted from Hugging Face's rotate-half order to GGUF's adjacent pairs, and
  ``rope_scaling`` type ``llama3`` becomes the ``rope_freqs.weight`` divisors;
* ``DeepseekV3ForCausalLM`` / ``DeepseekV2ForCausalLM`` -> ``deepseek2``
  (DeepSeek-R1 / V3): MLA with ``kv_b_proj`` split into ``attn_k_b`` /
  ``attn_v_b``, routed experts stacked into one tensor per projection, the
  ``e_score_correction_bias`` as ``exp_probs_b``, YaRN keys, and the
  multi-token-prediction layers (``model.layers.{n_layer}.*``) as
  ``blk.{n_layer}.nextn.*``. FP8 (e4m3) weights with 128x128 block scales
  (``weight_scale_inv``) are dequantized exactly to float32 first.

Tensor types (``--outtype``):

* ``auto`` (default): lossless where the source allows it: BF16 sources stay
  BF16, F16 stay F16, F32 stay F32. FP8 weights become BF16: the dequantized
  value (an FP8 number times a float32 block scale) generally needs more
  than BF16's 8 significant bits, so this rounds with a relative error
  below 2^-9 (the same as llama.cpp's converter); use ``f32`` for exact
  values.
* ``f32``, ``f16``, ``bf16``: every matrix in that type.
* ``q8_0``: every matrix whose rows are a multiple of 32 in Q8_0, others F16.

1-D tensors (norms, biases), ``rope_freqs``, the MoE router
(``ffn_gate_inp``) and ``exp_probs_b`` are always F32.

The tokenizer must be a byte-level BPE ``tokenizer.json``; the GGUF
pre-tokenizer name is chosen from its split regexes (the Qwen2 regex ->
``deepseek-r1-qwen`` when the R1 special tokens are present, else ``qwen2``;
Llama 3 -> ``llama-bpe``; DeepSeek-V3's sequence -> ``deepseek-v3``).
``--pre`` overrides it. ``--vocab-only`` writes just the tokenizer (no
weights needed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import struct
import sys

try:
    from ._numpy import np
except ModuleNotFoundError as _e:
    if __name__ == "__main__":  # python3 -m dsr1.convert: the message, no traceback
        sys.exit(str(_e))
    raise

from .gguf import (GGMLType, GGUFValueType, GGUFWriter, _align, _encode_tensor, _pack_string,
                   _pack_value, GGUF_MAGIC, GGUF_VERSION)
from .safetensors import Checkpoint, SafetensorsError, dequantize_blockwise

__all__ = ["ConvertError", "convert", "main", "OUTTYPES"]

OUTTYPES = ("auto", "f32", "f16", "bf16", "q8_0")

ARCHITECTURES = {
    "Qwen2ForCausalLM": "qwen2",
    "LlamaForCausalLM": "llama",
    "DeepseekV3ForCausalLM": "deepseek2",
    "DeepseekV2ForCausalLM": "deepseek2",
}

# llama.cpp's llama_ftype values for general.file_type
_FILE_TYPE = {GGMLType.F32: 0, GGMLType.F16: 1, GGMLType.Q8_0: 7, GGMLType.BF16: 32}

# GGUF token types
TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED, TOKEN_BYTE = 1, 2, 3, 4, 5, 6

# Pre-tokenizer split regexes as the released tokenizer.json files spell them.
_RE_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_RE_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_RE_DSV3 = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]
R1_BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"

# tensors that are always written as F32 (by GGUF name suffix)
_ALWAYS_F32 = ("ffn_gate_inp.weight", "exp_probs_b.bias", "rope_freqs.weight")

# source tensors that carry nothing the GGUF needs
_IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


class ConvertError(Exception):
    """The checkpoint cannot be converted (missing files, unsupported
    architecture or feature, inconsistent tensors)."""


# ---------------------------------------------------------------------------
# Streaming GGUF output
# ---------------------------------------------------------------------------

def _nbytes(shape, ttype: GGMLType) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    if ttype == GGMLType.Q8_0:
        return n // 32 * 34
    return n * (4 if ttype == GGMLType.F32 else 2)


class _Slices:
    """A tensor given as an iterable of its slices along the outermost axis."""

    def __init__(self, iterable):
        self._it = iterable

    def __iter__(self):
        return iter(self._it)


class _LazyWriter:
    """GGUF writer whose tensors are produced one at a time while writing, so
    that a conversion holds one tensor in memory, not the whole model."""

    def __init__(self, path: str):
        self.path = path
        self.meta = GGUFWriter(path)  # used for its key/value bookkeeping only
        self.tensors = []  # (name, shape, ttype, producer)
        self._names = set()

    def add(self, key, value, vtype=None, elem_type=None):
        self.meta.add(key, value, vtype, elem_type)

    def add_tensor(self, name, shape, ttype, producer):
        if name in self._names:
            raise ConvertError(f"two source tensors map to {name!r}")
        self._names.add(name)
        self.tensors.append((name, tuple(int(d) for d in shape), GGMLType(ttype), producer))

    def write(self, log=None) -> int:
        align = self.meta.alignment
        head = bytearray()
        head += GGUF_MAGIC
        head += struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.meta.kv))
        for key, (vtype, value, elem_type) in self.meta.kv.items():
            head += _pack_string(key)
            head += struct.pack("<I", int(vtype))
            head += _pack_value(value, vtype, elem_type)
        offset = 0
        for name, shape, ttype, _ in self.tensors:
            ne = list(reversed(shape)) or [1]
            head += _pack_string(name)
            head += struct.pack("<I", len(ne))
            head += struct.pack(f"<{len(ne)}Q", *ne)
            head += struct.pack("<IQ", int(ttype), offset)
            offset = _align(offset + _nbytes(shape, ttype), align)
        head += b"\0" * (_align(len(head), align) - len(head))
        tmp = self.path + ".part"
        try:
            with open(tmp, "wb") as f:
                f.write(head)
                pos = 0
                for name, shape, ttype, producer in self.tensors:
                    data = producer()
                    # _Slices (stacked experts) are encoded one slice of the
                    # outermost axis at a time: the bytes are the same
                    if isinstance(data, _Slices):
                        parts, whole = data, False
                    else:
                        parts, whole = [data], True
                    rows, start = 0, pos
                    for part in parts:
                        part = np.asarray(part, dtype=np.float32)
                        want = shape if whole else shape[1:]
                        if part.shape != want:
                            raise ConvertError(f"internal: {name}: a part has shape {part.shape}, "
                                               f"expected {want}")
                        if not np.isfinite(part).all():
                            raise ConvertError(f"tensor {name} has NaN or infinite values")
                        raw = _encode_tensor(part, ttype)
                        f.write(raw)
                        pos += len(raw)
                        rows += 1
                    if not whole and rows != shape[0]:
                        raise ConvertError(f"internal: {name} has {rows} slices, expected {shape[0]}")
                    if pos - start != _nbytes(shape, ttype):
                        raise ConvertError(f"internal: {name} encoded to {pos - start} bytes, "
                                           f"expected {_nbytes(shape, ttype)}")
                    pad = _align(pos, align) - pos
                    f.write(b"\0" * pad)
                    pos += pad
                    if log:
                        log(f"{name:40s} {str(list(reversed(shape))):22s} {ttype.name}")
                size = f.tell()
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return size


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def _read_json(path: str, what: str, required: bool = True):
    if not os.path.isfile(path):
        if required:
            raise ConvertError(f"{os.path.dirname(path) or '.'}: no {os.path.basename(path)} ({what})")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ConvertError(f"{path}: cannot read {what}: {e}") from None


def permute_rope_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a q/k projection (or bias) from Hugging Face's
    rotate-half layout (pairs i, i + d/2 in each head) to the adjacent-pair
    layout of GGUF ``llama`` files (pairs 2i, 2i + 1)."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ConvertError(f"cannot permute {rows} rows over {n_head} heads")
    return (w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(rope_theta: float, head_dim: int, scaling: dict) -> np.ndarray:
    """The frequency divisors of Llama 3's rope_scaling (rope_freqs.weight)."""
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    if not (factor > 0 and high > low > 0 and old_ctx > 0):
        raise ConvertError(f"rope_scaling {scaling} is not a valid llama3 scaling")
    low_wavelen = old_ctx / low
    high_wavelen = old_ctx / high
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / (rope_theta ** (i / head_dim))
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def _token_content(tok):
    if tok is None:
        return None
    if isinstance(tok, dict):
        return tok.get("content")
    return str(tok)


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

def _split_regexes(pre):
    """The Split regexes of a pre_tokenizer in order; raises on anything but
    Split / ByteLevel steps."""
    if pre is None:
        return None
    steps = pre["pretokenizers"] if pre.get("type") == "Sequence" else [pre]
    out = []
    saw_bytelevel = False
    for s in steps:
        t = s.get("type")
        if t == "Split":
            pat = s.get("pattern", {})
            if "Regex" not in pat:
                return None
            out.append(pat["Regex"])
        elif t == "ByteLevel":
            saw_bytelevel = True
            if s.get("use_regex", False):
                out.append("<gpt2>")
        else:
            return None
    return out if saw_bytelevel else None


def detect_pre(tj: dict, tokens_present) -> str:
    regexes = _split_regexes(tj.get("pre_tokenizer"))
    if regexes == [_RE_QWEN2]:
        return "deepseek-r1-qwen" if R1_BOS in tokens_present else "qwen2"
    if regexes == [_RE_LLAMA3]:
        return "llama-bpe"
    if regexes == _RE_DSV3:
        return "deepseek-v3"
    raise ConvertError("tokenizer.json: the pre-tokenizer is not one libdsr1 knows (Qwen2, Llama 3 or "
                       "DeepSeek-V3 split regexes with byte-level mapping); pass --pre NAME if you "
                       "know it matches one of: qwen2, deepseek-r1-qwen, llama-bpe, deepseek-v3")


def add_tokenizer(w, ckdir: str, n_vocab, config: dict, pre=None, log=None) -> int:
    """Adds the tokenizer.ggml.* keys; returns the token count written."""
    tj = _read_json(os.path.join(ckdir, "tokenizer.json"), "the tokenizer")
    tc = _read_json(os.path.join(ckdir, "tokenizer_config.json"), "the tokenizer config", required=False) or {}
    model = tj.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConvertError(f"tokenizer.json: model type {model.get('type')!r} is not supported "
                           "(only byte-level BPE)")
    if model.get("byte_fallback"):
        raise ConvertError("tokenizer.json: byte_fallback BPE (SentencePiece style) is not supported")
    vocab = model["vocab"]
    id_to_tok = {}
    for tok, i in vocab.items():
        id_to_tok[int(i)] = tok
    added = {}
    for a in tj.get("added_tokens") or []:
        i = int(a["id"])
        id_to_tok[i] = a["content"]
        added[i] = a
    if not id_to_tok:
        raise ConvertError("tokenizer.json: empty vocabulary")
    n_tok = max(id_to_tok) + 1
    if n_vocab is None:
        n_vocab = n_tok
    elif n_tok > n_vocab:
        raise ConvertError(f"tokenizer.json has token ids up to {n_tok - 1} but the model has only "
                           f"{n_vocab} embedding rows")
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in id_to_tok:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
            continue
        t = id_to_tok[i]
        tokens.append(t)
        if i in added:
            types.append(TOKEN_CONTROL if added[i].get("special") else TOKEN_USER_DEFINED)
        else:
            types.append(TOKEN_NORMAL)
    merges = []
    for m in model.get("merges") or []:
        if isinstance(m, str):
            merges.append(m)
        elif isinstance(m, (list, tuple)) and len(m) == 2:
            merges.append(f"{m[0]} {m[1]}")
        else:
            raise ConvertError(f"tokenizer.json: unrecognised merge entry {m!r}")
    present = set(tokens)
    pre_name = pre or detect_pre(tj, present)
    tok_to_id = {t: i for i, t in enumerate(tokens)}

    def special_id(kind):
        c = _token_content(tc.get(f"{kind}_token"))
        if c is not None and c in tok_to_id:
            return tok_to_id[c]
        v = config.get(f"{kind}_token_id")
        if isinstance(v, list):
            v = v[0] if v else None
        return int(v) if isinstance(v, int) and 0 <= v < n_vocab else None

    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.pre", pre_name)
    w.add("tokenizer.ggml.tokens", tokens, GGUFValueType.ARRAY, GGUFValueType.STRING)
    w.add("tokenizer.ggml.token_type", types, GGUFValueType.ARRAY, GGUFValueType.INT32)
    if merges:
        w.add("tokenizer.ggml.merges", merges, GGUFValueType.ARRAY, GGUFValueType.STRING)
    for kind, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unknown_token_id"),
                      ("pad", "padding_token_id")):
        i = special_id(kind)
        if i is not None:
            w.add(f"tokenizer.ggml.{key}", i, GGUFValueType.UINT32)
    add_bos = tc.get("add_bos_token")
    if add_bos is None:  # Llama 3: a TemplateProcessing post-processor adds it
        pp = json.dumps(tj.get("post_processor") or {})
        bos = special_id("bos")
        add_bos = bos is not None and '"TemplateProcessing"' in pp and json.dumps(tokens[bos]) in pp
    w.add("tokenizer.ggml.add_bos_token", bool(add_bos))
    w.add("tokenizer.ggml.add_eos_token", bool(tc.get("add_eos_token", False)))
    tmpl = tc.get("chat_template")
    if isinstance(tmpl, str):
        w.add("tokenizer.chat_template", tmpl)
    if log:
        log(f"tokenizer: {n_vocab} tokens ({n_vocab - n_tok} padding), {len(merges)} merges, pre {pre_name!r}")
    return n_vocab


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------

class _Source:
    """Tensor access with FP8 block dequantization and consumption tracking."""

    def __init__(self, ckpt: Checkpoint, config: dict):
        self.ck = ckpt
        self.used = set()
        q = config.get("quantization_config") or {}
        self.block = tuple(q.get("weight_block_size") or (128, 128))
        self.quant_method = q.get("quant_method")

    def has(self, name):
        return name in self.ck

    def dtype(self, name):
        return self.ck.dtype(name)

    def shape(self, name):
        if name not in self.ck:
            raise ConvertError(f"{self.ck.dir}: required tensor {name!r} is missing")
        return tuple(self.ck.shape(name))

    def use(self, name):
        """Mark name (and its block scale) as consumed; returns its shape."""
        shape = self.shape(name)
        self.used.add(name)
        if self.ck.dtype(name).startswith("F8_"):
            sname = name[:-len("weight")] + "weight_scale_inv" if name.endswith("weight") else None
            if sname is None or sname not in self.ck:
                raise ConvertError(f"FP8 tensor {name!r} has no block scale "
                                   f"'{sname or name + '_scale_inv'}' (only DeepSeek-V3-style "
                                   "block-scaled FP8 is supported)")
            self.used.add(sname)
        return shape

    def get(self, name) -> np.ndarray:
        dt = self.ck.dtype(name)
        if dt not in ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"):
            raise ConvertError(f"tensor {name!r} has dtype {dt}, not a floating-point type")
        a = self.ck.get(name)
        if dt.startswith("F8_"):
            sname = name[:-len("weight")] + "weight_scale_inv"
            try:
                a = dequantize_blockwise(a, self.ck.get(sname), self.block)
            except SafetensorsError as e:
                raise ConvertError(f"{name}: {e}") from None
        return a


class _Plan:
    """Collects (GGUF name, shape, type, producer) with the type policy."""

    def __init__(self, w: _LazyWriter, src: _Source, outtype: str):
        self.w, self.src, self.outtype = w, src, outtype
        self.matrix_types = {}

    def ttype(self, gname, shape, src_dtype) -> GGMLType:
        if len(shape) <= 1 or gname.endswith(_ALWAYS_F32):
            return GGMLType.F32
        if self.outtype == "auto":
            t = {"BF16": GGMLType.BF16, "F16": GGMLType.F16, "F32": GGMLType.F32, "F64": GGMLType.F32,
                 "F8_E4M3": GGMLType.BF16, "F8_E5M2": GGMLType.BF16}.get(src_dtype, GGMLType.F32)
        elif self.outtype == "q8_0":
            t = GGMLType.Q8_0 if shape[-1] % 32 == 0 else GGMLType.F16
        else:
            t = {"f32": GGMLType.F32, "f16": GGMLType.F16, "bf16": GGMLType.BF16}[self.outtype]
        self.matrix_types[t] = self.matrix_types.get(t, 0) + 1
        return t

    def add(self, gname, shape, src_dtype, producer):
        self.w.add_tensor(gname, shape, self.ttype(gname, shape, src_dtype), producer)

    def copy(self, gname, sname, transform=None):
        """One source tensor to one GGUF tensor (transform keeps the shape)."""
        shape = self.src.use(sname)
        src = self.src

        def produce():
            a = src.get(sname)
            return transform(a) if transform else a
        self.add(gname, shape, src.dtype(sname), produce)

    def optional(self, gname, sname, transform=None):
        if self.src.has(sname):
            self.copy(gname, sname, transform)
            return True
        return False

    def file_type(self) -> int:
        if not self.matrix_types:
            return 0
        t = max(self.matrix_types, key=self.matrix_types.get)
        return _FILE_TYPE[t]


def _cfg(config, key, default=None, required=False):
    v = config.get(key, default)
    if v is None and required:
        raise ConvertError(f"config.json: required key {key!r} is missing")
    return v


def _add_common(w, arch, config, n_layer):
    w.add(f"{arch}.context_length", int(_cfg(config, "max_position_embeddings", 4096)), GGUFValueType.UINT32)
    w.add(f"{arch}.embedding_length", int(_cfg(config, "hidden_size", required=True)), GGUFValueType.UINT32)
    w.add(f"{arch}.block_count", int(n_layer), GGUFValueType.UINT32)
    w.add(f"{arch}.feed_forward_length", int(_cfg(config, "intermediate_size", required=True)),
          GGUFValueType.UINT32)
    w.add(f"{arch}.attention.head_count", int(_cfg(config, "num_attention_heads", required=True)),
          GGUFValueType.UINT32)
    w.add(f"{arch}.rope.freq_base", float(_cfg(config, "rope_theta", 10000.0)), GGUFValueType.FLOAT32)
    w.add(f"{arch}.attention.layer_norm_rms_epsilon", float(_cfg(config, "rms_norm_eps", 1e-6)),
          GGUFValueType.FLOAT32)


def _dense(plan: _Plan, w, arch, config, n_vocab):
    src = plan.src
    n_layer = int(_cfg(config, "num_hidden_layers", required=True))
    d = int(_cfg(config, "hidden_size", required=True))
    n_head = int(_cfg(config, "num_attention_heads", required=True))
    n_head_kv = int(_cfg(config, "num_key_value_heads", n_head) or n_head)
    head_dim = int(config.get("head_dim") or d // n_head)
    if config.get("mlp_bias"):
        raise ConvertError("config.json: mlp_bias is not supported")
    if arch == "qwen2" and config.get("use_sliding_window"):
        raise ConvertError("config.json: use_sliding_window is not supported")
    scaling = config.get("rope_scaling")
    rtype = (scaling or {}).get("rope_type", (scaling or {}).get("type"))
    if scaling and not (arch == "llama" and rtype == "llama3") and rtype != "default":
        raise ConvertError(f"config.json: rope_scaling type {rtype!r} is not supported for {arch} "
                           "(llama3 scaling for llama only)")
    _add_common(w, arch, config, n_layer)
    w.add(f"{arch}.attention.head_count_kv", n_head_kv, GGUFValueType.UINT32)
    if head_dim != d // n_head:
        w.add(f"{arch}.attention.key_length", head_dim, GGUFValueType.UINT32)
        w.add(f"{arch}.attention.value_length", head_dim, GGUFValueType.UINT32)
    w.add(f"{arch}.rope.dimension_count", head_dim, GGUFValueType.UINT32)
    w.add(f"{arch}.vocab_size", n_vocab, GGUFValueType.UINT32)

    plan.copy("token_embd.weight", "model.embed_tokens.weight")
    plan.copy("output_norm.weight", "model.norm.weight")
    if not config.get("tie_word_embeddings", False) or src.has("lm_head.weight"):
        plan.copy("output.weight", "lm_head.weight")
    if arch == "llama" and rtype == "llama3":
        factors = llama3_rope_factors(float(config.get("rope_theta", 10000.0)), head_dim, scaling)
        plan.add("rope_freqs.weight", factors.shape, "F32", lambda: factors)

    if arch == "llama":
        pq = lambda a: permute_rope_rows(a, n_head)      # noqa: E731
        pk = lambda a: permute_rope_rows(a, n_head_kv)   # noqa: E731
    else:
        pq = pk = None
    for i in range(n_layer):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        plan.copy(b + "attn_norm.weight", p + "input_layernorm.weight")
        plan.copy(b + "attn_q.weight", p + "self_attn.q_proj.weight", pq)
        plan.copy(b + "attn_k.weight", p + "self_attn.k_proj.weight", pk)
        plan.copy(b + "attn_v.weight", p + "self_attn.v_proj.weight")
        plan.copy(b + "attn_output.weight", p + "self_attn.o_proj.weight")
        if arch == "qwen2":
            plan.copy(b + "attn_q.bias", p + "self_attn.q_proj.bias")
            plan.copy(b + "attn_k.bias", p + "self_attn.k_proj.bias")
            plan.copy(b + "attn_v.bias", p + "self_attn.v_proj.bias")
        else:
            plan.optional(b + "attn_q.bias", p + "self_attn.q_proj.bias", pq)
            plan.optional(b + "attn_k.bias", p + "self_attn.k_proj.bias", pk)
            plan.optional(b + "attn_v.bias", p + "self_attn.v_proj.bias")
        plan.copy(b + "ffn_norm.weight", p + "post_attention_layernorm.weight")
        plan.copy(b + "ffn_gate.weight", p + "mlp.gate_proj.weight")
        plan.copy(b + "ffn_up.weight", p + "mlp.up_proj.weight")
        plan.copy(b + "ffn_down.weight", p + "mlp.down_proj.weight")


def _deepseek2(plan: _Plan, w, config, n_vocab):
    arch = "deepseek2"
    src = plan.src
    n_layer = int(_cfg(config, "num_hidden_layers", required=True))
    n_nextn = int(config.get("num_nextn_predict_layers") or 0)
    n_head = int(_cfg(config, "num_attention_heads", required=True))
    q_lora = config.get("q_lora_rank")
    kv_lora = int(_cfg(config, "kv_lora_rank", required=True))
    nope = int(_cfg(config, "qk_nope_head_dim", required=True))
    rope = int(_cfg(config, "qk_rope_head_dim", required=True))
    dv = int(_cfg(config, "v_head_dim", required=True))
    n_expert = int(_cfg(config, "n_routed_experts", required=True))
    first_dense = int(config.get("first_k_dense_replace") or 0)
    if int(config.get("moe_layer_freq", 1) or 1) != 1:
        raise ConvertError("config.json: moe_layer_freq other than 1 is not supported")
    if config.get("rope_interleave") is False:
        raise ConvertError("config.json: rope_interleave false is not supported")
    scoring = config.get("scoring_func", "softmax")
    gating = {"softmax": 1, "sigmoid": 2}.get(scoring)
    if gating is None:
        raise ConvertError(f"config.json: scoring_func {scoring!r} is not supported (softmax, sigmoid)")
    topk_method = config.get("topk_method", "greedy")
    if topk_method not in ("greedy", "group_limited_greedy", "noaux_tc"):
        raise ConvertError(f"config.json: topk_method {topk_method!r} is not supported")
    q = config.get("quantization_config")
    if q and not (q.get("quant_method") == "fp8" and q.get("fmt", "e4m3") == "e4m3"):
        raise ConvertError(f"config.json: quantization_config {q} is not supported "
                           "(fp8 e4m3 with block scales only)")

    _add_common(w, arch, config, n_layer + n_nextn)
    w.add(f"{arch}.attention.head_count_kv", 1, GGUFValueType.UINT32)
    w.add(f"{arch}.vocab_size", n_vocab, GGUFValueType.UINT32)
    w.add(f"{arch}.leading_dense_block_count", first_dense, GGUFValueType.UINT32)
    if q_lora:
        w.add(f"{arch}.attention.q_lora_rank", int(q_lora), GGUFValueType.UINT32)
    w.add(f"{arch}.attention.kv_lora_rank", kv_lora, GGUFValueType.UINT32)
    w.add(f"{arch}.attention.key_length", kv_lora + rope, GGUFValueType.UINT32)
    w.add(f"{arch}.attention.value_length", kv_lora, GGUFValueType.UINT32)
    w.add(f"{arch}.attention.key_length_mla", nope + rope, GGUFValueType.UINT32)
    w.add(f"{arch}.attention.value_length_mla", dv, GGUFValueType.UINT32)
    w.add(f"{arch}.expert_feed_forward_length", int(_cfg(config, "moe_intermediate_size", required=True)),
          GGUFValueType.UINT32)
    w.add(f"{arch}.expert_count", n_expert, GGUFValueType.UINT32)
    w.add(f"{arch}.expert_used_count", int(_cfg(config, "num_experts_per_tok", required=True)),
          GGUFValueType.UINT32)
    w.add(f"{arch}.expert_shared_count", int(config.get("n_shared_experts") or 0), GGUFValueType.UINT32)
    w.add(f"{arch}.expert_weights_scale", float(config.get("routed_scaling_factor") or 1.0),
          GGUFValueType.FLOAT32)
    w.add(f"{arch}.expert_weights_norm", bool(config.get("norm_topk_prob", False)))
    w.add(f"{arch}.expert_gating_func", gating, GGUFValueType.UINT32)
    if topk_method in ("group_limited_greedy", "noaux_tc") and config.get("n_group"):
        w.add(f"{arch}.expert_group_count", int(config["n_group"]), GGUFValueType.UINT32)
        w.add(f"{arch}.expert_group_used_count", int(config.get("topk_group") or 1), GGUFValueType.UINT32)
    w.add(f"{arch}.rope.dimension_count", rope, GGUFValueType.UINT32)
    scaling = config.get("rope_scaling")
    if scaling:
        rtype = scaling.get("type", scaling.get("rope_type"))
        if rtype != "yarn":
            raise ConvertError(f"config.json: rope_scaling type {rtype!r} is not supported for deepseek2 (yarn)")
        mscale = float(scaling.get("mscale", 1.0))
        mscale_all = float(scaling.get("mscale_all_dim", 0.0))
        if mscale != mscale_all:
            raise ConvertError(f"config.json: YaRN with mscale {mscale} != mscale_all_dim {mscale_all} "
                               "is not supported")
        w.add(f"{arch}.rope.scaling.type", "yarn")
        w.add(f"{arch}.rope.scaling.factor", float(scaling["factor"]), GGUFValueType.FLOAT32)
        w.add(f"{arch}.rope.scaling.original_context_length",
              int(scaling["original_max_position_embeddings"]), GGUFValueType.UINT32)
        w.add(f"{arch}.rope.scaling.yarn_beta_fast", float(scaling.get("beta_fast", 32)), GGUFValueType.FLOAT32)
        w.add(f"{arch}.rope.scaling.yarn_beta_slow", float(scaling.get("beta_slow", 1)), GGUFValueType.FLOAT32)
        w.add(f"{arch}.rope.scaling.yarn_log_multiplier", 0.1 * mscale_all, GGUFValueType.FLOAT32)
    if n_nextn:
        w.add(f"{arch}.nextn_predict_layers", n_nextn, GGUFValueType.UINT32)

    plan.copy("token_embd.weight", "model.embed_tokens.weight")
    plan.copy("output_norm.weight", "model.norm.weight")
    if not config.get("tie_word_embeddings", False) or src.has("lm_head.weight"):
        plan.copy("output.weight", "lm_head.weight")

    def kv_b_part(sname, part):
        def produce():
            a = src.get(sname).reshape(n_head, nope + dv, kv_lora)
            if part == "k":  # [H, nope, R] -> [H, R, nope]: ggml ne [nope, R, H]
                return np.ascontiguousarray(a[:, :nope, :].transpose(0, 2, 1))
            return np.ascontiguousarray(a[:, nope:, :])  # [H, v, R]: ne [R, v, H]
        return produce

    def stacked(names):
        def produce():  # one expert at a time (see _LazyWriter.write)
            return _Slices(src.get(n) for n in names)
        return produce

    for i in range(n_layer + n_nextn):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        plan.copy(b + "attn_norm.weight", p + "input_layernorm.weight")
        if q_lora:
            plan.copy(b + "attn_q_a.weight", p + "self_attn.q_a_proj.weight")
            plan.copy(b + "attn_q_a_norm.weight", p + "self_attn.q_a_layernorm.weight")
            plan.copy(b + "attn_q_b.weight", p + "self_attn.q_b_proj.weight")
        else:
            plan.copy(b + "attn_q.weight", p + "self_attn.q_proj.weight")
        plan.copy(b + "attn_kv_a_mqa.weight", p + "self_attn.kv_a_proj_with_mqa.weight")
        plan.copy(b + "attn_kv_a_norm.weight", p + "self_attn.kv_a_layernorm.weight")
        kvb = p + "self_attn.kv_b_proj.weight"
        shape = src.use(kvb)
        if shape != (n_head * (nope + dv), kv_lora):
            raise ConvertError(f"{kvb} has shape {list(shape)}, expected "
                               f"[{n_head * (nope + dv)}, {kv_lora}]")
        plan.add(b + "attn_k_b.weight", (n_head, kv_lora, nope), src.dtype(kvb), kv_b_part(kvb, "k"))
        plan.add(b + "attn_v_b.weight", (n_head, dv, kv_lora), src.dtype(kvb), kv_b_part(kvb, "v"))
        plan.copy(b + "attn_output.weight", p + "self_attn.o_proj.weight")
        plan.copy(b + "ffn_norm.weight", p + "post_attention_layernorm.weight")
        if i < first_dense:
            plan.copy(b + "ffn_gate.weight", p + "mlp.gate_proj.weight")
            plan.copy(b + "ffn_up.weight", p + "mlp.up_proj.weight")
            plan.copy(b + "ffn_down.weight", p + "mlp.down_proj.weight")
        else:
            plan.copy(b + "ffn_gate_inp.weight", p + "mlp.gate.weight")
            if topk_method == "noaux_tc":
                plan.copy(b + "exp_probs_b.bias", p + "mlp.gate.e_score_correction_bias")
            for proj in ("gate", "up", "down"):
                names = [f"{p}mlp.experts.{e}.{proj}_proj.weight" for e in range(n_expert)]
                shapes = {src.use(n) for n in names}
                if len(shapes) != 1:
                    raise ConvertError(f"{p}mlp.experts.*.{proj}_proj.weight have different shapes {shapes}")
                (eshape,) = shapes
                plan.add(f"{b}ffn_{proj}_exps.weight", (n_expert,) + eshape, src.dtype(names[0]),
                         stacked(names))
            if int(config.get("n_shared_experts") or 0) > 0:
                for proj in ("gate", "up", "down"):
                    plan.copy(f"{b}ffn_{proj}_shexp.weight", f"{p}mlp.shared_experts.{proj}_proj.weight")
        if i >= n_layer:  # multi-token prediction
            plan.copy(b + "nextn.eh_proj.weight", p + "eh_proj.weight")
            plan.copy(b + "nextn.enorm.weight", p + "enorm.weight")
            plan.copy(b + "nextn.hnorm.weight", p + "hnorm.weight")
            plan.copy(b + "nextn.shared_head_norm.weight", p + "shared_head.norm.weight")
            # own embedding / head only where they differ from the main ones
            for own, main, gname in ((p + "embed_tokens.weight", "model.embed_tokens.weight",
                                      b + "nextn.embed_tokens.weight"),
                                     (p + "shared_head.head.weight", "lm_head.weight",
                                      b + "nextn.shared_head_head.weight")):
                if not src.has(own):
                    continue
                if (src.has(main) and src.shape(own) == src.shape(main)
                        and src.dtype(own) == src.dtype(main)
                        and np.array_equal(src.ck.raw(own), src.ck.raw(main))):
                    src.use(own)
                else:
                    plan.copy(gname, own)


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------

def convert(ckdir: str, out: str, outtype: str = "auto", vocab_only: bool = False,
            pre: str | None = None, log=None) -> dict:
    """Convert the checkpoint directory ckdir to the GGUF file out.
    Returns a summary dict (arch, n_tensors, n_vocab, bytes)."""
    if outtype not in OUTTYPES:
        raise ConvertError(f"--outtype {outtype!r}: choose one of {', '.join(OUTTYPES)}")
    if not os.path.isdir(ckdir):
        raise ConvertError(f"{ckdir}: not a directory")
    config = _read_json(os.path.join(ckdir, "config.json"), "the model configuration")
    if not isinstance(config, dict):
        raise ConvertError(f"{ckdir}/config.json: not a JSON object")
    archs = config.get("architectures") or []
    hf_arch = archs[0] if archs else None
    if hf_arch not in ARCHITECTURES:
        raise ConvertError(f"{ckdir}: architecture {hf_arch!r} is not supported "
                           f"(supported: {', '.join(ARCHITECTURES)})")
    arch = ARCHITECTURES[hf_arch]

    w = _LazyWriter(out)
    w.add("general.architecture", arch)
    w.add("general.name", str(config.get("_name_or_path") or os.path.basename(os.path.normpath(ckdir))))

    if vocab_only:
        n_vocab = add_tokenizer(w, ckdir, None, config, pre, log)
        size = w.write(log)
        return {"arch": arch, "n_tensors": 0, "n_vocab": n_vocab, "bytes": size}

    try:
        ckpt = Checkpoint(ckdir)
    except (SafetensorsError, OSError) as e:
        raise ConvertError(str(e)) from None
    with ckpt:
        src = _Source(ckpt, config)
        if "model.embed_tokens.weight" not in ckpt:
            raise ConvertError(f"{ckdir}: tensor 'model.embed_tokens.weight' is missing "
                               "(not a causal-LM checkpoint?)")
        emb = ckpt.shape("model.embed_tokens.weight")
        n_vocab = int(emb[0])
        if int(config.get("vocab_size", n_vocab)) != n_vocab:
            raise ConvertError(f"config.json: vocab_size {config.get('vocab_size')} differs from the "
                               f"{n_vocab} embedding rows")
        if emb[1] != int(_cfg(config, "hidden_size", required=True)):
            raise ConvertError(f"config.json: hidden_size {config.get('hidden_size')} differs from the "
                               f"embedding width {emb[1]}")
        add_tokenizer(w, ckdir, n_vocab, config, pre, log)
        plan = _Plan(w, src, outtype)
        if arch == "deepseek2":
            _deepseek2(plan, w, config, n_vocab)
        else:
            _dense(plan, w, arch, config, n_vocab)
        left = [n for n in ckpt.names if n not in src.used and not _IGNORED.search(n)]
        if left:
            more = f" and {len(left) - 8} more" if len(left) > 8 else ""
            raise ConvertError(f"{ckdir}: tensors not converted (unexpected for {hf_arch}): "
                               f"{', '.join(left[:8])}{more}")
        w.add("general.file_type", plan.file_type(), GGUFValueType.UINT32)
        w.add("general.quantization_version", 2, GGUFValueType.UINT32)
        size = w.write(log)
    return {"arch": arch, "n_tensors": len(w.tensors), "n_vocab": n_vocab, "bytes": size}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m dsr1.convert",
                                 description="Convert a Hugging Face checkpoint (safetensors) to GGUF for libdsr1.")
    ap.add_argument("checkpoint", help="directory with config.json, *.safetensors, tokenizer.json")
    ap.add_argument("out", help="the GGUF file to write")
    ap.add_argument("--outtype", default="auto", choices=OUTTYPES,
                    help="type of the matrices (default auto: bf16/f16/f32 as the source, fp8 -> bf16)")
    ap.add_argument("--vocab-only", action="store_true", help="write only the tokenizer")
    ap.add_argument("--pre", default=None, help="override the detected pre-tokenizer name")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every tensor written")
    a = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr)
    try:
        s = convert(a.checkpoint, a.out, a.outtype, a.vocab_only, a.pre, log if a.verbose else None)
    except (ConvertError, SafetensorsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename or a.out}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {a.out}: {s['arch']}, {s['n_tensors']} tensors, {s['n_vocab']} tokens, "
          f"{s['bytes'] / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
