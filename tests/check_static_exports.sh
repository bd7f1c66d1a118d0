#!/bin/sh
# The installed static archive defines no global symbol but the public dsr1_*
# API: the library's internals (dsri_*) are local, so a program linking
# libdsr1.a can neither collide with nor reach them.
set -eu
lib="$1"
NM=${NM:-nm}
bad=$("$NM" --defined-only "$lib" | awk 'NF == 3 && $2 ~ /^[A-Z]$/ {print $3}' | grep -v -E '^dsr1_[a-z0-9_]+$' || true)
if [ -n "$bad" ]; then
  echo "unexpected global symbols in $lib:"; echo "$bad" | head -50; exit 1
fi
n=$("$NM" --defined-only "$lib" | awk 'NF == 3 && $2 ~ /^[A-Z]$/' | grep -c ' dsr1_' || true)
[ "$n" -gt 20 ] || { echo "only $n dsr1_* symbols defined"; exit 1; }
echo "ok: $n global dsr1_* symbols, nothing else"
