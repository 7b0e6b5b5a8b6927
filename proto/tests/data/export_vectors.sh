#!/bin/sh
# Exports the 40 independent test vectors of shared/oracle/rserpool_wire.py (checked out beside
# the repository) into this directory and into the fuzzer's seed corpus:
#   rserpool_wire_vectors.tsv          name<TAB>ppid<TAB>hex, one vector a line (read by the tests)
#   ../../fuzz/seeds/NN-name.bin       raw message bytes (seeds for `cargo fuzz run decode`)
# Run it again when rserpool_wire.py changes; tests/wire_vectors.rs fails while the TSV is stale.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
oracle="$here/../../../../shared/oracle/rserpool_wire.py"
python3 "$oracle" > "$here/rserpool_wire_vectors.tsv"
seeds="$here/../../fuzz/seeds"
mkdir -p "$seeds"
rm -f "$seeds"/*.bin
n=0
while IFS="$(printf '\t')" read -r name ppid hex; do
    n=$((n + 1))
    file=$(printf '%02d-%s' "$n" "$name" | tr -c 'A-Za-z0-9_.-' '_')
    printf '%s' "$hex" | xxd -r -p > "$seeds/$file.bin"
done < "$here/rserpool_wire_vectors.tsv"
echo "exported $n vectors" >&2
