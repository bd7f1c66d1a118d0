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
out=$(printf 'What is 12 + 30?\n/reset\nWhat is 345 + 78?\n' | "$build/examples/dsr1" chat -m "$model" 2>&1)
check "dsr1 chat" "The answer is 423." "$out"
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
exit $fail
