#!/usr/bin/env bash
# `tidewater bench kafka` against the test broker: starts tansu (scripts/kafka-broker.sh), runs the
# benchmark with the arguments given (defaults: 5M messages of 200 bytes; 30 s at 10,000/s), and
# stops the broker. Builds the release binary first.
#
#   scripts/bench-kafka.sh [--messages N] [--latency-seconds S] ...
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin tidewater
TARGET_DIR=$(cargo metadata --no-deps --format-version 1 --offline | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
source scripts/kafka-broker.sh
trap kafka_stop EXIT
kafka_start
"$TARGET_DIR/release/tidewater" bench kafka --bootstrap-servers "$TIDEWATER_TEST_KAFKA" "$@"
