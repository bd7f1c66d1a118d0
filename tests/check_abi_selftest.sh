#!/bin/sh
# The export and ABI checks themselves, on small libraries built here with the
# real suppression files: a new function in a new version node and a field
# appended to a size-prefixed struct pass both checks; a removed function, a
# field inserted in the middle, a function missing from the version script
# a listed function the library lacks, and a new node without the version
# bump that goes with it each fail one of them.
# Usage: check_abi_selftest.sh CC SOURCE_ROOT
set -u
cc="$1"; root="$2"
command -v abidiff >/dev/null || { echo "abidiff not installed (abigail-tools): skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# variant NAME FIELDS FUNCS MAP [MINOR]: header, source and version script of
# one library; the header's version is 0.MINOR.0 (default: the newest node's).
variant() {
  minor="${5:-}"
  if [ -z "$minor" ]; then case "$4" in *DSR1_0.2*) minor=2 ;; *) minor=1 ;; esac; fi
  d="$tmp/$1"; mkdir -p "$d/include"
  {
    echo '#include <stddef.h>'; echo '#include <stdint.h>'
    echo '#define DSR1_API __attribute__((visibility("default")))'
    echo '#define DSR1_VERSION_MAJOR 0'; echo "#define DSR1_VERSION_MINOR $minor"; echo '#define DSR1_VERSION_PATCH 0'
    echo "typedef struct dsr1_context_params { size_t size; $2 } dsr1_context_params;"
    for f in $3; do echo "DSR1_API int $f(const dsr1_context_params *p);"; done
  } > "$d/include/dsr1.h"
  { echo '#include "dsr1.h"'
    for f in $3; do echo "int $f(const dsr1_context_params *p) { return (int)p->size; }"; done
  } > "$d/lib.c"
  printf '%s\n' "$4" > "$d/dsr1.map"
  # the map may name a function the sources lack on purpose: let the linker allow it
  "$cc" -g -O0 -shared -fPIC -fvisibility=hidden -I"$d/include" -o "$d/libdsr1.so" "$d/lib.c" \
    -Wl,--version-script="$d/dsr1.map" -Wl,--undefined-version 2>/dev/null ||
  "$cc" -g -O0 -shared -fPIC -fvisibility=hidden -I"$d/include" -o "$d/libdsr1.so" "$d/lib.c" \
    -Wl,--version-script="$d/dsr1.map" || { echo "cannot build the $1 library"; exit 1; }
}

expect() { # expect pass|fail LABEL COMMAND...
  want="$1"; label="$2"; shift 2
  if "$@" > "$tmp/out" 2>&1; then got=pass; else got=fail; fi
  if [ "$got" = "$want" ]; then echo "ok: $label: ${got}ed as it should"; [ "$got" = pass ] || sed -n '1,2s/^/    /p' "$tmp/out"
  else echo "FAIL: $label: ${got}ed, expected it to $want"; sed 's/^/    /' "$tmp/out"; fail=1; fi
}

nl='
'
v0="DSR1_0 {${nl}  global:${nl}    dsr1_a;${nl}    dsr1_b;${nl}  local:${nl}    *;${nl}};"
variant base 'int32_t n_ctx; int32_t n_batch;' 'dsr1_a dsr1_b' "$v0"
mkdir -p "$tmp/abi"
cp "$root"/lib/abi/*.suppr "$tmp/abi/"
abidw --no-show-locs --headers-dir "$tmp/base/include" "$tmp/base/libdsr1.so" > "$tmp/abi/libdsr1.abi"

variant added 'int32_t n_ctx; int32_t n_batch; void *abort_callback;' 'dsr1_a dsr1_b dsr1_c' \
  "$v0${nl}DSR1_0.2 {${nl}  global:${nl}    dsr1_c;${nl}} DSR1_0;"
variant removed 'int32_t n_ctx; int32_t n_batch;' 'dsr1_a' "DSR1_0 {${nl}  global:${nl}    dsr1_a;${nl}  local:${nl}    *;${nl}};"
variant inserted 'int32_t n_ctx; int32_t inserted; int32_t n_batch;' 'dsr1_a dsr1_b' "$v0"
variant unlisted 'int32_t n_ctx; int32_t n_batch;' 'dsr1_a dsr1_b dsr1_c' "$v0"
variant vanished 'int32_t n_ctx; int32_t n_batch;' 'dsr1_a' "$v0"
variant unbumped 'int32_t n_ctx; int32_t n_batch;' 'dsr1_a dsr1_b dsr1_c' \
  "$v0${nl}DSR1_0.2 {${nl}  global:${nl}    dsr1_c;${nl}} DSR1_0;" 1

for v in base added removed inserted unlisted vanished unbumped; do
  case $v in base|added|removed|inserted) want=pass ;; *) want=fail ;; esac
  expect $want "exports, $v" sh "$root/tests/check_exports.sh" "$tmp/$v/libdsr1.so" "$tmp/$v/dsr1.map" "$tmp/$v/include/dsr1.h"
done
for v in base added removed inserted; do
  case $v in base|added) want=pass ;; *) want=fail ;; esac
  expect $want "abi, $v" sh "$root/tests/check_abi.sh" "$tmp/$v/libdsr1.so" "$tmp/abi" "$tmp/$v/include"
done
exit $fail
