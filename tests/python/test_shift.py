"""Python bindings of the context shift (Context.shift, ctx_policy/n_keep of
generations and chats, the shift counters of GenerationStats), on the
shipped tiny reasoning model (examples/tiny/dsr1-tiny.gguf)."""
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


def test_context_shift(model):
    ctx = dsr1.Context(model, n_ctx=64)
    tokens = model.tokenize("The quick brown fox jumps over the lazy dog again and again.")
    ctx.eval(tokens)
    n = ctx.n_past
    with pytest.raises(dsr1.InvalidArgumentError, match="n_discard"):
        ctx.shift(1, 0)
    with pytest.raises(dsr1.InvalidArgumentError, match="n_keep"):
        ctx.shift(n + 1, 1)
    assert ctx.n_past == n
    ctx.shift(1, 4)
    assert ctx.n_past == n - 4
    ctx.eval([tokens[-1]])  # continues at the new end
    assert ctx.n_past == n - 3


def test_generation_goes_past_the_context(model):
    ctx = dsr1.Context(model, n_ctx=48)
    eog = [t for t in range(model.n_vocab) if model.is_eog(t)]
    smp = dsr1.Sampler(model, temperature=0.8, seed=3, logit_bias={t: float("-inf") for t in eog})
    prompt = model.chat_tokenize([dsr1.ChatMessage("user", "Count.")], add_generation_prompt=True)
    gen = dsr1.Generation(ctx, smp, prompt, max_new_tokens=150, ctx_policy="shift", n_keep=1)
    gen.run()
    assert gen.stop_reason == dsr1.StopReason.LENGTH
    stats = gen.stats
    assert stats.n_generated == 150 and stats.n_ctx_shifts > 0 and stats.n_ctx_dropped > 100
    gen.close()
    stopped = dsr1.Generation(ctx, smp, prompt, max_new_tokens=150, ctx_policy=dsr1.CtxPolicy.STOP)
    stopped.run()
    assert stopped.stop_reason == dsr1.StopReason.CONTEXT_FULL


def test_chat_never_fills_up(model):
    ctx = dsr1.Context(model, n_ctx=96)
    chat = dsr1.Chat(ctx, dsr1.Sampler(model, seed=5), "Be brief.")
    for q in ["Hello!", "How are you today?", "Tell me about the sea.", "And the mountains?", "Thanks."]:
        chat.ask(q, max_new_tokens=40, ctx_policy="shift")
    messages = chat.messages
    assert messages[0].role == "system" and len(messages) % 2 == 1
