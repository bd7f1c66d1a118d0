#!/usr/bin/env python3
"""Train dsr1-tiny: a small qwen2-architecture "reasoning" model for arithmetic.

One reproducible script (fixed seeds) that

  (a) generates the data (arithmetic questions + R1-style worked solutions),
  (b) trains a small GPT-2 style byte-level BPE vocabulary,
  (c) trains a qwen2-architecture transformer in PyTorch on CPU,
  (d) exports examples/tiny/dsr1-tiny.gguf (F32 weights), and
  (e) reads the GGUF back with libdsr1's own reader and measures greedy
      accuracy on the 500 held-out questions (examples/tiny/heldout.txt)
      with an independent numpy reference forward.

Usage (from the repository root):

    /usr/bin/python3 examples/tiny/train_tiny.py              # full run
    /usr/bin/python3 examples/tiny/train_tiny.py --eval-only  # re-evaluate the .gguf

Token stream of one example (exactly what libdsr1 builds for a chat):

    <｜begin▁of▁sentence｜><｜User｜>{question}<｜Assistant｜><think>\n
    {reasoning}\n</think>\n\n{answer line}<｜end▁of▁sentence｜>

At inference the prompt is everything up to and including "<think>\n".
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
from dsr1.gguf import GGMLType, GGUFReader, GGUFValueType, GGUFWriter  # noqa: E402

# ============================================================== special tokens
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK = "<think>"
END_THINK = "</think>"
PAD = "<｜▁pad▁｜>"
# order = order at the end of the vocabulary
SPECIALS = [BOS, EOS, USER, ASSISTANT, THINK, END_THINK, PAD]
# GGUF token types
TT_NORMAL, TT_CONTROL, TT_USER_DEFINED = 1, 3, 4


def prompt_text(question: str) -> str:
    """Generation prompt (what the C library builds for one user turn)."""
    return BOS + USER + question + ASSISTANT + THINK + "\n"


def completion_text(reasoning: str, answer: str) -> str:
    return reasoning + "\n" + END_THINK + "\n\n" + answer + EOS


# ================================================================ the task
PLACES = ["ones", "tens", "hundreds", "thousands"]

Q_ADD = ["What is {a} + {b}?", "Compute {a} + {b}.", "What is the sum of {a} and {b}?",
         "Add {a} and {b}.", "Calculate {a} plus {b}.", "What is {a} plus {b}?"]
Q_SUB = ["What is {a} - {b}?", "Compute {a} - {b}.", "What is {a} minus {b}?",
         "Subtract {b} from {a}.", "Calculate {a} - {b}.",
         "What is the difference between {a} and {b}?"]
Q_MUL = ["What is {a} * {b}?", "What is {a} times {b}?", "Compute {a} * {b}.",
         "Multiply {a} by {b}.", "What is the product of {a} and {b}?",
         "Calculate {a} times {b}."]
Q_LARGER = ["Which is larger, {a} or {b}?", "Which number is bigger: {a} or {b}?",
            "What is the larger of {a} and {b}?"]
Q_SMALLER = ["Which is smaller, {a} or {b}?", "Which number is less: {a} or {b}?",
             "What is the smaller of {a} and {b}?"]
Q_GREATER = ["Is {a} greater than {b}?", "Is {a} larger than {b}?", "Is {a} more than {b}?"]
Q_LESS = ["Is {a} less than {b}?", "Is {a} smaller than {b}?"]


def digit(n: int, k: int) -> int:
    return n // 10 ** k % 10


def add_lines(a: int, b: int) -> tuple[list[str], int]:
    """Column addition of two numbers < 10000, right to left.

    Each line restates its column digits and the incoming carry; the two-digit
    column sum's tens digit is the next carry.  S = final carry + 4 digits."""
    lines = [f"A={a:04d} B={b:04d}"]
    c = 0
    sums = []
    for k in range(4):
        x, y = digit(a, k), digit(b, k)
        s = x + y + c
        lines.append(f"{PLACES[k]} {x}+{y}+{c}={s:02d}")
        sums.append(s)
        c = s // 10
    lines.append("S=" + f"{sums[3]:02d}" + "".join(str(s % 10) for s in sums[2::-1]))
    return lines, a + b


def sol_add(a, b):
    lines, r = add_lines(a, b)
    return [f"{a}+{b}"] + lines + [f"check {r}-{b}={a}"], str(r)


