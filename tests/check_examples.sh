#!/bin/sh
# Run the examples and the CLI on the shipped tiny model, as a newcomer would,
# and check what they print. Arguments: BUILD_DIR MODEL
set -u
build="$1"; model="$2"
fail=0
check() { # name, expected substring, output
  if printf '%s' "$3" | grep -qF -- "$2"; then echo "ok   $1"; else echo "FAIL $1: expected '$2' in:"; printf '%s\n' "$3"; fail=1; fi
}
out=$("$build/examples/dsr1" run -m "$model" -p "What is 345 + 78?" --temp 0 2>&1)
check "dsr1 run" "The answer is 423." "$out"
check "dsr1 run shows reasoning" "</think>" "$out"
out=$("$build/examples/dsr1" run -m "$model" -p "What is 345 + 78?" --temp 0 --hide-thinking 2>/dev/null)
check "dsr1 run --hide-thinking" "The answer is 423." "$out"
printf '%s' "$out" | grep -q "think>" && { echo "FAIL --hide-thinking printed reasoning"; fail=1; }
out=$("$build/examples/minimal" "$model" "What is 345 + 78?" 2>&1)
check "minimal" "The answer is 423." "$out"
out=$("$build/examples/reasoning_stream" "$model" "What is 345 + 78?" 2>&1)
check "reasoning_stream" "The answer is 423." "$out"
check "reasoning_stream reasoning" "think| " "$out"
out=$("$build/examples/reasoning_stream" "$model" "What is 345 + 78?" 5 2>&1)
check "reasoning_stream budget" "stopped by end of sequence" "$out"
printf "%s" "$out" | grep -qE "\[[1-6] reasoning tokens" || { echo "FAIL reasoning_stream budget: more than 5+1 reasoning tokens"; fail=1; }
out=$("$build/examples/reasoning_stream" "$model" "Multiply 4321 by 87." -1 10 2>&1)
check "reasoning_stream cancel" "stopped by cancelled" "$out"
out=$("$build/examples/game_loop" "$model" "What is 345 + 78?" 3 2>&1)
check "game_loop" "answer: The answer is 423." "$out"
check "game_loop frames" "at most 3 tokens each" "$out"
# a prompt cap of 4 (the chat prompt is 16 tokens) and a frame budget of 0 ms: every frame gets exactly its
# first step; the abort callback stops the others; the answer does not change
out=$("$build/examples/game_loop" "$model" "What is 345 + 78?" 3 0 4 2>&1)
check "game_loop capped" "answer: The answer is 423." "$out"
check "game_loop prompt over steps" "prompt: 16 tokens, first token after 4 steps; at most 4 tokens evaluated in one step (cap 4)" "$out"
printf '%s' "$out" | grep -qE "frame budget 0 ms: [1-9][0-9]* evaluations stopped at the deadline" &&
  echo "ok   game_loop deadline stops evaluations" || { echo "FAIL game_loop: no evaluation stopped at the deadline"; fail=1; }
out=$(printf 'What is 12 + 30?\n/reset\nWhat is 345 + 78?\n' | "$build/examples/dsr1" chat -m "$model" 2>&1)
check "dsr1 chat" "The answer is 423." "$out"
# --ctx-policy: on a context smaller than one exchange (-c 96; the tiny model reasons about 90 tokens after a
# 15-token question) the chat shifts and answers every question (the first still right) and exits 0; with
# stop the reply is cut off
questions='What is 12 + 30?\nWhat is 345 + 78?\nWhat is 7 + 8?\nWhat is 100 + 23?\n'
out=$(printf "$questions" | "$build/examples/dsr1" chat -m "$model" --temp 0 -c 96 --hide-thinking 2>&1); rc=$?
check "dsr1 chat past -c (shift)" "The answer is 42." "$out"
check "dsr1 chat shift statistics" "context shifts: " "$out"
[ $rc -eq 0 ] && [ "$(printf '%s\n' "$out" | grep -c 'The answer is')" -eq 4 ] && echo "ok   dsr1 chat answers every question past -c" ||
  { echo "FAIL dsr1 chat past -c: exit $rc, not 4 answers:"; printf '%s\n' "$out"; fail=1; }
