#!/usr/bin/env bash
# Installs every Debian package Postern needs to build, test and benchmark.
# Idempotent: packages already present are skipped by apt-get; the package index
# is refreshed only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git python3
  clang-14 libclang-rt-14-dev llvm-14
  libsodium-dev libssl-dev
  libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev libbenchmark-dev
  libsignal-protocol-c-dev nlohmann-json3-dev
  libsqlite3-dev libboost1.81-dev libtomlplusplus-dev libcli11-dev libspdlog-dev
  libstb-dev libqrencode-dev libavformat-dev libavcodec-dev libswscale-dev libavutil-dev ffmpeg
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