def sol_sub(a, b):
    assert a >= b
    lines = [f"{a}-{b}", f"A={a:04d} B={b:04d}"]
    br = 0
    ds = []
    for k in range(4):
        x, y = digit(a, k), digit(b, k)
        t = x - y - br
        nb = 1 if t < 0 else 0
        t += 10 * nb
        lines.append(f"{PLACES[k]} {x}-{y}-{br}={t} borrow {nb}")
        ds.append(t)
        br = nb
    lines.append("D=" + "".join(str(t) for t in ds[::-1]))
    r = a - b
    lines.append(f"check {r}+{b}={a}")
    return lines, str(r)


def mul1_lines(a: int, m: int, width: int) -> tuple[list[str], str]:
    """a (width digits, zero padded) times one digit m, right to left."""
    lines = []
    c = 0
    outs = []
    for k in range(width):
        x = digit(a, k)
        p = x * m
        s = p + c
        lines.append(f"{PLACES[k]} {x}*{m}={p:02d} +{c}={s:02d}")
        outs.append(s)
        c = s // 10
    res = f"{outs[-1]:02d}" + "".join(str(s % 10) for s in outs[-2::-1])
    return lines, res


def sol_mul(a, b):
    lines = [f"{a}*{b}"]
    if b < 10:  # up to 3-digit times 1-digit
        lines.append(f"A={a:03d} B={b}")
        ml, res = mul1_lines(a, b, 3)
        lines += ml
        lines.append("P=" + res)
    else:  # 2-digit times 2-digit: two partial products, then column addition
        d0, d1 = b % 10, b // 10
        lines.append(f"{a}*{d0}")
        ml, p0 = mul1_lines(a, d0, 2)
        lines += ml + [f"so {a}*{d0}={p0}"]
        lines.append(f"{a}*{d1}")
        ml, p1 = mul1_lines(a, d1, 2)
        lines += ml + [f"so {a}*{d1}0={p1}0"]
        al, _ = add_lines(int(p0), int(p1) * 10)
        lines += al
    r = a * b
    lines.append(f"check {r}/{b}={a}")
    return lines, str(r)


def sol_cmp(a, b, kind):
    """Digit-by-digit comparison from the most significant digit.

    The first line names the kind of question in normalised form (larger /
    smaller pick a number, greater / less ask yes or no), whatever the
    question's wording; the last line states the conclusion, so the answer
    line is a plain copy of the last reasoning line."""
    lines = [f"{kind}: {a} vs {b}", f"A={a:04d} B={b:04d}"]
    rel = "="
    for k in range(3, -1, -1):
        x, y = digit(a, k), digit(b, k)
        if x == y:
            lines.append(f"{PLACES[k]} {x}={y}")
        else:
            rel = ">" if x > y else "<"
            lines.append(f"{PLACES[k]} {x}{rel}{y}")
            break
    lines.append(f"so {a}{rel}{b}")
    if kind == "larger":
        ans = str(max(a, b))
        lines.append(f"larger is {ans}")
    elif kind == "smaller":
        ans = str(min(a, b))
        lines.append(f"smaller is {ans}")
    elif kind == "greater":
        ans = "yes" if a > b else "no"
        lines.append(f"is {a}>{b}? {ans}")
    else:
        ans = "yes" if a < b else "no"
        lines.append(f"is {a}<{b}? {ans}")
    return lines, ans


def rand_num(rng: random.Random, max_len: int, min_len: int = 1) -> int:
    n = rng.randint(min_len, max_len)
    lo = 0 if n == 1 else 10 ** (n - 1)
    return rng.randint(lo, 10 ** n - 1)


# task mix as cumulative thresholds for add, sub, mul (the rest is cmp).
# HELDOUT_MIX defines the held-out set and must not change; training draws
# comparisons more often (their examples are short, so at the held-out mix
# they get little of the loss).
HELDOUT_MIX = (0.25, 0.50, 0.80)
TRAIN_MIX = (0.20, 0.40, 0.65)


