#!/usr/bin/env bash
# Installs what the build needs beside Rust and a C compiler, from Debian's packages, when it is
# missing: cmake and libcurl's headers (librdkafka, the Kafka client, is built from its vendored
# source with cmake, and its sources include curl/curl.h whatever its options). Source it, then
# call `build_prerequisites`.

build_prerequisites() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  [[ -e /usr/include/curl/curl.h || -e /usr/include/x86_64-linux-gnu/curl/curl.h ]] || missing+=(libcurl4-openssl-dev)
  if ((${#missing[@]})); then
    echo "== ${missing[*]} (librdkafka, the Kafka client, builds with them), from Debian's packages"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
