#!/usr/bin/env bash
# Runs buf from PATH or from the local npm install of scripts/deps.sh.
set -euo pipefail
if command -v buf >/dev/null 2>&1; then exec buf "$@"; fi
exec "$(dirname "$0")/../.ci/node_modules/.bin/buf" "$@"
