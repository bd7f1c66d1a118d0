"""Python bindings of grammars, log-probabilities and the step hook, on the
shipped tiny reasoning model (examples/tiny/dsr1-tiny.gguf)."""
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))

import dsr1  # noqa: E402

TINY = ROOT / "examples" / "tiny" / "dsr1-tiny.gguf"
SCHEMA = {"type": "object",
          "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
          "required": ["answer", "sure"]}


@pytest.fixture(scope="module")
def tiny():
    if not TINY.exists():
        pytest.skip(f"{TINY} is missing")
    model = dsr1.Model(str(TINY))
    ctx = dsr1.Context(model)
    yield model, ctx
    ctx.close()
    model.close()


def _prompt(model, question):
    return model.chat_tokenize([dsr1.ChatMessage("user", question)], add_generation_prompt=True)


def test_json_schema_answers(tiny):
    model, ctx = tiny
    text = dsr1.json_schema_to_grammar(SCHEMA)
    assert "root ::=" in text
    with pytest.raises(dsr1.DSR1Error):
        dsr1.json_schema_to_grammar({"$ref": "#/x"})
    with pytest.raises(dsr1.DSR1Error):
        dsr1.Grammar(model, "root ::= undefined-rule\n")
    g = dsr1.Grammar.from_json_schema(model, SCHEMA)
    for seed, question in enumerate(["What is 141 plus 83?", "Multiply 69 by 43.", "Is 311 greater than 298?"]):
        smp = dsr1.Sampler(model, seed=seed)
        ctx.reset()
        free = dsr1.generate(ctx, smp, _prompt(model, question), max_new_tokens=300)
        smp.reset(seed)
        ctx.reset()
        out = dsr1.generate(ctx, smp, _prompt(model, question), max_new_tokens=300, grammar=g)
        assert out.stop_reason == dsr1.StopReason.EOS
        value = json.loads(out.answer)
        assert set(value) == {"answer", "sure"}
        assert isinstance(value["answer"], int) and isinstance(value["sure"], bool)
        assert out.reasoning == free.reasoning  # the reasoning stays free
    g.close()


def test_logprobs_and_hook(tiny):
    model, ctx = tiny
    smp = dsr1.Sampler.greedy(model)
    prompt = _prompt(model, "What is 12 plus 30?")
    ctx.reset()
    ctx.eval(prompt)
    tok, lp, top = smp.sample_logprobs(ctx.logits(), n_top=model.n_vocab)
    assert top[0][0] == tok and top[0][1] == lp
    assert abs(sum(math.exp(p) for _, p in top) - 1.0) < 1e-4
    events = []
    ctx.reset()
    out = dsr1.generate(ctx, smp, prompt, max_new_tokens=50, n_logprobs=3, on_event=events.append)
    with_lp = [e for e in events if e.tokens]
    assert with_lp and all(len(e.logprobs) == len(e.tokens) for e in with_lp)
    assert all(len(row) == 3 for e in with_lp for row in e.top_logprobs)
    # the host chooses every token (the argmax): the same text, events go on
    calls = []

    def hook(step):
        calls.append(step.in_reasoning)
        return max(range(step.n_vocab), key=lambda i: step.logits[i])

    ctx.reset()
    chosen = dsr1.generate(ctx, smp, prompt, max_new_tokens=50, on_step=hook)
    assert chosen.reasoning == out.reasoning and chosen.answer == out.answer
    assert calls and calls[0]

    def boom(step):
        raise RuntimeError("hook failed")

    ctx.reset()
    with pytest.raises(RuntimeError):
        dsr1.generate(ctx, smp, prompt, max_new_tokens=5, on_step=boom)


def test_sampler_state(tiny):
    model, ctx = tiny
    a = dsr1.Sampler(model, temperature=1.0, seed=5)
    ctx.reset()
    ctx.eval(_prompt(model, "What is 1 plus 2?"))
    logits = ctx.logits()
    for _ in range(5):
        a.accept(a.sample(logits))
    blob = a.save_state()
    b = dsr1.Sampler(model, temperature=1.0, seed=99)
    b.load_state(blob)
    assert [a.sample(logits) for _ in range(20)] == [b.sample(logits) for _ in range(20)]
    with pytest.raises(dsr1.DSR1Error):
        b.load_state(blob[:-1])
    with pytest.raises(dsr1.DSR1Error):
        b.load_state(blob[:10] + bytes([blob[10] ^ 1]) + blob[11:])
