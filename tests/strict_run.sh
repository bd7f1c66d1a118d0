#!/bin/sh
# -Dstrict_tests=true: run a test and fail where it would have skipped itself
# (exit 77), so CI cannot go green with part of the suite unrun.
"$@"
rc=$?
if [ "$rc" -eq 77 ]; then
  echo "strict_tests: this test skipped itself (exit 77); failing instead" >&2
  exit 1
fi
exit "$rc"
