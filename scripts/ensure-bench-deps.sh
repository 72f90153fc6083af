#!/usr/bin/env bash
# What `make bench` needs outside the project's Python packages, installed when missing:
# - hey (Debian package `hey`): the compiled HTTP load generator (as root, or through sudo);
# - py-spy (PyPI, into the given Python environment): the flame graph of the server under load.
# Usage: scripts/ensure-bench-deps.sh [PYTHON]   (default: python3)
set -euo pipefail
python="${1:-python3}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v hey >/dev/null 2>&1; then
    echo "installing hey with apt-get" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends hey >/dev/null
fi
bindir="$(dirname "$python")"
if ! command -v py-spy >/dev/null 2>&1 && [ ! -x "$bindir/py-spy" ]; then
    echo "installing py-spy with pip" >&2
    "$python" -m pip install -q py-spy
fi
