"""Ctrl-C during a generation: a real SIGINT sent to a child process must stop
the generation and raise KeyboardInterrupt in the caller, every time.

The child generates from the fixture model with its end-of-generation tokens
banned (a few seconds of tokens); it prints "ready" at the first event and the
parent sends SIGINT 50 ms later, when the library is busy in C: Python then
runs its handler at the entry of the next ctypes callback, where a plain
KeyboardInterrupt would be lost ("Exception ignored on calling ctypes callback
function") and the generation would carry on."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("DSR1_TEST_DATA", ROOT / "tests" / "data"))
MODEL = DATA / "models" / "qwen2-q8_0.gguf"
ROUNDS = 4

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    import dsr1

    mode, model_path, rounds = sys.argv[2], sys.argv[3], int(sys.argv[4])
    m = dsr1.Model.load(model_path)
    ban = {t: -1e30 for t in range(m.n_vocab) if m.is_eog(t)}
    ctx = dsr1.Context(m, n_ctx=2048, backend="scalar")
    smp = dsr1.Sampler(m, seed=1, logit_bias=ban)
    prompt = m.tokenize("hello")
    for r in range(rounds):
        seen = []

        def on_event(ev):
            seen.append(ev)
            if len(seen) == 1:
                print("ready", flush=True)

        try:
            if mode == "generate":
                dsr1.generate(ctx, smp, prompt, on_event=on_event)
            elif mode == "iterate":
                # closed at once: an unfinished step generation holds the context
                with dsr1.Generation(ctx, smp, prompt) as gen:
                    for ev in gen:
                        on_event(ev)
            elif mode == "run":
                with dsr1.Generation(ctx, smp, prompt, on_event=on_event) as gen:
                    gen.run()
            else:
                raise SystemExit("unknown mode " + mode)
        except KeyboardInterrupt:
            n = sum(len(e.tokens) for e in seen)
            print(f"interrupted after {n} tokens", flush=True)
            continue
        print("finished: the interrupt was lost", flush=True)
        sys.exit(1)
    # the context is still usable after the interrupts
    out = dsr1.generate(ctx, smp, prompt, max_new_tokens=3)
    print("after", len(out.tokens), flush=True)
""")


@pytest.mark.parametrize("mode", ["generate", "iterate", "run"])
def test_sigint_stops_generation(mode, tmp_path):
    if not MODEL.is_file():
        pytest.skip(f"fixture model {MODEL} missing")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ROOT / "bindings" / "python"), mode, str(MODEL), str(ROUNDS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        for _ in range(ROUNDS):
            line = proc.stdout.readline().strip()
            assert line == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
            # some tokens later, when the child is (almost surely) inside C
            time.sleep(0.05)
            os.kill(proc.pid, signal.SIGINT)
            line = proc.stdout.readline().strip()
            lines.append(line)
            assert line.startswith("interrupted after "), (lines, proc.stderr.read())
            # stopped long before the 2046 tokens the context allows
            assert int(line.split()[2]) < 1500, line
        last = proc.stdout.readline().strip()
        assert last == "after 3", (last, proc.stderr.read())
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "Exception ignored" not in err, err


# Ctrl-C during a long prompt: the library is evaluating, no event comes
# before the prompt is done, so the context's abort callback (polled before
# every layer) is where the interrupt lands. The child's abort callable
# prints "ready" at the second layer of a round and then sleeps in C (libc's
# usleep) while the parent sends SIGINT; the evaluation must stop at that
# poll, not at the end of the prompt.
PROMPT_CHILD = textwrap.dedent("""
    import ctypes, random, sys
    sys.path.insert(0, sys.argv[1])
    import dsr1

    mode, model_path, rounds = sys.argv[2], sys.argv[3], int(sys.argv[4])
    libc = ctypes.CDLL(None)
    m = dsr1.Model.load(model_path)
    rng = random.Random(3)
    prompt = [rng.randrange(100, m.n_vocab) for _ in range(768)]
    polls = [0]

    def abort():
        polls[0] += 1
        if polls[0] == 2:
            print("ready", flush=True)
            libc.usleep(500000)  # the SIGINT arrives here (in C)
        return False

    ctx = dsr1.Context(m, n_ctx=1024, n_batch=64, backend="scalar", abort=abort)
    smp = dsr1.Sampler.greedy(m)
    for r in range(rounds):
        ctx.reset()
        polls[0] = 0
        try:
            if mode == "eval":
                ctx.eval(prompt)
            else:
                dsr1.generate(ctx, smp, prompt, max_new_tokens=2)
        except KeyboardInterrupt:
            print(f"interrupted after {polls[0]} polls with {ctx.n_past} tokens", flush=True)
            continue
        print("finished: the interrupt was lost", flush=True)
        sys.exit(1)
    ctx.eval(prompt[ctx.n_past:])  # the context goes on
    print("after", ctx.n_past, flush=True)
""")


@pytest.mark.parametrize("mode", ["eval", "generate"])
def test_sigint_stops_prompt_evaluation(mode, tmp_path):
    if not MODEL.is_file():
        pytest.skip(f"fixture model {MODEL} missing")
    script = tmp_path / "child.py"
    script.write_text(PROMPT_CHILD)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ROOT / "bindings" / "python"), mode, str(MODEL), "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(2):
            line = proc.stdout.readline().strip()
            assert line == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
            os.kill(proc.pid, signal.SIGINT)
            line = proc.stdout.readline().strip()
            # stopped in the poll the signal arrived in: the first chunk's second layer
            assert line == "interrupted after 2 polls with 0 tokens", (line, proc.stderr.read())
        last = proc.stdout.readline().strip()
        assert last == "after 768", (last, proc.stderr.read())
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "Exception ignored" not in err, err
