#!/bin/sh
# Every public function of include/dsr1.h is documented in doc/api.md (named
# there in full), so the reference cannot drift from the header unnoticed.
# Arguments: HEADER API_MD
set -u
header="$1"; doc="$2"
# every DSR1_API declaration names its function on the same line (checked: a
# wrapped declaration would be counted but not found)
n_decl=$(grep -c '^DSR1_API ' "$header")
names=$(grep '^DSR1_API ' "$header" | grep -oE '\bdsr1_[a-z0-9_]+\(' | tr -d '(' | sort -u)
n_names=$(printf '%s\n' "$names" | grep -c .)
fail=0
if [ "$n_decl" -ne "$n_names" ] || [ "$n_decl" -lt 10 ]; then
  echo "FAIL: $n_decl DSR1_API declarations but $n_names function names found on their lines"
  fail=1
fi
for n in $names; do
  grep -qE "(^|[^a-z0-9_])$n([^a-z0-9_]|\$)" "$doc" || { echo "FAIL: $n is declared in $header but not documented in $doc"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: all $n_names public functions are documented in $(basename "$doc")"
exit $fail
