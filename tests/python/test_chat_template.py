"""libdsr1's chat format against DeepSeek-R1's Jinja chat templates, byte for byte.

The official template is the one the Hugging Face checkpoints ship in
tokenizer_config.json (tests/data/hf/*/tokenizer_config.json, copied from the
fixtures: R1's first release, DeepSeek-V3's template). DeepSeek later updated
R1's template with two edits: an assistant message keeps only what follows its
last "</think>" (content.split('</think>')[-1]), and the generation prompt
opens the reasoning ("<｜Assistant｜><think>\\n"). The fixtures do not ship
that version; it is made here from the official one by exactly those two
edits (each must apply once). The distills' templates are the updated one
with R1's older system prompt handling: the last system message alone
(ns.system_prompt = message['content']) instead of all of them joined with
"\\n\\n"; made here by that third edit.

The templates that no HF fixture ships are tests/data/chat_templates/*.jinja
(their README says where each comes from): R1-0528's (also
R1-0528-Qwen3-8B's), whose user turn opens the reply ("<｜User｜>...<｜Assistant｜>"),
and DeepSeek-V3-0324's, the same without dropping thoughts. They fail on an
assistant content None (their '</think>' test comes before the tool-call
branch), so they are rendered with "" there, which is how libdsr1 writes a
NULL content for them; they also write tool calls that have a content, which
R1's templates cannot (libdsr1 refuses those for R1's families).

Each template is put into a vocabulary GGUF as tokenizer.chat_template, the
file is loaded, and dsr1_chat_format must equal the template rendered by
jinja2 (as transformers renders chat templates) for every conversation below,
with and without the generation prompt; for the shipped templates
dsr1_chat_tokenize must also equal that text tokenized with special parsing
(R1's vocabulary with the template added). A file without a template formats
as the updated template. Needs jinja2 in /usr/bin/python3 (Debian
python3-jinja2).
"""
import json
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bindings" / "python"))

import dsr1  # noqa: E402

DATA = ROOT / "tests" / "data"
BOS = "<｜begin▁of▁sentence｜>"

try:
    import jinja2
    import jinja2.sandbox
except ImportError:  # strict_tests turns this skip into a failure
    jinja2 = None

CONVERSATIONS = {
    "empty": [],
    "single turn": [{"role": "user", "content": "What is 17 * 23?"}],
    "system prompt": [{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": "Hi"}],
    "two system prompts, one late": [{"role": "system", "content": "First."},
                                     {"role": "user", "content": "u1"},
                                     {"role": "system", "content": "Second."},
                                     {"role": "assistant", "content": "a1"},
                                     {"role": "user", "content": "u2"}],
    "multi-turn with thoughts": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "What is 2+2?"},
                                 {"role": "assistant", "content": "<think>\nSimple: 2+2 = 4.\n</think>\n\nThe answer is 4."},
                                 {"role": "user", "content": "And 3+3?"},
                                 {"role": "assistant", "content": "<think>\n3+3=6\n</think>\n\n6."},
                                 {"role": "user", "content": "Thanks!"}],
    "several </think>": [{"role": "user", "content": "x"},
                         {"role": "assistant", "content": "<think>a</think>b</think> \t\r\n  c d  "}],
    "assistant last": [{"role": "user", "content": "Hi"},
                       {"role": "assistant", "content": "Hello! How can I help?"}],
    "empty messages": [{"role": "system", "content": ""}, {"role": "user", "content": ""},
                       {"role": "assistant", "content": ""}, {"role": "user", "content": ""}],
    "unicode": [{"role": "user", "content": "深度求索 こんにちは 🙂\n\n  code:\n\tint x = 1;\n"},
                {"role": "assistant", "content": "<think>考虑</think>\n\nÀ bientôt — ½ 🙂"}],
    "tool outputs and the reply to them": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "{\"rain\": false}"},
        {"role": "assistant", "content": "<think>dry</think>\n\n21 degrees, dry."},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "tool", "content": "{\"temp\": 18}"},
        {"role": "assistant", "content": "18 degrees."}],
    "ending with a tool output": [{"role": "user", "content": "q"}, {"role": "tool", "content": "out"}],
    # assistant tool calls (content None), through dsr1_message: the template's
    # "first call" state is kept for the whole conversation, as is "first output"
    "tool calls, outputs and the reply": [
        {"role": "system", "content": "You can call get_weather."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "{\"temp\": 25}"},
        {"role": "assistant", "content": "<think>compare</think>\n\nParis 21, Rome 25."},
        {"role": "user", "content": "And Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "content": "{\"temp\": 3}"},
        {"role": "assistant", "content": "3 degrees."}],
    "one tool call, unanswered": [
        {"role": "user", "content": "Time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "now", "arguments": "{}"}}]}],
    "tool call right after tool outputs": [
        {"role": "user", "content": "q"}, {"role": "tool", "content": "o1"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "[1, \"\u00e9\"]"}}]},
        {"role": "tool", "content": "o2"}],
}

