#!/bin/sh
# Fails if the shared library defines any dynamic symbol not prefixed bp_.
# usage: check_exports.sh NM LIBRARY
set -eu
nm_bin=$1
lib=$2
syms=$("$nm_bin" -D --defined-only "$lib" | awk '{print $3}')
[ -n "$syms" ] || { echo "no exported symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^bp_' || true)
if [ -n "$bad" ]; then
    echo "symbols exported without the bp_ prefix:"
    printf '%s\n' "$bad"
    exit 1
fi
n=$(printf '%s\n' "$syms" | wc -l)
echo "ok: $n exported symbols, all bp_"
printf '%s\n' "$syms" | grep -q '^bp_version$' || { echo "bp_version missing"; exit 1; }