out=$(printf "$questions" | "$build/examples/dsr1" chat -m "$model" --temp 0 -c 96 --hide-thinking --ctx-policy stop 2>&1); rc=$?
check "dsr1 chat --ctx-policy stop" "[the context is full: /reset to continue]" "$out"
[ $rc -eq 3 ] && echo "ok   dsr1 chat --ctx-policy stop exits 3" || { echo "FAIL dsr1 chat --ctx-policy stop: exit $rc"; fail=1; }
out=$("$build/examples/dsr1" run -m "$model" -p "What is 345 + 78?" --temp 0 -c 64 --ctx-policy shift -n 150 2>&1); rc=$?
check "dsr1 run --ctx-policy shift" "context shifts: " "$out"
[ $rc -eq 0 ] && echo "ok   dsr1 run --ctx-policy shift exits 0" || { echo "FAIL dsr1 run --ctx-policy shift: exit $rc"; fail=1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'root ::= "yes" | "no"\n' > "$tmp/yn.gbnf"
out=$("$build/examples/dsr1" run -m "$model" -p "Is 311 greater than 298?" --temp 0 --hide-thinking --grammar "$tmp/yn.gbnf" 2>/dev/null)
[ "$out" = "yes" ] && echo "ok   dsr1 run --grammar" || { echo "FAIL dsr1 run --grammar: '$out'"; fail=1; }
printf '{"type":"object","properties":{"answer":{"type":"integer"}},"required":["answer"]}' > "$tmp/schema.json"
out=$("$build/examples/dsr1" run -m "$model" -p "What is 345 + 78?" --temp 0.8 -s 3 --hide-thinking --json-schema "$tmp/schema.json" --logprobs 2 2>"$tmp/err")
printf '%s' "$out" | tr -d ' \n\t' | grep -qE '^\{"answer":-?[0-9]+\}$' && echo "ok   dsr1 run --json-schema" ||
  { echo "FAIL dsr1 run --json-schema: '$out'"; fail=1; }
check "dsr1 run --logprobs" "[logprob]" "$(cat "$tmp/err")"
# --save-state / --load-state: a chat saved after one question and resumed for the next answers as the
# uninterrupted chat does (the tiny model answers 345 + 78 differently with the first exchange before it, so
# the history was restored); a run continues from it; damaged and foreign files are refused
out=$(printf 'What is 12 + 30?\nWhat is 345 + 78?\n' | "$build/examples/dsr1" chat -m "$model" --temp 0 2>/dev/null)
printf 'What is 12 + 30?\n' | "$build/examples/dsr1" chat -m "$model" --temp 0 --save-state "$tmp/chat.state" >/dev/null 2>&1
resumed=$(printf 'What is 345 + 78?\n' | "$build/examples/dsr1" chat -m "$model" --temp 0 --load-state "$tmp/chat.state" \
  --save-state "$tmp/chat.state" 2>/dev/null)
alone=$(printf 'What is 345 + 78?\n' | "$build/examples/dsr1" chat -m "$model" --temp 0 2>/dev/null)
case "$out" in *"$resumed") [ "$resumed" != "$alone" ] && echo "ok   dsr1 chat --load-state" ||
  { echo "FAIL dsr1 chat --load-state: the history was not restored"; fail=1; } ;;
  *) echo "FAIL dsr1 chat --load-state: '$resumed' is not how the uninterrupted chat ends: '$out'"; fail=1 ;; esac
"$build/examples/dsr1" run -m "$model" -p "What is 2 + 2?" --temp 0 -n 4 --load-state "$tmp/chat.state" >/dev/null 2>&1 &&
  echo "ok   dsr1 run --load-state (a chat's file)" || { echo "FAIL dsr1 run --load-state"; fail=1; }
head -c 1000 "$tmp/chat.state" > "$tmp/cut.state"
"$build/examples/dsr1" run -m "$model" -p "hi" --load-state "$tmp/cut.state" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "truncated" "$tmp/err" && echo "ok   dsr1 run --load-state refuses a truncated file" ||
  { echo "FAIL dsr1 run --load-state with a truncated file"; cat "$tmp/err"; fail=1; }
"$build/examples/dsr1" run -m "$model" -p "hi" --kv-type f32 --load-state "$tmp/chat.state" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "kv_type" "$tmp/err" && echo "ok   dsr1 run --load-state refuses another --kv-type" ||
  { echo "FAIL dsr1 run --load-state with another --kv-type"; cat "$tmp/err"; fail=1; }

