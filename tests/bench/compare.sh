#!/bin/sh
# libdsr1 against llama.cpp on the synthetic models (doc/performance.md,
# "Summary"). Makes the models on first use (~6 GB in DIR), then prints one
# line per engine, model, thread count and phase.
#   usage: tests/bench/compare.sh BUILD_DIR DIR [LCPP_DIR]
# LCPP_DIR: where node-llama-cpp is installed (see llama_cpp_bench.mjs);
# without it only libdsr1 runs.
set -eu
build=$1; dir=$2; lcpp=${3:-}
here=$(dirname "$0")
dsr1="$build/examples/dsr1"
mkdir -p "$dir"
[ -f "$dir/qwen2-big-f16.gguf" ] || /usr/bin/python3 "$here/make_synthetic.py" qwen2-1.5b "$dir/qwen2-big-f16.gguf"
[ -f "$dir/ds2-big-q8_0.gguf" ] || /usr/bin/python3 "$here/make_synthetic.py" ds2 "$dir/ds2-big-q8_0.gguf" q8_0
for t in bf16 q8_0 q4_k_m; do
  [ -f "$dir/qwen2-big-$t.gguf" ] || "$dsr1" quantize "$dir/qwen2-big-f16.gguf" "$dir/qwen2-big-$t.gguf" $t >/dev/null
done
[ -z "$lcpp" ] || cp "$here/llama_cpp_bench.mjs" "$lcpp/"
echo "start: $(uptime)"
for m in qwen2-big-f16 qwen2-big-bf16 qwen2-big-q8_0 qwen2-big-q4_k_m ds2-big-q8_0; do
  for th in 1 2; do
    # best of 3 like llama_cpp_bench.mjs (dsr1 bench reports mean ± stddev; its JSON keeps every run)
    "$dsr1" bench -m "$dir/$m.gguf" -p 128 -n 64 -r 3 -t $th -o json | /usr/bin/python3 -c '
import json, sys
for r in json.load(sys.stdin):
    print("| %s | libdsr1 %s | %d | %s | %.2f | mean %.2f ± %.2f |" % (r["model_filename"], r["backend"],
          r["n_threads"], r["test"], max(r["samples_ts"]), r["avg_ts"], r["stddev_ts"]))'
    [ -z "$lcpp" ] || node "$lcpp/llama_cpp_bench.mjs" "$dir/$m.gguf" 128 64 $th 3
  done
done
echo "end: $(uptime)"
