#!/usr/bin/env bash
# Starts an S3-compatible server (moto, from PyPI, installed into a cached venv) for the tests.
# Source it, then call `s3_start`; it exports the bucket and the standard AWS_* settings the
# tests and `tidewater` read, and `s3_stop` (also run on exit) stops the server by PID.
#
#   source scripts/s3-server.sh; s3_start; ...; s3_stop

S3_VENV="${S3_VENV:-$HOME/.cache/tidewater/moto}"

s3_start() {
  if ! "$S3_VENV/bin/python" -c 'import moto, boto3, flask_cors' 2>/dev/null; then
    echo "installing the S3 test server (moto) into $S3_VENV"
    python3 -m venv "$S3_VENV"
    "$S3_VENV/bin/pip" install -q 'moto[s3]==5.2.5' flask flask-cors
  fi
  local port
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  S3_LOG=$(mktemp -t tidewater-s3.XXXXXX.log)
  "$S3_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$S3_LOG" 2>&1 &
  S3_PID=$!
  local deadline=$((SECONDS + 30))
  until curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "$S3_PID" 2>/dev/null; then
      echo "the S3 test server did not start; its log ($S3_LOG):" >&2
      cat "$S3_LOG" >&2
      return 1
    fi
    sleep 0.2
  done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test TIDEWATER_TEST_S3_BUCKET=tidewater-test
  "$S3_VENV/bin/python" -c "import boto3; boto3.client('s3', endpoint_url='$AWS_ENDPOINT_URL').create_bucket(Bucket='tidewater-test')"
  echo "S3 test server (moto) on $AWS_ENDPOINT_URL, pid $S3_PID, bucket tidewater-test"
}

s3_stop() {
  if [[ -n "${S3_PID:-}" ]]; then
    kill -TERM "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    S3_PID=
    rm -f "$S3_LOG"
  fi
}
