#!/usr/bin/env bash
# Sets everything up and runs the main job (the README's first quick-start command). For now the
# main job is the end-to-end demo of the encryption core; the server replaces it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target postern-demo
exec ./build/release/apps/postern-demo/postern-demo