def make_problem(rng: random.Random, mix=HELDOUT_MIX):
    """Returns (key, question, reasoning, answer_line).  key identifies the
    problem independent of phrasing (used to keep held-out data unseen)."""
    r = rng.random()
    if r < mix[0]:
        a, b = rand_num(rng, 4), rand_num(rng, 4)
        key = ("add", a, b)
        q = rng.choice(Q_ADD).format(a=a, b=b)
        lines, ans = sol_add(a, b)
    elif r < mix[1]:
        a, b = rand_num(rng, 4), rand_num(rng, 4)
        if a < b:
            a, b = b, a
        key = ("sub", a, b)
        q = rng.choice(Q_SUB).format(a=a, b=b)
        lines, ans = sol_sub(a, b)
    elif r < mix[2]:
        if rng.random() < 0.5:
            a, b = rand_num(rng, 3, 1), rng.randint(2, 9)
            if a < 2:
                a = rng.randint(2, 999)
        else:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
        key = ("mul", a, b)
        q = rng.choice(Q_MUL).format(a=a, b=b)
        lines, ans = sol_mul(a, b)
    else:
        kind = rng.choice(["larger", "smaller", "greater", "less"])
        if rng.random() < 0.6:  # same length, often a shared prefix
            n = rng.randint(1, 4)
            a = rand_num(rng, n, n)
            s = str(a)
            keep = rng.randint(0, n - 1)
            tail = "".join(rng.choice("0123456789") for _ in range(n - keep))
            bs = s[:keep] + tail
            if bs[0] == "0" and n > 1:
                bs = str(rng.randint(1, 9)) + bs[1:]
            b = int(bs)
        else:
            a, b = rand_num(rng, 4), rand_num(rng, 4)
        if a == b and kind in ("larger", "smaller"):
            b = a + 1 if a < 9999 else a - 1
        key = ("cmp", kind, a, b)
        q = rng.choice({"larger": Q_LARGER, "smaller": Q_SMALLER,
                        "greater": Q_GREATER, "less": Q_LESS}[kind]).format(a=a, b=b)
        lines, ans = sol_cmp(a, b, kind)
    return key, q, "\n".join(lines), f"The answer is {ans}."


def heldout_set(n=500, seed=20250601):
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        key, q, reasoning, ans = make_problem(rng)
        if key in seen:
            continue
        seen.add(key)
        out.append((key, q, reasoning, ans))
    return out


def training_stream(seed, exclude):
    rng = random.Random(seed)
    while True:
        ex = make_problem(rng, TRAIN_MIX)
        if ex[0] in exclude:
            continue
        yield ex


# ================================================================ tokenizer
def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# Qwen2 pre-tokenizer regex, ASCII form (\p{L} -> [A-Za-z], \p{N} -> [0-9]).
# Original: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
#           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
PRETOK_RE = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]"
    r"| ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_RE = re.compile("|".join(re.escape(s) for s in sorted(SPECIALS, key=len, reverse=True)))


class Tokenizer:
    """GPT-2 style byte-level BPE with the Qwen2 pre-tokenizer.

    Vocabulary layout: ids 0..255 are the 256 byte tokens (in byte order,
    stored as their GPT-2 unicode strings), then one token per merge in rank
    order, then the special tokens (SPECIALS order).

    Encoding: split out special tokens (longest match first), pre-tokenize each
    remaining piece with PRETOK_RE, map its UTF-8 bytes to the GPT-2 unicode
    chars and apply the merges by rank (lowest rank first) until none applies.
    """

    def __init__(self, merges: list[tuple[str, str]]):
        self.b2u = bytes_to_unicode()
        self.u2b = {u: b for b, u in self.b2u.items()}
        self.merges = merges
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.tokens = [self.b2u[b] for b in range(256)] + [a + b for a, b in merges] + SPECIALS
        assert len(set(self.tokens)) == len(self.tokens), "duplicate token"
        self.id_of = {t: i for i, t in enumerate(self.tokens)}
        self.special_ids = {s: self.id_of[s] for s in SPECIALS}
        self._cache: dict[str, list[int]] = {}

    @property
    def n_vocab(self):
        return len(self.tokens)

    def token_types(self):
        tt = [TT_NORMAL] * (self.n_vocab - len(SPECIALS))
        for s in SPECIALS:
            tt.append(TT_USER_DEFINED if s in (THINK, END_THINK) else TT_CONTROL)
        return tt

    def _bpe(self, word: str) -> list[int]:
        if word in self._cache:
            return self._cache[word]
        parts = [self.b2u[b] for b in word.encode("utf-8")]
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            parts[best:best + 2] = [parts[best] + parts[best + 1]]
        ids = [self.id_of[p] for p in parts]
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        ids = []
        pos = 0
        for m in SPECIAL_RE.finditer(text):
            for w in PRETOK_RE.findall(text[pos:m.start()]):
                ids += self._bpe(w)
            ids.append(self.special_ids[m.group(0)])
            pos = m.end()
        for w in PRETOK_RE.findall(text[pos:]):
            ids += self._bpe(w)
        return ids

    def decode(self, ids) -> str:
        out = bytearray()
        for i in ids:
            t = self.tokens[i]
            if t in self.special_ids:
                out += t.encode("utf-8")
            else:
                out += bytes(self.u2b[c] for c in t)
        return out.decode("utf-8", errors="replace")

    @staticmethod
    def train(texts: list[str], n_merges: int, min_freq: int = 2) -> "Tokenizer":
        """Standard BPE training on pre-token frequencies (specials removed)."""
        b2u = bytes_to_unicode()
        freq: dict[str, int] = {}
        for t in texts:
            for piece in SPECIAL_RE.split(t):
                for w in PRETOK_RE.findall(piece):
                    freq[w] = freq.get(w, 0) + 1
        words = [([b2u[b] for b in w.encode("utf-8")], f) for w, f in freq.items()]
        merges = []
        for _ in range(n_merges):
            pairs: dict[tuple[str, str], int] = {}
            for parts, f in words:
                for i in range(len(parts) - 1):
                    p = (parts[i], parts[i + 1])
                    pairs[p] = pairs.get(p, 0) + f
            if not pairs:
                break
            # highest count; ties broken deterministically by the pair itself
            best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
            if best[1] < min_freq:
                break
            (a, b), _ = best
            merges.append((a, b))
            for parts, _f in words:
                i = 0
                while i < len(parts) - 1:
                    if parts[i] == a and parts[i + 1] == b:
                        parts[i:i + 2] = [a + b]
                    else:
                        i += 1
        return Tokenizer(merges)


