#!/bin/sh
# The library exports exactly what lib/dsr1.map lists, each symbol with the
# version node the map puts it in (DSR1_0, DSR1_0.2, ...: one node per minor
# release), and the map lists exactly the functions include/dsr1.h declares
# DSR1_API. So a function added to the header but not to the map (or to the
# wrong node), a symbol that leaked, or a listed symbol that disappeared from
# the library all fail. Removals from the map and header together are the
# ABI baseline's to catch (check_abi.sh).
# The version (the header's DSR1_VERSION_* and, when given, meson's project
# version) names the newest node: adding DSR1_0.y is the release 0.y.0.
# Usage: check_exports.sh LIBRARY [MAP [HEADER [VERSION]]]
set -eu
lib="$1"
here=$(dirname "$0")
map="${2:-$here/../lib/dsr1.map}"
header="${3:-$here/../include/dsr1.h}"
project_version="${4:-}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# "symbol@@NODE" for every symbol the map lists (comments stripped).
sed -e 's:/\*.*\*/::g' "$map" | awk '
  /^[ \t]*[A-Za-z0-9_.]+[ \t]*\{/ { node = $1; sub(/\{.*/, "", node); next }
  /^[ \t]*\}/ { node = ""; next }
  /global:|local:/ { next }
  node != "" && /^[ \t]*[A-Za-z0-9_]+;/ { s = $1; sub(/;.*/, "", s); print s "@@" node }
' | sort > "$tmp/map"
bad_node=$(sed 's/.*@@//' "$tmp/map" | sort -u | grep -v -E '^DSR1_0(\.[0-9]+)?$' || true)
[ -z "$bad_node" ] || { echo "version nodes must be DSR1_0 or DSR1_0.<minor>: $bad_node"; exit 1; }
[ -s "$tmp/map" ] || { echo "no symbols found in $map"; exit 1; }

# The newest node and the version: DSR1_0 is 0.1, DSR1_0.y is 0.y.
newest=$(sed 's/.*@@//' "$tmp/map" | sort -u | sed -e 's/^DSR1_0$/1/' -e 's/^DSR1_0\.//' | sort -n | tail -1)
macro() { sed -n "s/^#define DSR1_VERSION_$1 \([0-9][0-9]*\)$/\1/p" "$header"; }
header_version="$(macro MAJOR).$(macro MINOR).$(macro PATCH)"
if [ "$(macro MAJOR)" != 0 ] || [ "$(macro MINOR)" != "$newest" ]; then
  echo "$header says version $header_version but the newest node of $map is for 0.$newest: adding a node"
  echo "is a minor release (doc/abi.md): set DSR1_VERSION_* and meson.build's version to 0.$newest.0"
  exit 1
fi
if [ -n "$project_version" ] && [ "$project_version" != "$header_version" ]; then
  echo "meson.build's version $project_version differs from $header's $header_version"; exit 1
fi

nm -D --defined-only "$lib" | awk '$2 ~ /[TDBRVW]/ {print $3}' | sort > "$tmp/lib"
grep -o 'DSR1_API [^(]*(' "$header" | sed -E 's/.*[ *](dsr1_[a-z0-9_]+)\($/\1/' | grep '^dsr1_' | sort -u > "$tmp/hdr"
sed 's/@@.*//' "$tmp/map" | sort -u > "$tmp/map_names"

fail=0
extra=$(comm -13 "$tmp/map" "$tmp/lib")
missing=$(comm -23 "$tmp/map" "$tmp/lib")
if [ -n "$extra" ]; then echo "exported but not listed in $map (or in another node):"; echo "$extra"; fail=1; fi
if [ -n "$missing" ]; then echo "listed in $map but not exported so:"; echo "$missing"; fail=1; fi
not_listed=$(comm -23 "$tmp/hdr" "$tmp/map_names")
not_declared=$(comm -13 "$tmp/hdr" "$tmp/map_names")
if [ -n "$not_listed" ]; then
  echo "declared DSR1_API in $header but not listed in $map (add them to the node of the next minor release):"
  echo "$not_listed"; fail=1
fi
if [ -n "$not_declared" ]; then echo "listed in $map but not declared in $header:"; echo "$not_declared"; fail=1; fi
[ "$fail" = 0 ] || exit 1
echo "ok: $(wc -l < "$tmp/lib") symbols, exactly those of $(basename "$map") in their nodes ($(sed 's/.*@@//' "$tmp/map" | sort -u | tr '\n' ' ')); version $header_version"
