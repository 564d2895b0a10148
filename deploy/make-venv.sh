#!/usr/bin/env bash
# Creates the project's virtual environment (default .venv) from Python 3.11, the version
# the local CPU wheel of torch is built for, so `make demo` / `make test` never install
# into the system's Python (Debian's refuses: PEP 668, "externally-managed-environment").
# Where the interpreter lacks the venv module (Debian without python3-venv), the Debian
# package is installed first (needs root). Idempotent: an existing venv is kept.
set -euo pipefail
VENV="${1:-.venv}"
log() { echo "make-venv: $*"; }

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    exit 0
fi
PY="${PYTHON311:-$(command -v python3.11 || true)}"
if [ -z "$PY" ]; then
    echo "make-venv: Python 3.11 not found (the torch wheel needs it); install python3.11 or set PYTHON311" >&2
    exit 1
fi
if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' >/dev/null 2>&1; then
    log "the venv module is missing: apt-get install python3.11-venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3.11-venv >/dev/null
fi
log "creating $VENV with $PY"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
