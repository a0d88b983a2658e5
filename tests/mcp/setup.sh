#!/usr/bin/env bash
# setup.sh — install the MCP TypeScript SDK the tests' client uses into
# tests/mcp/node_modules (git-ignored), exactly as package-lock.json pins
# it. Skipped when what is there was installed from this same lock file.
set -euo pipefail
cd "$(dirname "$0")"

stamp=node_modules/.aegis-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	exit 0
fi
command -v npm >/dev/null || { echo "tests/mcp/setup.sh: npm is missing (scripts/deps.sh test installs it)" >&2; exit 1; }
npm ci --no-audit --no-fund --prefix . >&2
echo "$want" >"$stamp"
