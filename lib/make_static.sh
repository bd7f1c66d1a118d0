#!/bin/sh
# The installed static library: every object of IN.a partially linked into
# one relocatable object whose hidden (internal, dsri_*) symbols are then made
# local, so a program linking libdsr1.a sees only the public dsr1_* names and
# cannot collide with, or reach, the library's internals.
#   make_static.sh IN.a OUT.a WORKDIR OBJCOPY AR CC [CC args...]
set -eu
in=$1 out=$2 work=$3 objcopy=$4 ar=$5
shift 5
mkdir -p "$work"
"$@" -r -nostdlib -Wl,--whole-archive "$in" -Wl,--no-whole-archive -o "$work/dsr1.o"
"$objcopy" --localize-hidden "$work/dsr1.o"
rm -f "$out"
"$ar" rcs "$out" "$work/dsr1.o"
