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
  # Test and benchmark peers of the transport (issue 5): stock nginx is the reference the
  # camouflage front is compared with, HAProxy the relay benchmark's peer, microsocks the SOCKS5
  # proxy of the path tests. Tests start and stop their own instances.
  nginx haproxy microsocks
  # The censor lab (issue 6, docs/censorship.md): namespaces and rules (iproute2, iptables), the
  # systems compared with Postern (Tor's obfs4 transport, shadowsocks-libev, trojan) and the heat
  # map (gnuplot). The lab starts and stops its own instances.
  iproute2 iptables tor obfs4proxy shadowsocks-libev trojan gnuplot-nox curl
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
  # Installing nginx, haproxy, tor, shadowsocks-libev or trojan must not start system services on
  # this machine (the tests run their own instances on loopback or in their own namespaces): a
  # policy-rc.d that forbids starts, for this install only.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
