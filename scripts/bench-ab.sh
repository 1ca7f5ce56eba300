#!/usr/bin/env bash
# Runs two release builds of `tidewater` in turn on the same benches (windowed, backfill, ingest),
# the order swapped every round, and keeps each run's output: the before/after comparison a change
# that must not slow anything down quotes in docs/performance.md.
#
# Usage: scripts/bench-ab.sh BIN_A BIN_B [ROUNDS] [OUT_DIR]
#   BIN_A, BIN_B  two tidewater binaries (copy each out of target/release after its build: both
#                 builds write the same path)
#   ROUNDS        default 3;  OUT_DIR: default ./bench-ab (one file per bench, binary and round)
# The ingest bench's Python baselines use the venv scripts/test.sh installs.
set -euo pipefail
A=${1:?BIN_A}; B=${2:?BIN_B}; ROUNDS=${3:-3}; OUT=${4:-bench-ab}
PY="$HOME/.cache/tidewater/venv/bin/python"
mkdir -p "$OUT"; WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="a b"; else order="b a"; fi
  for which in $order; do
    bin=$A; [[ $which == b ]] && bin=$B
    "$bin" -q bench windowed --dir "$WORK" >"$OUT/windowed-$which-$round.txt" 2>&1
    "$bin" -q bench backfill --dir "$WORK" >"$OUT/backfill-$which-$round.txt" 2>&1
    "$bin" -q bench ingest --runs 1 --tiny-batches 200 --python "$PY" --dir "$WORK" >"$OUT/ingest-$which-$round.txt" 2>&1
  done
  echo "round $round of $ROUNDS done"
done
grep -H "rows per CPU-second against Polars\|the rows per CPU-second of the Python" "$OUT"/*.txt
