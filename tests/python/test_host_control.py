"""Host control through the bindings (issue 14): interrupting an evaluation
(Context.cancel() from another thread, the context's abort callable,
Generation.cancel()), the per-step prompt cap, load progress, the memory
estimate, and exceptions that carry the failing handle's message.

"Within one layer" is checked by counting the layers the library starts
(each polls the abort callable once), not by timing."""

import os
import random
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))

import dsr1  # noqa: E402
from dsr1 import StopReason  # noqa: E402

DATA = Path(os.environ.get("DSR1_TEST_DATA", ROOT / "tests" / "data"))
MODEL = DATA / "models" / "qwen2-q8_0.gguf"

N_PROMPT, BATCH, GEN = 768, 96, 6


@pytest.fixture(scope="module")
def model():
    if not MODEL.is_file():
        pytest.skip(f"fixture model {MODEL} missing")
    with dsr1.Model.load(MODEL) as m:
        yield m


@pytest.fixture(scope="module")
def long_prompt(model):
    rng = random.Random(5)
    return [rng.randrange(100, model.n_vocab) for _ in range(N_PROMPT)]


@pytest.fixture(scope="module")
def reference(model, long_prompt):
    """The tokens of an uninterrupted greedy generation."""
    with dsr1.Context(model, n_ctx=N_PROMPT + 64, n_batch=BATCH) as ctx:
        out = dsr1.generate(ctx, dsr1.Sampler.greedy(model), long_prompt, max_new_tokens=GEN,
                            starts_in_reasoning=False)
    assert len(out.tokens) == GEN
    return out.tokens


class Polls:
    """An abort callable that only counts the layers started; cancel_at()
    has another thread cancel once a number of layers were (the evaluation
    waits in that poll until the cancel was made, so where it lands does
    not depend on how fast the thread is scheduled)."""

    def __init__(self):
        self.n = 0
        self.at_cancel = None
        self.reached = threading.Event()
        self.cancelled = threading.Event()
        self.after = 0

    def __call__(self):
        self.n += 1
        if self.n == self.after:
            self.reached.set()
            assert self.cancelled.wait(60)
        return False

    def cancel_at(self, after, cancel):
        self.after = after

        def run():
            assert self.reached.wait(60)
            self.at_cancel = self.n
            cancel()
            self.cancelled.set()
        t = threading.Thread(target=run)
        t.start()
        return t


def test_context_cancel_from_thread_stops_a_long_prompt(model, long_prompt, reference):
    polls = Polls()
    ctx = dsr1.Context(model, n_ctx=N_PROMPT + 64, n_batch=BATCH, abort=polls)
    smp = dsr1.Sampler.greedy(model)
    gen = dsr1.Generation(ctx, smp, long_prompt, max_new_tokens=GEN, starts_in_reasoning=False)
    thread = polls.cancel_at(3 * model.n_layer + 1, ctx.cancel)  # a layer of the fourth chunk
    with pytest.raises(dsr1.CancelledError) as e:
        gen.step()
    thread.join()
    assert "cancelled" in e.value.message and e.value.message == gen.errmsg
    # the poll that saw the request may have raced with it: at most one more layer
    assert polls.n - polls.at_cancel <= 1, (polls.at_cancel, polls.n)
    assert not gen.done  # the context's abort: the generation goes on
    past = ctx.n_past
    assert past % BATCH == 0 and 3 * BATCH <= past < N_PROMPT, past
    # it continues from the tokens in the cache, with the same tokens as without the cancel
    tokens = []
    while not gen.done:
        t = gen.step()
        if t is not None:
            tokens.append(t)
    assert gen.stats.n_prompt_eval == N_PROMPT  # every prompt token evaluated exactly once overall
    assert tokens == reference
    gen.close()
    ctx.close()


def test_generation_cancel_from_thread(model, long_prompt, reference):
    polls = Polls()
    ctx = dsr1.Context(model, n_ctx=N_PROMPT + 64, n_batch=BATCH, abort=polls)
    smp = dsr1.Sampler.greedy(model)
    gen = dsr1.Generation(ctx, smp, long_prompt, max_new_tokens=GEN, starts_in_reasoning=False)
    thread = polls.cancel_at(2 * model.n_layer + 2, gen.cancel)
    with pytest.raises(dsr1.CancelledError):
        gen.step()
    thread.join()
    assert polls.n - polls.at_cancel <= 1
    assert gen.done and gen.stop_reason == StopReason.CANCELLED
    assert gen.step() is None  # finished: no more calls into the library
    gen.close()
    past = ctx.n_past
    assert past % BATCH == 0 and 2 * BATCH <= past < N_PROMPT, past
    # a new generation reuses the cached prefix
    out = dsr1.generate(ctx, smp, long_prompt, max_new_tokens=GEN, starts_in_reasoning=False)
    assert out.tokens == reference