# what only the templates of tests/data/chat_templates can write: tool calls
# with a content (its thoughts dropped too), several call groups ("first
# output" starts again after each), replies right after replies
CONVERSATIONS_WITH_CALL_CONTENT = {
    "tool calls with a content, two groups": [
        {"role": "system", "content": "Tools: get_weather."},
        {"role": "user", "content": "Paris and Rome?"},
        {"role": "assistant", "content": "<think>two calls</think>\n\nChecking.", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}"}}]},
        {"role": "tool", "content": "21"},
        {"role": "tool", "content": "25"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "content": "3"},
        {"role": "assistant", "content": "<think>sum</think>Paris 21, Rome 25, Oslo 3."},
        {"role": "assistant", "content": "Anything else?"}],
    "tool outputs after a user message, then a user": [
        {"role": "user", "content": "a"}, {"role": "tool", "content": "o1"},
        {"role": "user", "content": "b"}, {"role": "tool", "content": "o2"}],
    "a system prompt alone": [{"role": "system", "content": "S"}],
}

UPDATE_ANSWER = (
    "{{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}",
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}")
UPDATE_PROMPT = ("{{'<｜Assistant｜>'}}{% endif %}", "{{'<｜Assistant｜><think>\\n'}}{% endif %}")


def official_templates():
    """The distinct chat templates of the shipped tokenizer_config.json files."""
    found = {}
    for cfg in sorted((DATA / "hf").glob("*/tokenizer_config.json")):
        found.setdefault(json.loads(cfg.read_text(encoding="utf-8"))["chat_template"], cfg.parent.name)
    assert found, "no tokenizer_config.json with a chat template under tests/data/hf"
    return found


def shipped_templates():
    """tests/data/chat_templates/*.jinja: {template text: file name}."""
    found = {p.read_text(encoding="utf-8"): p.name for p in sorted((DATA / "chat_templates").glob("*.jinja"))}
    assert len(found) >= 2, "tests/data/chat_templates lost its templates"
    return found


def none_as_empty(messages):
    """The conversation as the shipped templates can take it: content None is ""."""
    return [dict(m, content="") if m.get("content") is None else m for m in messages]


def updated(template):
    for old, new in (UPDATE_ANSWER, UPDATE_PROMPT):
        assert template.count(old) == 1, f"the edit of R1's update does not apply once: {old}"
        template = template.replace(old, new)
    return template


def distill(template):
    """The distills' template: the updated one whose system prompt is the last system message."""
    start = template.index("{%- if ns.is_first_sp %}")
    end = template.index("{%- endif %}", start) + len("{%- endif %}")
    assert template.count("{%- if ns.is_first_sp %}") == 1
    return updated(template[:start] + "{% set ns.system_prompt = message['content'] %}" + template[end:])


def render(template, messages, add_generation_prompt):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, bos_token=BOS,
                                            add_generation_prompt=add_generation_prompt)


def add_template(gguf: bytes, template: str) -> bytes:
    """A vocabulary file without a template given one: a string KV put first
    (the files hold no tensors, so nothing else refers to offsets)."""
    assert b"tokenizer.chat_template" not in gguf
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", gguf)
    assert magic == b"GGUF" and n_tensors == 0
    key, value = b"tokenizer.chat_template", template.encode("utf-8")
    kv = struct.pack("<Q", len(key)) + key + struct.pack("<IQ", 8, len(value)) + value
    return struct.pack("<4sIQQ", magic, version, n_tensors, n_kv + 1) + kv + gguf[24:]


def with_template(gguf: bytes, template: str) -> bytes:
    """The vocabulary file with its tokenizer.chat_template string replaced
    (the vocabulary files hold no tensors, so what follows simply moves)."""
    key = b"tokenizer.chat_template"
    at = gguf.index(key) + len(key) + 4  # past the value type
    (old_len,) = struct.unpack_from("<Q", gguf, at)
    new = template.encode("utf-8")
    return gguf[:at] + struct.pack("<Q", len(new)) + new + gguf[at + 8 + old_len:]


