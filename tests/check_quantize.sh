#!/bin/sh
# dsr1 quantize and dsr1 imatrix against the llama-quantize fixtures.
# Arguments: DSR1 DATA_DIR WORK_DIR TINY_MODEL TINY_TEXT
#  - qwen2-f32 -> each type: the file must equal tests/data/models/qwen2-<type>.gguf byte
#    for byte (those fixtures were written by llama-quantize from qwen2-f32.gguf), and its
#    logits (scalar backend) must equal the fixture's bit for bit;
#  - llama-f16 / deepseek2-f16 -> q8_0, q4_k_m: the fixtures were quantized from F32
#    weights that are not shipped, so only the metadata, the per-tensor type mix and the
#    sizes (everything `dsr1 info` prints) must match; the file must load and evaluate;
#  - qwen2-f32 -> iq4_nl / iq4_xs: byte-identical to the llama-quantize fixtures too;
#  - the mixes that need an importance matrix are refused without one; bad --imatrix files too;
#  - bad command lines exit 2, failures 1, with a message, and leave no output behind;
#  - a progress bar on a terminal (script(1) gives one), none in a pipe;
#  - dsr1 imatrix on the tiny model, the qwen2 and the deepseek2 (MoE, MLA) fixtures writes
#    files (GGUF and legacy .dat) that dsr1 quantize --imatrix takes (iq4_xs): the result differs from
#    the one without, carries llama-quantize's quantize.imatrix.* keys and evaluates; an
#    imatrix of another model (entry sizes that do not fit) is refused.
set -u
dsr1="$1"; models="$2/models"; work="$3/quantize-tmp"; tiny="${4:-}"; tiny_text="${5:-}"
rm -rf "$work"; mkdir -p "$work"
fail=0
ok() { echo "ok   $1"; }
bad() { echo "FAIL $1"; fail=1; }
export DSR1_BACKEND=scalar
tokens=295,100,200,12,7,250,33
eval_to() { "$dsr1" eval -m "$1" --tokens "$tokens" --out "$2" >/dev/null 2>&1; }

for t in q8_0 q4_0 q4_1 q5_0 q5_1 q6_k q4_k_m q3_k_m q5_k_m q2_k f16 bf16 iq4_nl iq4_xs; do
  out="$work/qwen2-$t.gguf"
  if ! "$dsr1" quantize "$models/qwen2-f32.gguf" "$out" "$t" --threads 3 >"$work/log" 2>&1; then
    bad "quantize qwen2 $t"; cat "$work/log"; continue
  fi
  if cmp -s "$out" "$models/qwen2-$t.gguf"; then ok "qwen2 $t byte-identical"; else bad "qwen2 $t differs from the fixture"; fi
  if eval_to "$out" "$work/a.f32" && eval_to "$models/qwen2-$t.gguf" "$work/b.f32" && cmp -s "$work/a.f32" "$work/b.f32"; then
    ok "qwen2 $t logits"
  else
    bad "qwen2 $t logits"
  fi
  rm -f "$out"
done

# one thread and many give the same bytes
"$dsr1" quantize "$models/qwen2-f32.gguf" "$work/t1.gguf" q4_k_m --threads 1 >/dev/null 2>&1 &&
  cmp -s "$work/t1.gguf" "$models/qwen2-q4_k_m.gguf" && ok "--threads 1" || bad "--threads 1"

for a in llama deepseek2; do
  for t in q8_0 q4_k_m; do
    out="$work/$a-$t.gguf"
    if ! "$dsr1" quantize "$models/$a-f16.gguf" "$out" "$t" >"$work/log" 2>&1; then
      bad "quantize $a $t"; cat "$work/log"; continue
    fi
    "$dsr1" info -m "$out" | tail -n +2 >"$work/i1"
    "$dsr1" info -m "$models/$a-$t.gguf" | tail -n +2 >"$work/i2"
    if cmp -s "$work/i1" "$work/i2"; then ok "$a $t metadata and type mix"; else bad "$a $t type mix"; diff "$work/i1" "$work/i2" | head -20; fi
    [ "$(wc -c <"$out")" -eq "$(wc -c <"$models/$a-$t.gguf")" ] && ok "$a $t size" || bad "$a $t size"
    eval_to "$out" "$work/a.f32" && ok "$a $t evaluates" || bad "$a $t evaluates"
    rm -f "$out"
  done
done
# f16 -> f16 copies every tensor: the same file
"$dsr1" quantize "$models/deepseek2-f16.gguf" "$work/d.gguf" f16 >/dev/null 2>&1 &&
  cmp -s "$work/d.gguf" "$models/deepseek2-f16.gguf" && ok "deepseek2 f16 -> f16 identical" || bad "deepseek2 f16 -> f16"

