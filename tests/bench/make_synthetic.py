#!/usr/bin/python3
"""Write a synthetic GGUF model of a real model's shape, for benchmarks.

Random weights, norms 1, biases 0, the tokenizer of a test fixture padded with
<|dummy_N|> tokens to the vocabulary size. Full depth unless --layers says
otherwise:

  qwen2-1.5b   R1-Distill-Qwen-1.5B: n_embd 1536, n_ff 8960, 12 heads / 2 KV
               heads, vocab 151936, untied output, 28 layers
               (Q8_0 1.9 GB, Q4_K_M 1.1 GB after `dsr1 quantize`).
  llama-8b     R1-Distill-Llama-8B: n_embd 4096, n_ff 14336, 32 heads / 8 KV
               heads, vocab 128256, untied output, 32 layers (Q8_0 8.5 GB).
  ds3-moe      DeepSeek-V3/R1-proportioned MoE: R1's multi-head latent
               attention dims (q_lora 1536, kv_lora 512, 128 + 64 query/key
               and 128 value dims per head), n_embd 2048, 32 heads, 1 dense
               layer (n_ff 5120) + 7 MoE layers of 256 experts x 512 (R1's
               n_ff / n_embd), 8 used, 8 groups of which 4 are kept, 1 shared
               expert, vocab 32768 (Q8_0 6.3 GB, Q4_K_M 3.6 GB).
  ds2          the smaller DeepSeek-V3-shaped model of doc/models.md: 16
               heads, 1 dense + 3 MoE layers of 64 experts x 1024, 6 used;
               with --mtp a multi-token-prediction block after them.

  usage: make_synthetic.py MODEL OUT.gguf [f16|q8_0|IQ] [--layers N] [--mtp]
  IQ: iq1_s iq1_m iq2_xxs iq2_xs iq2_s iq3_xxs iq3_s

F16 weights are N(0, 0.02). Q8_0 weights are written directly (no float
detour, so the 8B model takes a minute, not an hour): per block of 32 a
scale and int8 values of N(0, 40) (clipped to +-127); the values come from one
pool of random bytes that each tensor takes at a random offset (speed does not
depend on the values). The IQ lattice types are written the same way: random
bytes (every bit pattern is a valid block) with each block's f16 scale set
(this library has no IQ quantizer yet). Other weight types: `dsr1 quantize OUT.gguf OTHER.gguf
q4_k_m` (llama.cpp's per-tensor mixes). Tensors are produced one at a time, so
a file larger than memory can be written. Needs numpy; run from a checkout (it
imports bindings/python/dsr1/gguf.py and reads tests/data/models).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
import numpy as np  # noqa: E402
from dsr1.gguf import GGUFReader, GGUFWriter, GGMLType, _TYPE_BLOCK  # noqa: E402

STD = 0.02
POOL = 1 << 26  # random values shared by all tensors (64 Mi)


class Weights:
    """Produces tensors of one weight type, lazily, from a pool of random
    values (a random offset per tensor, wrapping around)."""

    def __init__(self, t, rng):
        self.t, self.rng = t, rng
        if t == GGMLType.F16:
            self.pool = (rng.standard_normal(POOL, dtype=np.float32) * STD).astype("<f2")
        elif t in IQ_TYPES.values():
            self.pool = rng.integers(0, 256, POOL, dtype=np.uint8)
            # weights are about 50 d (IQ2: d (2s+1) / 8 times grid levels 8..43)
            self.scale = np.frombuffer(np.float16(STD / 50).tobytes(), np.uint8)
        else:
            q = np.clip(np.rint(rng.standard_normal(POOL, dtype=np.float32) * 40), -127, 127)
            self.pool = q.astype(np.int8)
            self.scale = np.frombuffer(np.float16(STD / 40).tobytes(), np.uint8)

    def _take(self, n):
        start = int(self.rng.integers(0, POOL))
        reps = (start + n + POOL - 1) // POOL
        return np.tile(self.pool, reps)[start:start + n] if reps > 1 else self.pool[start:start + n]

    def add(self, w, name, *shape):
        n = int(np.prod(shape))
        if self.t == GGMLType.F16:
            w.add_tensor_lazy(name, shape, self.t, lambda: self._take(n).tobytes())
            return

        if self.t in IQ_TYPES.values():
            w.add_tensor_lazy(name, shape, self.t, lambda: self._iq(n))
            return

        def q8_0():
            blocks = np.empty((n // 32, 34), np.uint8)
            blocks[:, :2] = self.scale
            blocks[:, 2:] = self._take(n).view(np.uint8).reshape(-1, 32)
            return blocks.tobytes()
        w.add_tensor_lazy(name, shape, self.t, q8_0)


    def _iq(self, n):
        size = _TYPE_BLOCK[self.t][1]  # bytes per block of 256
        blocks = self._take(n // 256 * size).reshape(-1, size).copy()
        if self.t == GGMLType.IQ1_M:  # d in the top nibbles of the 4 u16 scales at 48
            h = int(np.frombuffer(self.scale.tobytes(), "<u2")[0])
            for k in range(4):
                blocks[:, 49 + 2 * k] = (blocks[:, 49 + 2 * k] & 0x0F) | (((h >> (4 * k)) & 0x0F) << 4)
        else:
            blocks[:, :2] = self.scale
        return blocks.tobytes()


IQ_TYPES = {"iq1_s": GGMLType.IQ1_S, "iq1_m": GGMLType.IQ1_M, "iq2_xxs": GGMLType.IQ2_XXS,
            "iq2_xs": GGMLType.IQ2_XS, "iq2_s": GGMLType.IQ2_S, "iq3_xxs": GGMLType.IQ3_XXS,
            "iq3_s": GGMLType.IQ3_S}
# llama.cpp's general.file_type of files mostly in each type
FILE_TYPES = {"f16": 1, "q8_0": 7, "iq2_xxs": 19, "iq2_xs": 20, "iq3_xxs": 23, "iq1_s": 24, "iq3_s": 26,
              "iq2_s": 28, "iq1_m": 31}


def copy_metadata(w, src, vocab, over):
    """The fixture's metadata with the overrides, the vocabulary padded."""
    for k, v in src.kv.items():
        vt, et = src.kv_types[k]
        if k == "tokenizer.ggml.tokens":
            v = list(v) + ["<|dummy_%d|>" % i for i in range(vocab - len(v))]
        elif k == "tokenizer.ggml.token_type":
            v = list(v) + [1] * (vocab - len(v))
        elif k in over:
            v = over[k]
        w.add(k, v, vt, et)