# ---- the CLI as llama-cli users type it ----
dsr1="$build/examples/dsr1"
status() { # name, expected exit status, command...
  name="$1"; want="$2"; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  if [ "$rc" -eq "$want" ]; then echo "ok   $name (exit $rc)"; else echo "FAIL $name: exit $rc, expected $want"; cat "$tmp/err"; fail=1; fi
}
for c in run chat info eval bench tokenize detokenize devices quantize; do
  status "dsr1 $c --help" 0 "$dsr1" $c --help
  check "dsr1 $c --help lists exit codes" "130 interrupted" "$(cat "$tmp/out")"
done
status "dsr1 --help" 0 "$dsr1" --help
status "dsr1 --version" 0 "$dsr1" --version
check "dsr1 --version" "dsr1 " "$(cat "$tmp/out")"
status "no command" 2 "$dsr1"
status "unknown command" 2 "$dsr1" frobnicate
status "unknown option" 2 "$dsr1" run -m "$model" -p hi --frobnicate
check "unknown option message" "unknown option '--frobnicate'" "$(cat "$tmp/err")"
status "-n without a value" 2 "$dsr1" run -m "$model" -p hi -n
check "missing value message" "-n needs a value" "$(cat "$tmp/err")"
status "-n out of range" 2 "$dsr1" run -m "$model" -p hi -n -2
status "-p with -f" 2 "$dsr1" run -m "$model" -p hi -f "$tmp/none"
status "bench -o xml" 2 "$dsr1" bench -m "$model" -o xml
status "missing model" 1 "$dsr1" run -m "$tmp/missing.gguf" -p hi

q="What is 345 + 78?"
printf '%s\n' "$q" >"$tmp/q.txt"
out=$("$dsr1" run -m "$model" -f "$tmp/q.txt" --temp 0 --hide-thinking 2>/dev/null)
[ "$out" = "The answer is 423." ] && echo "ok   dsr1 run -f FILE" || { echo "FAIL dsr1 run -f FILE: '$out'"; fail=1; }
out=$(printf '%s\n' "$q" | "$dsr1" run -m "$model" --temp 0 --hide-thinking 2>/dev/null)
[ "$out" = "The answer is 423." ] && echo "ok   dsr1 run < stdin" || { echo "FAIL dsr1 run < stdin: '$out'"; fail=1; }
out=$(printf '%s' "$q" | "$dsr1" run -m "$model" -p - --temp 0 --hide-thinking 2>/dev/null)
[ "$out" = "The answer is 423." ] && echo "ok   dsr1 run -p -" || { echo "FAIL dsr1 run -p -: '$out'"; fail=1; }

# --verbose-prompt: the system prompt right after BOS, the generation prompt, the ids; -n 0 generates nothing
"$dsr1" run -m "$model" -p "$q" -sys "Be brief." --verbose-prompt -n 0 >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && [ ! -s "$tmp/out" ] && echo "ok   -n 0 generates nothing" || { echo "FAIL -n 0: exit $rc, output '$(cat "$tmp/out")'"; fail=1; }
check "--verbose-prompt text" "prompt: '<｜begin▁of▁sentence｜>Be brief.<｜User｜>$q<｜Assistant｜><think>" "$(cat "$tmp/err")"
check "--verbose-prompt ids" "number of tokens in prompt = " "$(cat "$tmp/err")"
check "--verbose-prompt pieces" "-> '<｜User｜>'" "$(cat "$tmp/err")"
grep -q "^\[prompt:" "$tmp/err" && { echo "FAIL -n 0 printed a stats line"; fail=1; }
n_ids=$(grep -c -- "-> '" "$tmp/err")
n_said=$(sed -n 's/^number of tokens in prompt = //p' "$tmp/err")
[ "$n_ids" = "$n_said" ] && echo "ok   --verbose-prompt: $n_ids ids listed" || { echo "FAIL --verbose-prompt: $n_ids ids, said $n_said"; fail=1; }

