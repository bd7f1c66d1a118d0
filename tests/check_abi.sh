#!/bin/sh
# Compare the built library with the committed ABI baseline (lib/abi/libdsr1.abi).
# abidiff's exit status is a bit set: 4 = the ABI changed, 8 = incompatibly.
# Compatible additions pass (refresh the baseline on purpose, see doc/abi.md).
set -u
lib="$1"; baseline="$2"; headers="$3"
command -v abidiff >/dev/null || { echo "abidiff not installed (abigail-tools): skipped"; exit 77; }
[ -f "$baseline" ] || { echo "no baseline at $baseline"; exit 1; }
abidiff --no-show-locs --headers-dir2 "$headers" "$baseline" "$lib"
rc=$?
if [ $((rc & 8)) -ne 0 ] || [ $((rc & 1)) -ne 0 ] || [ $((rc & 2)) -ne 0 ]; then
  echo "ABI check failed (abidiff status $rc): an exported function or public struct changed incompatibly"
  exit 1
fi
[ $((rc & 4)) -ne 0 ] && echo "compatible ABI additions (refresh lib/abi/libdsr1.abi when releasing)"
echo "ok: no incompatible ABI change"
exit 0