@pytest.fixture(scope="module")
def need_jinja():
    if jinja2 is None:
        pytest.skip("jinja2 is not importable by /usr/bin/python3 (Debian: python3-jinja2): "
                    "the chat format is NOT compared with the official templates")


def compare(model, template, label, conversations=CONVERSATIONS, jinja_messages=lambda m: m, tokens_model=None):
    bad = []
    for name, messages in conversations.items():
        for gen in (True, False):
            want = render(template, jinja_messages(messages), gen)
            got = model.chat_format(messages, add_generation_prompt=gen)
            if got != want:
                bad.append(f"{label} / {name} / generation prompt {gen}:\n  jinja  {want!r}\n  libdsr1 {got!r}")
            elif (tokens_model is not None and "think>" not in want and  # a content's "<think>" stays text
                  tokens_model.chat_tokenize(messages, add_generation_prompt=gen) !=
                  tokens_model.tokenize(want, parse_special=True)):
                bad.append(f"{label} / {name} / generation prompt {gen}: the tokens are not the text's")
    assert not bad, "\n".join(bad)


def test_official_templates(need_jinja):
    qwen2 = (DATA / "vocab" / "ggml-vocab-qwen2.gguf").read_bytes()
    for template, where in official_templates().items():
        compare(dsr1.Model.from_bytes(with_template(qwen2, template), vocab_only=True), template,
                f"official template ({where})")


def test_updated_templates(need_jinja):
    qwen2 = (DATA / "vocab" / "ggml-vocab-qwen2.gguf").read_bytes()
    for template, where in official_templates().items():
        compare(dsr1.Model.from_bytes(with_template(qwen2, updated(template)), vocab_only=True), updated(template),
                f"updated template (from {where})")


def test_distill_templates(need_jinja):
    qwen2 = (DATA / "vocab" / "ggml-vocab-qwen2.gguf").read_bytes()
    for template, where in official_templates().items():
        compare(dsr1.Model.from_bytes(with_template(qwen2, distill(template)), vocab_only=True), distill(template),
                f"the distills' template (from {where})")


def test_shipped_templates(need_jinja):
    """R1-0528's and V3-0324's templates: every conversation, text and tokens."""
    qwen2 = (DATA / "vocab" / "ggml-vocab-qwen2.gguf").read_bytes()
    r1 = (DATA / "vocab" / "ggml-vocab-deepseek-r1.gguf").read_bytes()
    for template, where in shipped_templates().items():
        compare(dsr1.Model.from_bytes(with_template(qwen2, template), vocab_only=True), template, where,
                {**CONVERSATIONS, **CONVERSATIONS_WITH_CALL_CONTENT}, none_as_empty,
                dsr1.Model.from_bytes(add_template(r1, template), vocab_only=True))


def test_r1_templates_refuse_calls_with_a_content():
    """R1's templates drop the calls of an assistant message that has a
    content; libdsr1 refuses to pretend otherwise."""
    qwen2 = (DATA / "vocab" / "ggml-vocab-qwen2.gguf").read_bytes()
    msgs = CONVERSATIONS_WITH_CALL_CONTENT["tool calls with a content, two groups"]
    for template in official_templates():
        for t in (template, updated(template), distill(template)):
            with pytest.raises(dsr1.UnsupportedError):
                dsr1.Model.from_bytes(with_template(qwen2, t), vocab_only=True).chat_format(msgs)


def test_no_template_formats_as_the_updated_one(need_jinja):
    model = dsr1.Model(DATA / "vocab" / "ggml-vocab-deepseek-r1.gguf", vocab_only=True)
    for template, where in official_templates().items():
        compare(model, updated(template), f"file without a template vs the updated template (from {where})")


def test_the_two_families_differ(need_jinja):
    """The comparisons above could not pass with one format for both."""
    template = next(iter(official_templates()))
    msgs = CONVERSATIONS["multi-turn with thoughts"]
    assert render(template, msgs, True) != render(updated(template), msgs, True)
    msgs = CONVERSATIONS["two system prompts, one late"]
    assert render(updated(template), msgs, True) != render(distill(template), msgs, True)
    r1_0528, v3_0324 = (t for t, _ in sorted(shipped_templates().items(), key=lambda kv: kv[1]))
    for name, gen in (("multi-turn with thoughts", False), ("assistant last", True), ("single turn", True)):
        assert render(r1_0528, CONVERSATIONS[name], gen) != render(updated(template), CONVERSATIONS[name], gen)
    assert render(r1_0528, CONVERSATIONS["multi-turn with thoughts"], True) != render(
        v3_0324, CONVERSATIONS["multi-turn with thoughts"], True)