def test_eval_cancel_and_abort_callable(model, long_prompt):
    ref = dsr1.Context(model, n_ctx=N_PROMPT, n_batch=BATCH)
    ref.eval(long_prompt)
    want = ref.logits(as_numpy=False)

    polls = Polls()
    ctx = dsr1.Context(model, n_ctx=N_PROMPT, n_batch=BATCH, abort=polls)
    thread = polls.cancel_at(model.n_layer + 3, ctx.cancel)
    with pytest.raises(dsr1.CancelledError):
        ctx.eval(long_prompt)
    thread.join()
    past = ctx.n_past
    assert past % BATCH == 0 and BATCH <= past < N_PROMPT, past
    with pytest.raises(dsr1.StateError):  # no logits after a cancelled evaluation
        ctx.logits()
    ctx.cancel()  # nothing running: no effect on the next call
    ctx.eval(long_prompt[past:])
    assert ctx.n_past == N_PROMPT
    assert max(abs(a - b) for a, b in zip(ctx.logits(as_numpy=False), want)) <= 1e-4

    # the abort callable itself: truthy stops, an exception stops and propagates
    calls = []
    ctx2 = dsr1.Context(model, n_ctx=N_PROMPT, n_batch=BATCH, abort=lambda: len(calls) > 0 or calls.append(1))
    with pytest.raises(dsr1.CancelledError):
        ctx2.eval(long_prompt[:BATCH])
    assert ctx2.n_past == 0

    def boom():
        raise ZeroDivisionError("from abort")
    ctx3 = dsr1.Context(model, n_ctx=64, abort=boom)
    with pytest.raises(ZeroDivisionError):
        ctx3.eval([1, 2, 3])
    assert ctx3.n_past == 0


def test_reset_refused_during_a_generation(model):
    ctx = dsr1.Context(model, n_ctx=128)
    gen = dsr1.Generation(ctx, dsr1.Sampler.greedy(model), [10, 11, 12], max_new_tokens=4)
    gen.step()
    past = ctx.n_past
    with pytest.raises(dsr1.StateError) as e:
        ctx.reset()
    assert "in flight" in e.value.message
    assert ctx.n_past == past
    gen.run()
    gen.close()
    ctx.reset()
    assert ctx.n_past == 0 and ctx.errmsg == ""


def test_prompt_cap_bounds_every_step(model, long_prompt, reference):
    cap = 64
    ctx = dsr1.Context(model, n_ctx=N_PROMPT + 64, n_batch=BATCH)
    gen = dsr1.Generation(ctx, dsr1.Sampler.greedy(model), long_prompt, max_new_tokens=GEN,
                          starts_in_reasoning=False, max_prompt_per_step=cap)
    tokens, steps, past = [], 0, 0
    while not gen.done:
        t = gen.step()
        steps += 1
        assert ctx.n_past - past <= cap, (steps, ctx.n_past, past)
        past = ctx.n_past
        if t is not None:
            tokens.append(t)
    assert steps >= N_PROMPT // cap
    assert tokens == reference


def test_load_progress_and_cancel(model):
    seen = []
    with dsr1.Model.load(MODEL, progress=seen.append, preload=True) as m:
        assert m.n_vocab == model.n_vocab
    assert len(seen) >= 2
    first, last = seen[0], seen[-1]
    assert first.bytes_done == 0 and first.tensors_done == 0
    assert last.bytes_done == last.bytes_total > 0 and last.tensors_done == last.tensors_total > 0
    assert all(a.bytes_done <= b.bytes_done for a, b in zip(seen, seen[1:]))

    with pytest.raises(dsr1.CancelledError):
        dsr1.Model.load(MODEL, progress=lambda p: p.tensors_done > 0)

    def boom(p):
        raise KeyError("from progress")
    with pytest.raises(KeyError):
        dsr1.Model.load(MODEL, progress=boom)


def test_memory_estimate_matches_a_context(model):
    est = dsr1.estimate_memory(MODEL, n_ctx=256, n_batch=64)
    with dsr1.Context(model, n_ctx=256, n_batch=64) as ctx:
        assert est.kv_bytes_per_token == ctx.kv_bytes_per_token > 0
    assert est.kv_bytes == 256 * est.kv_bytes_per_token
    assert (est.n_ctx, est.n_batch) == (256, 64)
    assert 0 < est.weight_bytes <= est.file_bytes == MODEL.stat().st_size
    assert est.scratch_bytes > 0
    with pytest.raises(dsr1.InvalidArgumentError):
        dsr1.estimate_memory(MODEL, n_ctx=-1)
    with pytest.raises(FileNotFoundError):
        dsr1.estimate_memory(DATA / "no-such.gguf")


def test_exceptions_carry_the_handles_message(model):
    ctx = dsr1.Context(model, n_ctx=32)
    with pytest.raises(dsr1.InvalidArgumentError) as e:
        ctx.eval([model.n_vocab + 5])
    assert e.value.message == ctx.errmsg and "vocabulary" in ctx.errmsg
    # another failure on this thread does not change the context's message
    with pytest.raises(dsr1.DSR1Error):
        dsr1.Sampler(model, top_k=-1)
    assert "vocabulary" in ctx.errmsg
    assert "vocabulary" not in dsr1._lib().last_error().decode()
    ctx.eval([1, 2])
    assert ctx.errmsg == ""  # cleared by the next successful call on the handle

    smp = dsr1.Sampler(model)
    with pytest.raises(dsr1.InvalidArgumentError) as e:
        smp.sample([0.0] * 3)
    assert e.value.message == smp.errmsg != ""
    smp.sample([0.0] * model.n_vocab)
    assert smp.errmsg == ""
