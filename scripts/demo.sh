#!/usr/bin/env bash
# The README's first command: builds `tidewater` (installing cmake and libcurl's headers first
# when they are missing, see scripts/build-prerequisites.sh) and runs its demo on local disk,
# with no service: `cargo run --bin tidewater -- demo`, arguments passed on.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-prerequisites.sh
build_prerequisites
exec cargo run --locked --bin tidewater -- demo "$@"