# ================================================================ model config
class Config:
    n_embd = 128
    n_layer = 4
    n_head = 4
    n_head_kv = 2
    n_ff = 384
    ctx = 512
    rope_theta = 10000.0
    eps = 1e-6

    @property
    def hd(self):
        return self.n_embd // self.n_head


# ================================================================ torch model
def build_torch_model(cfg: Config, n_vocab: int):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class RMSNorm(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            x = x.float()
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.eps) * self.weight

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d, hd = cfg.n_embd, cfg.hd
            self.attn_norm = RMSNorm(d)
            self.q = nn.Linear(d, cfg.n_head * hd, bias=True)
            self.k = nn.Linear(d, cfg.n_head_kv * hd, bias=True)
            self.v = nn.Linear(d, cfg.n_head_kv * hd, bias=True)
            self.o = nn.Linear(cfg.n_head * hd, d, bias=False)
            self.ffn_norm = RMSNorm(d)
            self.gate = nn.Linear(d, cfg.n_ff, bias=False)
            self.up = nn.Linear(d, cfg.n_ff, bias=False)
            self.down = nn.Linear(cfg.n_ff, d, bias=False)

        def forward(self, x, cos, sin):
            B, T, _ = x.shape
            hd = cfg.hd
            h = self.attn_norm(x)
            q = self.q(h).view(B, T, cfg.n_head, hd).transpose(1, 2)
            k = self.k(h).view(B, T, cfg.n_head_kv, hd).transpose(1, 2)
            v = self.v(h).view(B, T, cfg.n_head_kv, hd).transpose(1, 2)
            q, k = rope_t(q, cos, sin), rope_t(k, cos, sin)
            rep = cfg.n_head // cfg.n_head_kv
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            s = (q @ k.transpose(-1, -2)).float() * (1.0 / math.sqrt(hd))
            s = s.masked_fill(causal_mask[:T, :T], float("-inf"))
            a = torch.softmax(s, dim=-1).to(v.dtype) @ v
            x = x + self.o(a.transpose(1, 2).reshape(B, T, -1))
            h = self.ffn_norm(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    causal_mask = torch.ones(cfg.ctx, cfg.ctx, dtype=torch.bool).triu(1)

    def rope_t(x, cos, sin):
        h = x.shape[-1] // 2
        x1, x2 = x[..., :h], x[..., h:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embd = nn.Embedding(n_vocab, cfg.n_embd)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg.n_layer)])
            self.norm = RMSNorm(cfg.n_embd)
            self.out = nn.Linear(cfg.n_embd, n_vocab, bias=False)
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Embedding):
                    nn.init.normal_(m.weight, std=0.02)
            for b in self.blocks:  # scaled init of residual projections
                nn.init.normal_(b.o.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
                nn.init.normal_(b.down.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
            inv = cfg.rope_theta ** (-torch.arange(0, cfg.hd, 2, dtype=torch.float64) / cfg.hd)
            ang = torch.arange(cfg.ctx, dtype=torch.float64)[:, None] * inv[None, :]
            self.register_buffer("cos", ang.cos().float(), persistent=False)
            self.register_buffer("sin", ang.sin().float(), persistent=False)

        def forward(self, idx):
            T = idx.shape[1]
            cos, sin = self.cos[:T], self.sin[:T]
            x = self.embd(idx)
            for b in self.blocks:
                x = b(x, cos, sin)
            return self.out(self.norm(x))

    return Model()


# ================================================================ GGUF export
def export_gguf(path: str, model, tok: Tokenizer, cfg: Config, ttype=GGMLType.F32) -> int:
    sd = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    w = GGUFWriter(path)
    w.add("general.architecture", "qwen2")
    w.add("general.name", "dsr1-tiny")
    w.add("general.file_type", 0 if ttype == GGMLType.F32 else 1, GGUFValueType.UINT32)
    w.add("qwen2.context_length", cfg.ctx, GGUFValueType.UINT32)
    w.add("qwen2.embedding_length", cfg.n_embd, GGUFValueType.UINT32)
    w.add("qwen2.block_count", cfg.n_layer, GGUFValueType.UINT32)
    w.add("qwen2.feed_forward_length", cfg.n_ff, GGUFValueType.UINT32)
    w.add("qwen2.attention.head_count", cfg.n_head, GGUFValueType.UINT32)
    w.add("qwen2.attention.head_count_kv", cfg.n_head_kv, GGUFValueType.UINT32)
    w.add("qwen2.rope.freq_base", float(cfg.rope_theta), GGUFValueType.FLOAT32)
    w.add("qwen2.attention.layer_norm_rms_epsilon", float(cfg.eps), GGUFValueType.FLOAT32)
    w.add("tokenizer.ggml.model", "gpt2")
    w.add("tokenizer.ggml.pre", "deepseek-r1-qwen")
    w.add("tokenizer.ggml.tokens", tok.tokens, GGUFValueType.ARRAY, GGUFValueType.STRING)
    w.add("tokenizer.ggml.token_type", tok.token_types(), GGUFValueType.ARRAY, GGUFValueType.INT32)
    w.add("tokenizer.ggml.merges", [f"{a} {b}" for a, b in tok.merges],
          GGUFValueType.ARRAY, GGUFValueType.STRING)
    w.add("tokenizer.ggml.bos_token_id", tok.special_ids[BOS], GGUFValueType.UINT32)
    w.add("tokenizer.ggml.eos_token_id", tok.special_ids[EOS], GGUFValueType.UINT32)
    w.add("tokenizer.ggml.padding_token_id", tok.special_ids[PAD], GGUFValueType.UINT32)
    w.add("tokenizer.ggml.add_bos_token", True, GGUFValueType.BOOL)
    w.add("tokenizer.ggml.add_eos_token", False, GGUFValueType.BOOL)

    def mat(x):  # 2-D weights in the chosen type, 1-D in F32
        return ttype if x.ndim == 2 else GGMLType.F32

    def put(name, x):
        w.add_tensor(name, x, mat(x))

    put("token_embd.weight", sd["embd.weight"])
    for i in range(cfg.n_layer):
        p = f"blocks.{i}."
        put(f"blk.{i}.attn_norm.weight", sd[p + "attn_norm.weight"])
        put(f"blk.{i}.attn_q.weight", sd[p + "q.weight"])
        put(f"blk.{i}.attn_q.bias", sd[p + "q.bias"])
        put(f"blk.{i}.attn_k.weight", sd[p + "k.weight"])
        put(f"blk.{i}.attn_k.bias", sd[p + "k.bias"])
        put(f"blk.{i}.attn_v.weight", sd[p + "v.weight"])
        put(f"blk.{i}.attn_v.bias", sd[p + "v.bias"])
        put(f"blk.{i}.attn_output.weight", sd[p + "o.weight"])
        put(f"blk.{i}.ffn_norm.weight", sd[p + "ffn_norm.weight"])
        put(f"blk.{i}.ffn_gate.weight", sd[p + "gate.weight"])
        put(f"blk.{i}.ffn_up.weight", sd[p + "up.weight"])
        put(f"blk.{i}.ffn_down.weight", sd[p + "down.weight"])
    put("output_norm.weight", sd["norm.weight"])
    put("output.weight", sd["out.weight"])
    return w.write()


# ================================================================ numpy reference
class NumpyQwen2:
    """Reference qwen2 forward, weights read back from the GGUF file."""

    def __init__(self, path: str):
        r = GGUFReader(path)
        kv = r.kv
        assert kv["general.architecture"] == "qwen2"
        self.n_embd = kv["qwen2.embedding_length"]
        self.n_layer = kv["qwen2.block_count"]
        self.n_head = kv["qwen2.attention.head_count"]
        self.n_kv = kv["qwen2.attention.head_count_kv"]
        self.theta = kv["qwen2.rope.freq_base"]
        self.eps = kv["qwen2.attention.layer_norm_rms_epsilon"]
        self.ctx = kv["qwen2.context_length"]
        self.hd = self.n_embd // self.n_head
        # numpy shape = reversed GGUF ne: Linear weights come back as [out, in]
        self.w = {name: t.numpy() for name, t in r.tensors.items()}
        self.tok = Tokenizer([tuple(m.split(" ")) for m in kv["tokenizer.ggml.merges"]])
        assert self.tok.tokens == kv["tokenizer.ggml.tokens"], "tokenizer mismatch"
        self.eos = kv["tokenizer.ggml.eos_token_id"]

    def _norm(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def _rope(self, x, pos):  # x [B, H, hd], pos [B]
        half = self.hd // 2
        inv = self.theta ** (-np.arange(0, self.hd, 2, dtype=np.float64) / self.hd)
        ang = pos[:, None].astype(np.float64) * inv[None, :]
        cos = np.cos(ang).astype(np.float32)[:, None, :]
        sin = np.sin(ang).astype(np.float32)[:, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def generate(self, prompts: list[list[int]], max_new: int = 320) -> list[list[int]]:
        """Batched greedy decoding with a KV cache.  Prompts are left-padded;
        each row has its own positions (starting at 0) and pads are masked."""
        B = len(prompts)
        P = max(len(p) for p in prompts)
        T = P + max_new
        toks = np.zeros((B, T), dtype=np.int64)
        npad = np.array([P - len(p) for p in prompts])
        for i, p in enumerate(prompts):
            toks[i, npad[i]:P] = p
        kc = np.zeros((self.n_layer, B, self.n_kv, T, self.hd), dtype=np.float32)
        vc = np.zeros_like(kc)
        rep = self.n_head // self.n_kv
        done = np.zeros(B, dtype=bool)
        out = [[] for _ in range(B)]
        scale = 1.0 / math.sqrt(self.hd)
        w = self.w
        for t in range(T - 1):
            pos = t - npad
            x = w["token_embd.weight"][toks[:, t]]
            # keys of a row start at its first prompt token (pad rows attend
            # to themselves only, so they stay finite and never leak)
            valid = (np.arange(t + 1)[None, :] >= np.minimum(npad, t)[:, None])
            for L in range(self.n_layer):
                p = f"blk.{L}."
                h = self._norm(x, w[p + "attn_norm.weight"])
                q = h @ w[p + "attn_q.weight"].T + w[p + "attn_q.bias"]
                k = h @ w[p + "attn_k.weight"].T + w[p + "attn_k.bias"]
                v = h @ w[p + "attn_v.weight"].T + w[p + "attn_v.bias"]
                q = self._rope(q.reshape(B, self.n_head, self.hd), pos)
                k = self._rope(k.reshape(B, self.n_kv, self.hd), pos)
                kc[L, :, :, t] = k
                vc[L, :, :, t] = v.reshape(B, self.n_kv, self.hd)
                K = np.repeat(kc[L, :, :, :t + 1], rep, axis=1)  # [B, H, t+1, hd]
                V = np.repeat(vc[L, :, :, :t + 1], rep, axis=1)
                s = np.einsum("bhd,bhtd->bht", q, K) * scale
                s = np.where(valid[:, None, :], s, -np.inf)
                s = np.exp(s - s.max(-1, keepdims=True))
                s /= s.sum(-1, keepdims=True)
                a = np.einsum("bht,bhtd->bhd", s, V).reshape(B, -1)
                x = x + a @ w[p + "attn_output.weight"].T
                h = self._norm(x, w[p + "ffn_norm.weight"])
                g = h @ w[p + "ffn_gate.weight"].T
                u = h @ w[p + "ffn_up.weight"].T
                x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
            if t + 1 < P:
                continue  # still consuming the prompt
            logits = self._norm(x, w["output_norm.weight"]) @ w["output.weight"].T
            nxt = logits.argmax(-1)
            for i in range(B):
                if not done[i]:
                    out[i].append(int(nxt[i]))
                    done[i] = nxt[i] == self.eos
            toks[:, t + 1] = nxt
            if done.all():
                break
        return out


def answer_of(tok: Tokenizer, gen: list[int]) -> str:
    """The answer line: text after "</think>\\n\\n" up to the EOS token."""
    text = tok.decode(gen)
    if not text.endswith(EOS) or END_THINK + "\n\n" not in text:
        return "<malformed>"
    return text[:-len(EOS)].split(END_THINK + "\n\n", 1)[1]


def evaluate(gguf_path: str, heldout, batch=250, verbose=True):
    ref = NumpyQwen2(gguf_path)
    tok = ref.tok
    correct = 0
    per_op: dict[str, list[int]] = {}
    fails = []
    for i in range(0, len(heldout), batch):
        chunk = heldout[i:i + batch]
        prompts = [tok.encode(prompt_text(q)) for (_, q, _, _) in chunk]
        gens = ref.generate(prompts)
        for (key, q, reasoning, ans), g in zip(chunk, gens):
            got = answer_of(tok, g)
            ok = got == ans
            correct += ok
            op = key[0] if key[0] != "mul" else ("mul1" if key[2] < 10 else "mul2")
            per_op.setdefault(op, [0, 0])
            per_op[op][0] += ok
            per_op[op][1] += 1
            if not ok:
                fails.append((q, ans, got))
    acc = correct / len(heldout)
    if verbose:
        print(f"held-out greedy accuracy: {correct}/{len(heldout)} = {100 * acc:.1f}%")
        print("  per op: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(per_op.items())))
        for q, ans, got in fails[:10]:
            print(f"  FAIL {q!r}: want {ans!r} got {got!r}")
    return acc


# ================================================================ training
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "dsr1-tiny.gguf"))
    ap.add_argument("--heldout", default=os.path.join(HERE, "heldout.txt"))
    ap.add_argument("--f16", action="store_true", help="store 2-D weights as F16")
    ap.add_argument("--fp32", action="store_true", help="train without bf16 autocast")
    ap.add_argument("--eval-only", action="store_true", help="only evaluate --out")
    ap.add_argument("--eval-n", type=int, default=500)
    ap.add_argument("--time-limit", type=float, default=0,
                    help="stop training after this many minutes (0 = none)")
    args = ap.parse_args()

    heldout = heldout_set()
    if args.eval_only:
        t0 = time.time()
        evaluate(args.out, heldout[:args.eval_n])
        print(f"eval time {time.time() - t0:.1f}s")
        return

    import torch
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    cfg = Config()

    # (a) data: held-out problems are excluded from training by problem key
    exclude = {h[0] for h in heldout}
    with open(args.heldout, "w", encoding="utf-8") as f:
        for _, q, _, ans in heldout:
            assert "\t" not in q and "\n" not in q
            f.write(f"{q}\t{ans}\n")
    print(f"wrote {len(heldout)} held-out questions to {args.heldout}")

    def full_text(q, reasoning, ans):
        return prompt_text(q) + completion_text(reasoning, ans)

    # (b) tokenizer, trained on 20k examples from its own stream
    t0 = time.time()
    bpe_src = training_stream(args.seed + 1, exclude)
    tok = Tokenizer.train([full_text(*next(bpe_src)[1:]) for _ in range(20000)], n_merges=300)
    print(f"tokenizer: {len(tok.merges)} merges, vocab {tok.n_vocab} "
          f"(specials {tok.special_ids}) in {time.time() - t0:.1f}s")

    stream = training_stream(args.seed, exclude)

    batch_rng = random.Random(args.seed + 3)
    pending: list = []

    def next_examples(n):
        # length bucketing: draw 16 batches, sort by length, serve them in a
        # shuffled order (less padding; deterministic)
        if not pending:
            pool = []
            for _ in range(16 * n):
                _, q, reasoning, ans = next(stream)
                p = tok.encode(prompt_text(q))
                c = tok.encode(completion_text(reasoning, ans))
                pool.append((p, c))
            pool.sort(key=lambda pc: len(pc[0]) + len(pc[1]))
            chunks = [pool[i:i + n] for i in range(0, len(pool), n)]
            batch_rng.shuffle(chunks)
            pending.extend(chunks)
        return pending.pop()

    def get_batch(n):
        seqs, masks = [], []
        for p, c in next_examples(n):
            seqs.append(p + c)
            masks.append([0] * len(p) + [1] * len(c))
        T = max(len(s) for s in seqs)
        assert T <= cfg.ctx
        x = torch.full((n, T), tok.special_ids[PAD], dtype=torch.long)
        m = torch.zeros((n, T), dtype=torch.float32)
        for i, (s, mk) in enumerate(zip(seqs, masks)):
            x[i, :len(s)] = torch.tensor(s)
            m[i, :len(s)] = torch.tensor(mk, dtype=torch.float32)
        return x, m

    # self-check: the tokenizer round-trips every example, the specials are
    # single tokens, and the longest example fits the context
    check = [next(training_stream(args.seed + 2, exclude)) for _ in range(1)]
    chk_stream = training_stream(args.seed + 2, exclude)
    longest = 0
    for _ in range(5000):
        _, q, reasoning, ans = next(chk_stream)
        text = full_text(q, reasoning, ans)
        ids = tok.encode(text)
        assert tok.decode(ids) == text, text
        longest = max(longest, len(ids))
    for _, q, reasoning, ans in heldout:
        text = full_text(q, reasoning, ans)
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert ids.count(tok.special_ids[THINK]) == 1 and ids.count(tok.special_ids[END_THINK]) == 1
        longest = max(longest, len(ids))
    del check
    print(f"tokenizer round-trip ok; longest example {longest} tokens (ctx {cfg.ctx})")

    # (c) model + training
    model = build_torch_model(cfg, tok.n_vocab)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.3f}M params, n_embd {cfg.n_embd}, layers {cfg.n_layer}, "
          f"heads {cfg.n_head}/{cfg.n_head_kv}, ff {cfg.n_ff}")
    decay = [p for n, p in model.named_parameters() if p.ndim == 2]
    nodecay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": nodecay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    warm = 100

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        frac = (step - warm) / max(1, args.steps - warm)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))

    t_train = time.time()
    ema = None
    step = 0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        x, m = get_batch(args.batch)
        # bf16 autocast: the matmuls run in bf16 (fp32 master weights, fp32
        # norms/softmax/loss); ~50x faster than this CPU's fp32 BLAS here
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.fp32):
            logits = model(x[:, :-1])
        logits = logits.float()
        loss_all = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
        mm = m[:, 1:].reshape(-1)
        loss = (loss_all * mm).sum() / mm.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0 or step == args.steps - 1:
            el = time.time() - t_train
            print(f"step {step:5d} loss {ema:.4f} lr {lr_at(step):.2e} {el:6.0f}s", flush=True)
        if args.time_limit and time.time() - t_train > args.time_limit * 60:
            print(f"time limit reached at step {step}")
            break
    train_s = time.time() - t_train
    print(f"training: {step + 1} steps x {args.batch} in {train_s:.0f}s ({train_s / 60:.1f} min)")

    # (d) export
    ttype = GGMLType.F16 if args.f16 else GGMLType.F32
    size = export_gguf(args.out, model, tok, cfg, ttype)
    print(f"wrote {args.out}: {size} bytes ({size / 2**20:.2f} MiB)")

    # check the export: numpy forward of the GGUF == torch forward
    ref = NumpyQwen2(args.out)
    model.eval()
    _, q, reasoning, ans = heldout[0]
    ids = tok.encode(prompt_text(q) + completion_text(reasoning, ans))
    with torch.no_grad():
        tl = model(torch.tensor([ids]))[0].numpy()
    x = ref.w["token_embd.weight"][ids]
    gen_logits = _numpy_full_logits(ref, ids)
    err = np.abs(gen_logits - tl).max()
    print(f"export check: max |logit diff| torch vs numpy(GGUF) = {err:.2e}")
    assert err < (1e-3 if ttype == GGMLType.F32 else 5e-2) * max(1.0, np.abs(tl).max())
    del x

    # (e) evaluation from the GGUF
    t0 = time.time()
    evaluate(args.out, heldout[:args.eval_n])
    print(f"eval time {time.time() - t0:.1f}s")


