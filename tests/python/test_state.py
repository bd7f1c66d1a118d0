"""Python bindings of saved context and chat state (Context.save_state /
load_state and the file forms, Chat.save_state / load_state), on the shipped
tiny reasoning model (examples/tiny/dsr1-tiny.gguf)."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))

import dsr1  # noqa: E402

TINY = ROOT / "examples" / "tiny" / "dsr1-tiny.gguf"


@pytest.fixture(scope="module")
def model():
    if not TINY.exists():
        pytest.skip(f"{TINY} is missing")
    m = dsr1.Model(str(TINY))
    yield m
    m.close()


def _prompt(model, question):
    return model.chat_tokenize([dsr1.ChatMessage("user", question)], add_generation_prompt=True)


def _steps(ctx, smp, n):
    """n sampled tokens, each evaluated; returns (tokens, logits rows)."""
    toks, rows = [], []
    for _ in range(n):
        logits = ctx.logits(as_numpy=False)
        rows.append(logits)
        t = smp.sample(logits)
        smp.accept(t)
        toks.append(t)
        ctx.eval([t])
    return toks, rows


def test_context_round_trip(model, tmp_path):
    a = dsr1.Context(model, n_ctx=256)
    sa = dsr1.Sampler(model, temperature=0.9, seed=11)
    a.eval(_prompt(model, "What is 12 + 30?"))
    _steps(a, sa, 5)
    blob = a.save_state(sa)
    want = _steps(a, sa, 8)

    b = dsr1.Context(model, n_ctx=200)
    sb = dsr1.Sampler(model, temperature=0.9, seed=12345)
    b.load_state(blob, sb)
    assert b.n_past == a.n_past - 8
    assert _steps(b, sb, 8) == want  # same tokens, bit-identical logits

    path = tmp_path / "ctx.state"
    b.save_state_file(path, sb)
    c = dsr1.Context(model, n_ctx=200)
    sc = dsr1.Sampler(model, temperature=0.9)
    c.load_state_file(path, sc)
    assert _steps(c, sc, 4) == _steps(b, sb, 4)
    with pytest.raises(FileNotFoundError):
        c.load_state_file(tmp_path / "missing.state")

    # hostile blobs: FormatError, and the context is unchanged
    n_past = c.n_past
    with pytest.raises(dsr1.FormatError):
        c.load_state(blob[:-1], sc)
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x10
    with pytest.raises(dsr1.FormatError):
        c.load_state(bytes(flipped), sc)
    with pytest.raises(dsr1.FormatError):
        c.load_state(b"not a state at all, not at all........................", sc)
    assert c.n_past == n_past
    # a context with another cache type cannot take it
    f32 = dsr1.Context(model, n_ctx=256, kv_type=dsr1.KVType.F32)
    with pytest.raises(dsr1.InvalidArgumentError):
        f32.load_state(blob)
    for h in (f32, c, sc, b, sb, a, sa):
        h.close()


def test_chat_round_trip(model, tmp_path):
    ca, cb = dsr1.Context(model, n_ctx=512), dsr1.Context(model, n_ctx=512)
    sa, sb = dsr1.Sampler(model, temperature=0), dsr1.Sampler(model, temperature=0)
    a = dsr1.Chat(ca, sa, "Answer briefly.")
    a.ask("What is 12 + 30?", max_new_tokens=40)
    blob = a.save_state()
    want = a.ask("What is 345 + 78?", max_new_tokens=40)

    b = dsr1.Chat(cb, sb)
    b.load_state(blob)
    assert b.messages == a.messages[:3]
    assert b.ask("What is 345 + 78?", max_new_tokens=40) == want

    path = tmp_path / "chat.state"
    a.save_state_file(path)
    b.load_state_file(path)
    assert b.messages == a.messages
    with pytest.raises(dsr1.InvalidArgumentError):
        b.load_state(ca.save_state())  # no messages in a context blob
    for h in (a, b, ca, cb, sa, sb):
        h.close()
