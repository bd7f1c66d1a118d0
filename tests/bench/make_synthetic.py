#!/usr/bin/python3
"""Write a synthetic GGUF model of realistic width for benchmarks.

Random weights (N(0, 0.02), norms 1, biases 0), the tokenizer of the test
fixture padded with <|dummy_N|> tokens to the vocabulary size:

  qwen2-1.5b   R1-Distill-Qwen-1.5B's widths (n_embd 1536, n_ff 8960,
               12 heads / 2 KV heads, vocab 151936, untied output), 4 layers
               instead of 28: 1247 MiB in F16.
  ds2          DeepSeek-V3-shaped: R1's multi-head latent attention dims
               (q_lora 1536, kv_lora 512, 128 + 64 query/key and 128 value
               dims per head), n_embd 2048, 16 heads, 1 dense layer (n_ff
               5120) + 3 MoE layers (64 experts x 1024, 6 used, 8 groups of
               which 4 are kept, 1 shared expert), vocab 32768; with --mtp a
               multi-token-prediction block after them.

  usage: make_synthetic.py {qwen2-1.5b|ds2} OUT.gguf [f16|q8_0] [--mtp]

Other weight types: `dsr1 quantize OUT.gguf OTHER.gguf q4_k_m` (llama.cpp's
per-tensor mixes). Needs numpy; run from a checkout (it imports
bindings/python/dsr1/gguf.py and reads tests/data/models).
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
import numpy as np  # noqa: E402
from dsr1.gguf import GGUFReader, GGUFWriter, GGMLType  # noqa: E402


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


def qwen2(w, t, rng, mat):
    E, FF, H, HKV, L, V = 1536, 8960, 12, 2, 4, 151936
    HD = E // H
    a = "qwen2."
    src = GGUFReader(os.path.join(ROOT, "tests", "data", "models", "qwen2-f16.gguf"))
    copy_metadata(w, src, V, {
        a + "embedding_length": E, a + "block_count": L, a + "feed_forward_length": FF,
        a + "attention.head_count": H, a + "attention.head_count_kv": HKV, a + "vocab_size": V,
        a + "rope.dimension_count": HD, "general.name": "synthetic-qwen2-1.5b-shape-4layer",
        "general.file_type": 1 if t == GGMLType.F16 else 7})
    w.add_tensor("token_embd.weight", mat(V, E), t)
    w.add_tensor("output_norm.weight", np.ones(E, np.float32))
    w.add_tensor("output.weight", mat(V, E), t)
    for l in range(L):
        p = "blk.%d." % l
        w.add_tensor(p + "attn_norm.weight", np.ones(E, np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(E, np.float32))
        w.add_tensor(p + "attn_q.weight", mat(E, E), t)
        w.add_tensor(p + "attn_k.weight", mat(HKV * HD, E), t)
        w.add_tensor(p + "attn_v.weight", mat(HKV * HD, E), t)
        w.add_tensor(p + "attn_q.bias", np.zeros(E, np.float32))
        w.add_tensor(p + "attn_k.bias", np.zeros(HKV * HD, np.float32))
        w.add_tensor(p + "attn_v.bias", np.zeros(HKV * HD, np.float32))
        w.add_tensor(p + "attn_output.weight", mat(E, E), t)
        w.add_tensor(p + "ffn_gate.weight", mat(FF, E), t)
        w.add_tensor(p + "ffn_up.weight", mat(FF, E), t)
        w.add_tensor(p + "ffn_down.weight", mat(E, FF), t)


def ds2(w, t, rng, mat, mtp):
    E, H, QL, KL, NOPE, ROPE, VD = 2048, 16, 1536, 512, 128, 64, 128
    L, DENSE, FF, NE, FFE, USED, V = 4, 1, 5120, 64, 1024, 6, 32768
    a = "deepseek2."
    src = GGUFReader(os.path.join(ROOT, "tests", "data", "models", "deepseek2-f16.gguf"))
    copy_metadata(w, src, V, {
        a + "embedding_length": E, a + "block_count": L + mtp, a + "feed_forward_length": FF,
        a + "attention.head_count": H, a + "attention.head_count_kv": 1, a + "vocab_size": V,
        a + "attention.q_lora_rank": QL, a + "attention.kv_lora_rank": KL,
        a + "attention.key_length": KL + ROPE, a + "attention.value_length": KL,
        a + "attention.key_length_mla": NOPE + ROPE, a + "attention.value_length_mla": VD,
        a + "expert_feed_forward_length": FFE, a + "expert_count": NE, a + "expert_used_count": USED,
        a + "expert_group_count": 8, a + "expert_group_used_count": 4,
        a + "leading_dense_block_count": DENSE, a + "rope.dimension_count": ROPE,
        a + "nextn_predict_layers": mtp, "general.name": "synthetic-deepseek-v3-shape-4layer",
        "general.file_type": 1 if t == GGMLType.F16 else 7})
    ones = lambda n: np.ones(n, np.float32)  # noqa: E731
    w.add_tensor("token_embd.weight", mat(V, E), t)
    w.add_tensor("output_norm.weight", ones(E))
    w.add_tensor("output.weight", mat(V, E), t)
    for l in range(L + mtp):
        p = "blk.%d." % l
        w.add_tensor(p + "attn_norm.weight", ones(E))
        w.add_tensor(p + "ffn_norm.weight", ones(E))
        w.add_tensor(p + "attn_q_a.weight", mat(QL, E), t)
        w.add_tensor(p + "attn_q_a_norm.weight", ones(QL))
        w.add_tensor(p + "attn_q_b.weight", mat(H * (NOPE + ROPE), QL), t)
        w.add_tensor(p + "attn_kv_a_mqa.weight", mat(KL + ROPE, E), t)
        w.add_tensor(p + "attn_kv_a_norm.weight", ones(KL))
        w.add_tensor(p + "attn_k_b.weight", mat(H, KL, NOPE), t)
        w.add_tensor(p + "attn_v_b.weight", mat(H, VD, KL), t)
        w.add_tensor(p + "attn_output.weight", mat(E, H * VD), t)
        if l < DENSE:
            w.add_tensor(p + "ffn_gate.weight", mat(FF, E), t)
            w.add_tensor(p + "ffn_up.weight", mat(FF, E), t)
            w.add_tensor(p + "ffn_down.weight", mat(E, FF), t)
            continue
        # router scaled up so that tokens spread over the experts
        w.add_tensor(p + "ffn_gate_inp.weight", mat(NE, E) * 50)
        w.add_tensor(p + "exp_probs_b.bias", np.zeros(NE, np.float32))
        w.add_tensor(p + "ffn_gate_exps.weight", mat(NE, FFE, E), t)
        w.add_tensor(p + "ffn_up_exps.weight", mat(NE, FFE, E), t)
        w.add_tensor(p + "ffn_down_exps.weight", mat(NE, E, FFE), t)
        w.add_tensor(p + "ffn_gate_shexp.weight", mat(FFE, E), t)
        w.add_tensor(p + "ffn_up_shexp.weight", mat(FFE, E), t)
        w.add_tensor(p + "ffn_down_shexp.weight", mat(E, FFE), t)
        if l == L:  # the multi-token-prediction block
            w.add_tensor(p + "nextn.eh_proj.weight", mat(E, 2 * E), t)
            w.add_tensor(p + "nextn.enorm.weight", ones(E))
            w.add_tensor(p + "nextn.hnorm.weight", ones(E))
            w.add_tensor(p + "nextn.shared_head_norm.weight", ones(E))


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) < 2 or args[0] not in ("qwen2-1.5b", "ds2"):
        sys.exit(__doc__)
    t = {"f16": GGMLType.F16, "q8_0": GGMLType.Q8_0}[args[2] if len(args) > 2 else "f16"]
    rng = np.random.default_rng(0)

    def mat(*shape):
        return rng.standard_normal(shape, dtype=np.float32) * 0.02

    w = GGUFWriter(args[1])
    if args[0] == "qwen2-1.5b":
        qwen2(w, t, rng, mat)
    else:
        ds2(w, t, rng, mat, 1 if "--mtp" in argv else 0)
    print(args[1], w.write(), "bytes")


if __name__ == "__main__":
    main(sys.argv)
