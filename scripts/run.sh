#!/usr/bin/env bash
# Sets everything up and runs the main job (the README's first quick-start command): the Postern
# server on the embedded default (SQLite in ./postern-data), listening on 0.0.0.0:8443 with its
# admin listener (/metrics) on 127.0.0.1:9090. Extra arguments go to postern-server
# (e.g. --listen 127.0.0.1:9443, --data DIR, --config FILE). Ctrl-C or SIGTERM stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target postern-server
echo "postern-server: data in ./postern-data; share the invite link in ./postern-data/invite.txt"
exec ./build/release/apps/postern-server/postern-server --data ./postern-data "$@"
