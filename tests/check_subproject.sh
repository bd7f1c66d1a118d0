#!/bin/sh
# libdsr1 as a meson subproject of a parent project, as a user vendors it:
# both fallback forms (the modern dependency('dsr1', fallback : 'libdsr1')
# through meson.override_dependency, and the explicit variable form), with
# default_library=static passed down by the parent; the subproject's tests
# and examples stay off; the program links and runs.
#   check_subproject.sh SOURCE_ROOT WORKDIR
set -eu
src=$(cd "$1" && pwd); work=$2
rm -rf "$work"; mkdir -p "$work/subprojects"
work=$(cd "$work" && pwd)
ln -s "$src" "$work/subprojects/libdsr1"
cat > "$work/meson.build" <<'MESON'
project('parent', 'c')
modern = dependency('dsr1', fallback : 'libdsr1', default_options : ['default_library=static'])
explicit = dependency('dsr1', fallback : ['libdsr1', 'dsr1_dep'])
executable('modern', 'p.c', dependencies : modern)
executable('explicit', 'p.c', dependencies : explicit)
MESON
cat > "$work/p.c" <<'C'
#include <stdio.h>
#include "dsr1.h"
int main(void) { printf("libdsr1 %s, %d backends\n", dsr1_version(), dsr1_backend_count()); return 0; }
C
meson setup "$work/b" "$work" --wrap-mode=forcefallback > "$work/setup.log" 2>&1 || { cat "$work/setup.log"; exit 1; }
ninja -C "$work/b" > "$work/ninja.log" 2>&1 || { cat "$work/ninja.log"; exit 1; }
if grep -q "test_\|examples/dsr1" "$work/ninja.log"; then
  echo "FAIL: the subproject built its tests or examples"; exit 1
fi
for p in modern explicit; do
  out=$("$work/b/$p")
  echo "$p: $out"
  case "$out" in "libdsr1 "*) ;; *) echo "FAIL: $p printed '$out'"; exit 1 ;; esac
  # default_library=static from the parent: linked in, no libdsr1.so needed
  if ldd "$work/b/$p" 2>/dev/null | grep -q libdsr1; then echo "FAIL: $p links libdsr1.so"; exit 1; fi
done
echo "ok: both fallback forms, static, no tests or examples built"