def fixture(name):
    return GGUFReader(os.path.join(ROOT, "tests", "data", "models", name))


def ones(n):
    return np.ones(n, np.float32)


# (arch, fixture, n_embd, n_ff, heads, kv heads, layers, vocab, name)
DENSE = {
    "qwen2-1.5b": ("qwen2", "qwen2-f16.gguf", 1536, 8960, 12, 2, 28, 151936, "R1-Distill-Qwen-1.5B"),
    "llama-8b": ("llama", "llama-f16.gguf", 4096, 14336, 32, 8, 32, 128256, "R1-Distill-Llama-8B"),
}


def dense(w, wt, model, layers, file_type):
    arch, fix, E, FF, H, HKV, L, V, shape_of = DENSE[model]
    L = layers or L
    HD = E // H
    a = arch + "."
    copy_metadata(w, fixture(fix), V, {
        a + "embedding_length": E, a + "block_count": L, a + "feed_forward_length": FF,
        a + "attention.head_count": H, a + "attention.head_count_kv": HKV, a + "vocab_size": V,
        a + "rope.dimension_count": HD, "general.file_type": file_type,
        "general.name": "synthetic %s shape, %d layers" % (shape_of, L)})
    wt.add(w, "token_embd.weight", V, E)
    w.add_tensor("output_norm.weight", ones(E))
    wt.add(w, "output.weight", V, E)
    if arch == "llama":  # llama 3's rope scaling factors (1: plain rope)
        w.add_tensor("rope_freqs.weight", ones(HD // 2))
    for l in range(L):
        p = "blk.%d." % l
        w.add_tensor(p + "attn_norm.weight", ones(E))
        w.add_tensor(p + "ffn_norm.weight", ones(E))
        wt.add(w, p + "attn_q.weight", E, E)
        wt.add(w, p + "attn_k.weight", HKV * HD, E)
        wt.add(w, p + "attn_v.weight", HKV * HD, E)
        if arch == "qwen2":
            w.add_tensor(p + "attn_q.bias", np.zeros(E, np.float32))
            w.add_tensor(p + "attn_k.bias", np.zeros(HKV * HD, np.float32))
            w.add_tensor(p + "attn_v.bias", np.zeros(HKV * HD, np.float32))
        wt.add(w, p + "attn_output.weight", E, E)
        wt.add(w, p + "ffn_gate.weight", FF, E)
        wt.add(w, p + "ffn_up.weight", FF, E)
        wt.add(w, p + "ffn_down.weight", E, FF)


# n_embd, heads, dense layers, n_ff, MoE layers, experts, expert n_ff, used, vocab
MOE = {
    "ds3-moe": (2048, 32, 1, 5120, 7, 256, 512, 8, 32768),
    "ds2": (2048, 16, 1, 5120, 3, 64, 1024, 6, 32768),
}


def moe(w, wt, rng, model, layers, file_type, mtp):
    E, H, DENSE_L, FF, MOE_L, NE, FFE, USED, V = MOE[model]
    QL, KL, NOPE, ROPE, VD = 1536, 512, 128, 64, 128
    L = layers or DENSE_L + MOE_L
    a = "deepseek2."
    copy_metadata(w, fixture("deepseek2-f16.gguf"), V, {
        a + "embedding_length": E, a + "block_count": L + mtp, a + "feed_forward_length": FF,
        a + "attention.head_count": H, a + "attention.head_count_kv": 1, a + "vocab_size": V,
        a + "attention.q_lora_rank": QL, a + "attention.kv_lora_rank": KL,
        a + "attention.key_length": KL + ROPE, a + "attention.value_length": KL,
        a + "attention.key_length_mla": NOPE + ROPE, a + "attention.value_length_mla": VD,
        a + "expert_feed_forward_length": FFE, a + "expert_count": NE, a + "expert_used_count": USED,
        a + "expert_group_count": 8, a + "expert_group_used_count": 4,
        a + "leading_dense_block_count": DENSE_L, a + "rope.dimension_count": ROPE,
        a + "nextn_predict_layers": mtp, "general.file_type": file_type,
        "general.name": "synthetic DeepSeek-V3-proportioned MoE (%s), %d layers" % (model, L)})
    wt.add(w, "token_embd.weight", V, E)
    w.add_tensor("output_norm.weight", ones(E))
    wt.add(w, "output.weight", V, E)
    for l in range(L + mtp):
        p = "blk.%d." % l
        w.add_tensor(p + "attn_norm.weight", ones(E))
        w.add_tensor(p + "ffn_norm.weight", ones(E))
        wt.add(w, p + "attn_q_a.weight", QL, E)
        w.add_tensor(p + "attn_q_a_norm.weight", ones(QL))
        wt.add(w, p + "attn_q_b.weight", H * (NOPE + ROPE), QL)
        wt.add(w, p + "attn_kv_a_mqa.weight", KL + ROPE, E)
        w.add_tensor(p + "attn_kv_a_norm.weight", ones(KL))
        wt.add(w, p + "attn_k_b.weight", H, KL, NOPE)
        wt.add(w, p + "attn_v_b.weight", H, VD, KL)
        wt.add(w, p + "attn_output.weight", E, H * VD)
        if l < DENSE_L:
            wt.add(w, p + "ffn_gate.weight", FF, E)
            wt.add(w, p + "ffn_up.weight", FF, E)
            wt.add(w, p + "ffn_down.weight", E, FF)
            continue
        # router scaled up so that tokens spread over the experts
        w.add_tensor(p + "ffn_gate_inp.weight", rng.standard_normal((NE, E), dtype=np.float32))
        w.add_tensor(p + "exp_probs_b.bias", np.zeros(NE, np.float32))
        wt.add(w, p + "ffn_gate_exps.weight", NE, FFE, E)
        wt.add(w, p + "ffn_up_exps.weight", NE, FFE, E)
        wt.add(w, p + "ffn_down_exps.weight", NE, E, FFE)
        wt.add(w, p + "ffn_gate_shexp.weight", FFE, E)
        wt.add(w, p + "ffn_up_shexp.weight", FFE, E)
        wt.add(w, p + "ffn_down_shexp.weight", E, FFE)
        if l == L:  # the multi-token-prediction block
            wt.add(w, p + "nextn.eh_proj.weight", E, 2 * E)
            w.add_tensor(p + "nextn.enorm.weight", ones(E))
            w.add_tensor(p + "nextn.hnorm.weight", ones(E))
            w.add_tensor(p + "nextn.shared_head_norm.weight", ones(E))


def main(argv):
    args, layers, i = [], 0, 1
    while i < len(argv):
        if argv[i] == "--layers" and i + 1 < len(argv):
            layers = int(argv[i + 1])
            i += 1
        elif not argv[i].startswith("--"):
            args.append(argv[i])
        i += 1
    if len(args) < 2 or args[0] not in list(DENSE) + list(MOE) or layers < 0:
        sys.exit(__doc__)
    tname = args[2] if len(args) > 2 else "f16"
    types = dict(IQ_TYPES, f16=GGMLType.F16, q8_0=GGMLType.Q8_0)
    if tname not in types:
        sys.exit(__doc__)
    t = types[tname]
    file_type = FILE_TYPES[tname]
    rng = np.random.default_rng(0)
    wt = Weights(t, rng)
    w = GGUFWriter(args[1])
    if args[0] in DENSE:
        dense(w, wt, args[0], layers, file_type)
    else:
        moe(w, wt, rng, args[0], layers, file_type, 1 if "--mtp" in argv else 0)
    print(args[1], w.write(), "bytes")


if __name__ == "__main__":
    main(sys.argv)