expect_fail() { # name, exit status, args...
  name="$1"; want="$2"; shift 2
  "$dsr1" quantize "$@" >"$work/log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then bad "$name: exit 0"; return; fi
  if [ "$rc" -ne "$want" ] || ! grep -q "dsr1 quantize\|usage:" "$work/log"; then bad "$name: no message / wrong status"; cat "$work/log"; return; fi
  ok "$name"
}
expect_fail "unknown type" 2 "$models/qwen2-f32.gguf" "$work/x.gguf" q9_9
# the mixes of types that need an importance matrix are refused without one, as llama.cpp does
for t in iq2_xxs iq2_xs iq1_s iq1_m iq2_s iq2_m; do
  expect_fail "$t without --imatrix" 1 "$models/qwen2-f32.gguf" "$work/x.gguf" $t
  grep -q "needs an importance matrix" "$work/log" || { bad "$t: no imatrix message"; cat "$work/log"; }
done
# the IQ mixes with an all-ones imatrix (tests/data/qwen2-ones.imatrix.dat, legacy format; the
# fixtures were made with one): llama.cpp's per-tensor types, and the file evaluates
for t in iq1_s iq1_m iq2_xxs iq2_xs iq2_s iq3_xxs iq3_s; do
  out="$work/qwen2-$t.gguf"
  if ! "$dsr1" quantize "$models/qwen2-f32.gguf" "$out" $t --imatrix "$2/qwen2-ones.imatrix.dat" >"$work/log" 2>&1; then
    bad "quantize qwen2 $t --imatrix"; cat "$work/log"; continue
  fi
  "$dsr1" info -m "$out" | sed -n '/^tensors/,$p' >"$work/i1"
  "$dsr1" info -m "$models/qwen2-$t.gguf" | sed -n '/^tensors/,$p' >"$work/i2"
  cmp -s "$work/i1" "$work/i2" && ok "qwen2 $t: llama.cpp's type mix" || { bad "qwen2 $t type mix"; diff "$work/i1" "$work/i2" | head; }
  eval_to "$out" "$work/a.f32" && ok "qwen2 $t evaluates" || bad "qwen2 $t evaluates"
  rm -f "$out"
done
# a file that is not an imatrix, one that does not exist
expect_fail "--imatrix not an imatrix" 1 "$models/qwen2-f32.gguf" "$work/x.gguf" iq4_xs --imatrix "$0"
grep -q "imatrix '$0'" "$work/log" || { bad "bad imatrix message"; cat "$work/log"; }
expect_fail "--imatrix GGUF model" 1 "$models/qwen2-f32.gguf" "$work/x.gguf" iq4_xs --imatrix "$models/qwen2-f32.gguf"
grep -q "without imatrix entries" "$work/log" || { bad "model as imatrix message"; cat "$work/log"; }
expect_fail "--imatrix missing" 1 "$models/qwen2-f32.gguf" "$work/x.gguf" iq4_xs --imatrix "$work/none.gguf"
expect_fail "missing input" 1 "$models/does-not-exist.gguf" "$work/x.gguf" q8_0
expect_fail "not a gguf" 1 "$0" "$work/x.gguf" q8_0
expect_fail "too few arguments" 2 "$models/qwen2-f32.gguf" "$work/x.gguf"
expect_fail "bad --threads" 2 "$models/qwen2-f32.gguf" "$work/x.gguf" q8_0 --threads -1
expect_fail "unwritable output" 1 "$models/qwen2-f32.gguf" "$work/no/such/dir/x.gguf" q8_0
[ ! -e "$work/x.gguf" ] && [ ! -e "$work/x.gguf.part" ] && ok "nothing left behind" || bad "output left behind"

# The progress bar: on a terminal once the work takes a moment (here from the
# start), never in a pipe; the bytes written are the same either way.
"$dsr1" quantize "$models/qwen2-f32.gguf" "$work/pipe.gguf" q4_k_m >"$work/log" 2>&1
grep -q "quantizing \[" "$work/log" && bad "a progress bar in a pipe" || ok "no progress bar in a pipe"
if command -v script >/dev/null 2>&1; then
  DSR1_PROGRESS_AFTER_MS=0 script -qec "'$dsr1' quantize '$models/qwen2-f32.gguf' '$work/tty.gguf' q4_k_m" /dev/null \
    >"$work/tty.log" 2>&1
  od -An -c "$work/tty.log" | tr -d ' \n' | grep -q 'quantizing\[#*\]100%' &&
    ok "progress bar on a terminal" || { bad "no progress bar on a terminal"; cat "$work/tty.log"; }
  # the bar is blanked before each tensor's line: every line starts at the line's start
  grep -a '\[ *[0-9]*/ *[0-9]*\] ' "$work/tty.log" | tr '\r' '\n' | grep -q 'quantizing.*\[ *[0-9]*/' &&
    bad "a tensor's line printed after a bar" || ok "bar and tensor lines apart"
  cmp -s "$work/tty.gguf" "$models/qwen2-q4_k_m.gguf" && ok "the same bytes with a bar" || bad "bytes differ with a bar"
else
  bad "script(1) (util-linux) is not installed: the progress bar is not checked"
fi