status "-n 3" 0 "$dsr1" run -m "$model" -p "$q" --temp 0 -n 3
check "-n 3 stops at the limit" "generation: 3 tokens" "$(cat "$tmp/err")"
status "prompt longer than the context" 3 "$dsr1" run -m "$model" -p "$q" -c 8
check "prompt too long message" "does not fit in the context of 8 tokens" "$(cat "$tmp/err")"
[ "$(wc -l <"$tmp/err")" -eq 1 ] && echo "ok   one line for a prompt that does not fit" || { echo "FAIL: more than one line:"; cat "$tmp/err"; fail=1; }
status "reply cut off by the context" 3 "$dsr1" run -m "$model" -p "$q" -c 40 --temp 0
check "cut off message" "the reply was cut off" "$(cat "$tmp/err")"
status "-c above the trained context warns" 0 "$dsr1" run -m "$model" -p "$q" -c 100000 -n 1
check "-c warning" "above the 512 tokens the model was trained on" "$(cat "$tmp/err")"

out=$(printf '/reset\n%s\n' "$q" | "$dsr1" run -m "$model" -i --temp 0 --hide-thinking -p "What is 1 + 1?" 2>/dev/null)
check "dsr1 run -i: -p is the first message" "The answer is 2." "$out"
check "dsr1 run -i: then stdin" "The answer is 423." "$out"
out=$(printf '%s\n' "$q" | "$dsr1" run -m "$model" -cnv --temp 0 --hide-thinking 2>/dev/null)
check "dsr1 run -cnv" "The answer is 423." "$out"

out=$("$dsr1" run -m "$model" -p "$q" --temp 0 -n 5 2>&1)
printf '%s' "$out" | grep -q "$(printf '\033')" && { echo "FAIL ANSI escapes in a pipe"; fail=1; } || echo "ok   no ANSI escapes in a pipe"
printf '%s' "$out" | grep -q "loading \[" && { echo "FAIL a progress bar in a pipe"; fail=1; } || echo "ok   no progress bar in a pipe"
if command -v script >/dev/null 2>&1; then # script(1) gives the command a terminal
  tty_run() { script -qec "$*" /dev/null 2>&1 | od -An -c | tr -d ' \n'; }
  esc='033\[2m'
  tty_run "'$dsr1' run -m '$model' -p 'hi' --temp 0 -n 5" | grep -q "$esc" && echo "ok   dimmed reasoning on a terminal" ||
    { echo "FAIL no dimmed reasoning on a terminal"; fail=1; }
  NO_COLOR=1 tty_run "'$dsr1' run -m '$model' -p 'hi' --temp 0 -n 5" | grep -q "033" && { echo "FAIL NO_COLOR"; fail=1; } || echo "ok   NO_COLOR"
  TERM=dumb tty_run "'$dsr1' run -m '$model' -p 'hi' --temp 0 -n 5" | grep -q "033" && { echo "FAIL TERM=dumb"; fail=1; } || echo "ok   TERM=dumb"
  DSR1_PROGRESS_AFTER_MS=0 tty_run "'$dsr1' run -m '$model' -p 'hi' --temp 0 -n 1" | grep -q 'loading\[#*\]100%' &&
    echo "ok   load progress bar on a terminal" || { echo "FAIL no load progress bar on a terminal"; fail=1; }
  tty_run "'$dsr1' run -m '$model' -p 'hi' --temp 0 -n 1" | grep -q 'loading' &&
    { echo "FAIL a progress bar for a quick load"; fail=1; } || echo "ok   no progress bar for a quick load"
  script -qec "'$dsr1' run -m '$model'" /dev/null >"$tmp/out" 2>&1
  rc=$?
  [ "$rc" -eq 2 ] && grep -q "a prompt is needed" "$tmp/out" && echo "ok   no prompt and stdin a terminal: exit 2" ||
    { echo "FAIL no prompt and stdin a terminal: exit $rc"; cat "$tmp/out"; fail=1; }
else
  echo "SKIP terminal checks (colours, NO_COLOR, progress bar): script(1) is not installed (util-linux)"
fi

