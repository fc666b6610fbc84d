#!/bin/sh
# The benchmark's tools (bench/run.py also does this itself when it can): wrk and nginx from Debian,
# the Node peer's pinned packages (bench/peer/package-lock.json), matplotlib into the project venv.
set -eu
cd "$(dirname "$0")/.."
missing=""
for tool in wrk nginx; do command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"; done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    else
        echo "bench/setup.sh: please install$missing (Debian: sudo apt-get install$missing)" >&2
    fi
fi
if command -v npm >/dev/null 2>&1; then
    (cd bench/peer && npm ci --no-audit --no-fund)
else
    echo "bench/setup.sh: npm is missing: the Node peer will be skipped" >&2
fi
.venv/bin/python -m pip install --quiet -e '.[bench]'