# dsr1 imatrix -> dsr1 quantize --imatrix
imatrix_ok() { # name, model, text, out, args...
  name="$1"; model="$2"; text="$3"; out="$4"; shift 4
  if "$dsr1" imatrix -m "$model" -f "$text" -o "$out" "$@" >"$work/log" 2>&1 && [ -s "$out" ]; then
    ok "imatrix $name"
  else
    bad "imatrix $name"; cat "$work/log"
  fi
}
if [ -n "$tiny" ] && [ -f "$tiny" ] && [ -f "$tiny_text" ]; then
  imatrix_ok tiny "$tiny" "$tiny_text" "$work/tiny.imatrix.gguf" -c 64 --chunks 8
  imatrix_ok "tiny .dat" "$tiny" "$tiny_text" "$work/tiny.imatrix.dat" -c 64 --chunks 8
  head -c 4 "$work/tiny.imatrix.gguf" | grep -q GGUF && ok "imatrix writes GGUF" || bad "imatrix GGUF magic"
  head -c 4 "$work/tiny.imatrix.dat" | grep -q GGUF && bad "a .dat name wrote GGUF" || ok "imatrix .dat is legacy"
  grep -q "8 chunks of 64" "$work/log" && ok "imatrix --chunks" || { bad "imatrix chunk count"; cat "$work/log"; }
  for t in iq4_xs; do
    "$dsr1" quantize "$tiny" "$work/plain.gguf" $t >/dev/null 2>&1 || bad "tiny $t without imatrix"
    for f in gguf dat; do
      if "$dsr1" quantize "$tiny" "$work/imat.gguf" $t --imatrix "$work/tiny.imatrix.$f" >"$work/log" 2>&1; then
        ok "tiny $t --imatrix ($f)"
      else
        bad "tiny $t --imatrix ($f)"; cat "$work/log"; continue
      fi
      cmp -s "$work/plain.gguf" "$work/imat.gguf" && bad "tiny $t: the imatrix changed nothing" || ok "tiny $t: imatrix changes the weights"
      "$dsr1" info -m "$work/imat.gguf" >"$work/info" 2>&1
      grep -q "quantize.imatrix.file *= $work/tiny.imatrix.$f" "$work/info" &&
        grep -q "quantize.imatrix.entries_count *= [1-9]" "$work/info" &&
        grep -q "quantize.imatrix.chunks_count *= 8" "$work/info" && ok "tiny $t: imatrix keys" ||
        { bad "tiny $t: imatrix keys"; grep quantize "$work/info"; }
      "$dsr1" run -m "$work/imat.gguf" -p "What is 2 plus 3?" -n 8 >/dev/null 2>&1 && ok "tiny $t ($f) runs" || bad "tiny $t ($f) runs"
    done
  done
else
  bad "the tiny model and its text were not given: dsr1 imatrix is not checked"
fi
# the fixtures: dense, and MoE with MLA (per-expert entries); text: this script
imatrix_ok qwen2 "$models/qwen2-f32.gguf" "$0" "$work/qwen2.imatrix.gguf" -c 64 --chunks 8
imatrix_ok deepseek2 "$models/deepseek2-f16.gguf" "$0" "$work/deepseek2.imatrix.gguf" -c 64 --chunks 8
for a in qwen2:qwen2-f32 deepseek2:deepseek2-f16; do
  n="${a%%:*}"; f="${a#*:}"
  if "$dsr1" quantize "$models/$f.gguf" "$work/$n-iq4.gguf" iq4_xs --imatrix "$work/$n.imatrix.gguf" >"$work/log" 2>&1 &&
     eval_to "$work/$n-iq4.gguf" "$work/a.f32"; then
    ok "$n iq4_xs --imatrix evaluates"
  else
    bad "$n iq4_xs --imatrix"; cat "$work/log"
  fi
done
expect_fail "imatrix of another model" 1 "$models/qwen2-f32.gguf" "$work/x.gguf" iq4_xs --imatrix "$work/deepseek2.imatrix.gguf"
grep -q "imatrix entry of .* has .* values" "$work/log" || { bad "size mismatch message"; cat "$work/log"; }
for bad_args in "-f $0" "-m $models/qwen2-f32.gguf" "-m $models/qwen2-f32.gguf -f $0 -ngl 1"; do
  # shellcheck disable=SC2086
  "$dsr1" imatrix $bad_args -o "$work/x.gguf" >"$work/log" 2>&1
  [ $? -eq 2 ] && ok "imatrix $bad_args: usage error" || bad "imatrix $bad_args: not a usage error"
done
"$dsr1" imatrix -m "$models/qwen2-f32.gguf" -f "$0" -c 100000 -o "$work/x.gguf" >"$work/log" 2>&1
[ $? -eq 1 ] && grep -q "fewer than one chunk" "$work/log" && ok "imatrix: text shorter than a chunk" ||
  { bad "imatrix: text shorter than a chunk"; cat "$work/log"; }
[ ! -e "$work/x.gguf" ] && ok "imatrix: nothing written on failure" || bad "imatrix wrote a file on failure"

rm -rf "$work"
exit $fail