# Offload (-ngl) to a Vulkan device (CI: lavapipe): the answer of the CPU
if "$dsr1" devices 2>/dev/null | grep -q '^0 '; then
  out=$("$dsr1" run -m "$model" -p "What is 345 + 78?" --temp 0 --hide-thinking -ngl -1 --device 0 2>&1)
  check "dsr1 run -ngl -1 (every layer on the device)" "The answer is 423." "$out"
  out=$("$dsr1" run -m "$model" -p "What is 345 + 78?" --temp 0 --hide-thinking -ngl 1 --device 0 2>&1)
  check "dsr1 run -ngl 1 (one layer on the device)" "The answer is 423." "$out"
  out=$("$dsr1" run -m "$model" -p "What is 345 + 78?" --temp 0 --hide-thinking -ngl -1 --cpu-moe 2>&1)
  check "dsr1 run -ngl -1 --cpu-moe (a dense model: no experts to keep)" "The answer is 423." "$out"
  out=$("$dsr1" run -m "$model" -p "What is 345 + 78?" --temp 0 --hide-thinking --backend vulkan 2>&1)
  check "dsr1 run --backend vulkan (every layer on the device)" "The answer is 423." "$out"
  "$dsr1" bench -m "$model" --backend vulkan -p 8 -n 4 -r 1 -o csv >"$tmp/out" 2>&1
  check "dsr1 bench --backend vulkan reports the vulkan backend" "vulkan" "$(cat "$tmp/out")"
elif [ "${DSR1_STRICT_TESTS:-0}" = 1 ]; then
  echo "FAIL offload checks: no Vulkan device (strict_tests)"; fail=1
else
  echo "SKIP offload checks (-ngl): no Vulkan device (dsr1 devices lists none)"
fi
status "-ngl with a device that does not exist" 1 "$dsr1" run -m "$model" -p "hi" -ngl -1 --device no-such-device
check "-ngl with a device that does not exist: message" "no-such-device" "$(cat "$tmp/err")"

# Ctrl-C: the generation stops (a grammar that never ends keeps it going) and the exit status is 130
printf 'root ::= "ab " root\n' >"$tmp/endless.gbnf"
# The signal goes once text is coming (a loaded machine can take seconds to
# get there, and an interrupted load has no stats to print).
"$dsr1" run -m "$model" --raw -p "The" -c 100000 --temp 0 --grammar "$tmp/endless.gbnf" \
  >"$tmp/out" 2>"$tmp/err" &
pid=$!
i=0
while [ ! -s "$tmp/out" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
sleep 0.5
kill -INT $pid
wait $pid
rc=$?
[ "$rc" -eq 130 ] && grep -q "| cancelled\]" "$tmp/err" && echo "ok   Ctrl-C: exit 130 after the stats" ||
  { echo "FAIL Ctrl-C: exit $rc"; cat "$tmp/err"; fail=1; }

# bench: repetitions, mean ± standard deviation, md / json / csv
status "bench md" 0 "$dsr1" bench -m "$model" -p 16 -n 4 -r 3
check "bench md row" "| pp16 |" "$(cat "$tmp/out")"
grep -qE '\| tg4 \| [0-9.]+ ± [0-9.]+ \|' "$tmp/out" && echo "ok   bench md mean ± stddev" || { echo "FAIL bench md:"; cat "$tmp/out"; fail=1; }
status "bench json" 0 "$dsr1" bench -m "$model" -p 16 -n 4 -r 3 -o json
/usr/bin/python3 - "$tmp/out" <<'PY' && echo "ok   bench json" || { echo "FAIL bench json"; cat "$tmp/out"; fail=1; }
import json, statistics, sys
rows = json.load(open(sys.argv[1]))
assert [r["test"] for r in rows] == ["pp16", "tg4"], rows
for r in rows:
    assert r["repetitions"] == 3 and len(r["samples_ts"]) == 3, r
    assert abs(r["avg_ts"] - statistics.mean(r["samples_ts"])) <= 1e-3 * r["avg_ts"], r
    assert abs(r["stddev_ts"] - statistics.stdev(r["samples_ts"])) <= 1e-3 * r["avg_ts"] + 1e-6, r
PY
status "bench csv" 0 "$dsr1" bench -m "$model" -p 0 -n 4 -r 2 -o csv
/usr/bin/python3 - "$tmp/out" <<'PY' && echo "ok   bench csv" || { echo "FAIL bench csv"; cat "$tmp/out"; fail=1; }
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 1 and rows[0]["test"] == "tg4" and rows[0]["repetitions"] == "2", rows
assert float(rows[0]["avg_ts"]) > 0 and float(rows[0]["stddev_ts"]) >= 0, rows
PY

ids=$(printf '%s' "$q" | "$dsr1" tokenize -m "$model")
back=$(printf '%s' "$ids" | "$dsr1" detokenize -m "$model")
[ "$back" = "$q" ] && echo "ok   tokenize | detokenize" || { echo "FAIL tokenize | detokenize: '$back'"; fail=1; }
exit $fail