def _numpy_full_logits(ref: NumpyQwen2, ids: list[int]) -> np.ndarray:
    """Non-cached full-sequence forward (independent of generate())."""
    w = ref.w
    T = len(ids)
    x = w["token_embd.weight"][ids]
    pos = np.arange(T)
    mask = np.tril(np.ones((T, T), dtype=bool))
    rep = ref.n_head // ref.n_kv
    for L in range(ref.n_layer):
        p = f"blk.{L}."
        h = ref._norm(x, w[p + "attn_norm.weight"])
        q = (h @ w[p + "attn_q.weight"].T + w[p + "attn_q.bias"]).reshape(T, ref.n_head, ref.hd)
        k = (h @ w[p + "attn_k.weight"].T + w[p + "attn_k.bias"]).reshape(T, ref.n_kv, ref.hd)
        v = (h @ w[p + "attn_v.weight"].T + w[p + "attn_v.bias"]).reshape(T, ref.n_kv, ref.hd)
        q, k = ref._rope(q, pos), ref._rope(k, pos)
        out = np.zeros((T, ref.n_head, ref.hd), dtype=np.float32)
        for hh in range(ref.n_head):
            kv = hh // rep
            s = q[:, hh] @ k[:, kv].T / math.sqrt(ref.hd)
            s = np.where(mask, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            out[:, hh] = s @ v[:, kv]
        x = x + out.reshape(T, -1) @ w[p + "attn_output.weight"].T
        h = ref._norm(x, w[p + "ffn_norm.weight"])
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ w[p + "ffn_down.weight"].T
    return ref._norm(x, w["output_norm.weight"]) @ w["output.weight"].T


if __name__ == "__main__":
    main()
