#!/bin/sh
# Compare the built library with the committed ABI baseline (lib/abi/libdsr1.abi),
# ignoring the private layouts of the opaque handles (lib/abi/private-types.suppr)
# and fields appended to the size-prefixed structs (lib/abi/appended-fields.suppr).
# New functions (in any version node) pass; any other change (a function removed
# or changed, a public struct or enum altered) fails until the baseline is
# refreshed on purpose (see doc/abi.md): a deliberate change then gets reviewed.
# Needs a library with debug information (meson's default debugoptimized build):
# without it only symbols can be compared, and that is said below.
# Usage: check_abi.sh LIBRARY ABIDIR [HEADERS_DIR]  (ABIDIR holds libdsr1.abi, *.suppr)
set -u
lib="$1"; abidir="$2"; headers="${3:-$abidir/../../include}"
command -v abidiff >/dev/null || { echo "abidiff not installed (abigail-tools): skipped"; exit 77; }
[ -f "$abidir/libdsr1.abi" ] || { echo "no baseline at $abidir/libdsr1.abi"; exit 1; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
abidw --no-show-locs --headers-dir "$headers" "$lib" > "$tmp" || { echo "abidw failed"; exit 1; }
if ! grep -q "<function-decl" "$tmp"; then
  echo "note: $lib has no debug information: only exported symbols are compared, not types"
fi
supp=""
for f in "$abidir"/*.suppr; do [ -f "$f" ] && supp="$supp --suppressions $f"; done
# shellcheck disable=SC2086
out=$(abidiff --no-show-locs $supp "$abidir/libdsr1.abi" "$tmp")
rc=$?
echo "$out"
if [ $((rc & 3)) -ne 0 ]; then echo "abidiff failed to run (status $rc)"; exit 1; fi
if [ $((rc & 12)) -eq 0 ]; then echo "ok: ABI identical to the baseline"; exit 0; fi
if [ $((rc & 8)) -eq 0 ] && echo "$out" | grep -q "Functions changes summary: 0 Removed, 0 Changed" &&
   echo "$out" | grep -q "Variables changes summary: 0 Removed, 0 Changed"; then
  echo "ok: only additions (refresh lib/abi/libdsr1.abi when releasing)"
  exit 0
fi
echo "ABI check FAILED: an exported function or public type changed (status $rc)."
echo "If the change is a deliberate compatible one (doc/abi.md), refresh the baseline:"
echo "  abidw --no-show-locs --headers-dir include build/libdsr1.so > lib/abi/libdsr1.abi"
exit 1
