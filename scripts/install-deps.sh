#!/usr/bin/env bash
# Installs the Debian packages rollcalld needs, only those that are missing.
#   scripts/install-deps.sh build   — what `cargo build` needs
#   scripts/install-deps.sh test    — plus the independent tools the tests use
#   scripts/install-deps.sh run     — plus what the demo uses (mosquitto)
set -euo pipefail

BUILD=(pkg-config libasound2-dev libopus-dev libudev-dev)
RUN=(mosquitto mosquitto-clients)
TEST=(multimon-ng sox opus-tools mosquitto mosquitto-clients socat libhamlib-utils espeak-ng tshark python3-venv systemd dpkg-dev faketime)

want=("${BUILD[@]}")
case "${1:-build}" in
  build) ;;
  run) want+=("${RUN[@]}") ;;
  test) want+=("${TEST[@]}") ;;
  *) echo "usage: $0 build|run|test" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "installing missing packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi
