#!/usr/bin/env bash
# Install what pymoby needs on Debian 12, idempotently and quickly when all is there:
# system packages (apt) and a .venv with the pinned Python dependencies.
#   scripts/setup.sh          runtime + test prerequisites
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  runc conmon iptables tini busybox-static   # runtime: OCI runtime, shim, firewall, init, test rootfs
  docker-registry                            # local registry for pull/push tests
  golang-github-docker-docker-dev            # moby's api/swagger.yaml, to check our JSON against
  openssl iproute2 python3-venv python3-dev gcc make git
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages ${missing[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends keeps docker-registry from pulling in services we don't want
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts docker-registry as a service on systemd machines; tests run their own.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

PY=${PYTHON:-python3}
stamp_want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.stamp 2>/dev/null)" != "$stamp_want" ]; then
  echo "setup: creating .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$stamp_want" > .venv/.stamp
fi
