#!/bin/sh
# Every dynamic symbol libdsr1 defines must be a dsr1_* function of version DSR1_0.
set -eu
lib="$1"
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v -E '^dsr1_[a-z0-9_]+@@DSR1_0$' | grep -v -E '^DSR1_0$' || true)
if [ -n "$bad" ]; then
  echo "unexpected exported symbols:"; echo "$bad"; exit 1
fi
n=$(nm -D --defined-only "$lib" | grep -c '@@DSR1_0' || true)
[ "$n" -gt 20 ] || { echo "only $n dsr1_* symbols exported"; exit 1; }
echo "ok: $n versioned dsr1_* symbols, nothing else"
