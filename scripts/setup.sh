#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for tether: Debian packages (libvirt + QEMU,
# OpenStack clients, docker-compose), npm dependencies and the Temporal CLI (built once into
# ~/.cache/tether). Idempotent: when everything is present it only checks, and prints one
# line per phase.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGES=(
  libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils libvirt-clients
  python3-openstackclient python3-novaclient python3-openstacksdk python3-cinderclient
  docker-compose
  # a real Cinder for test/cinder.test.ts (started by the test itself, never as a service)
  cinder-api cinder-scheduler cinder-volume python3-pymysql
)

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  fi
fi

# --- Debian packages --------------------------------------------------------------------
if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup: apt: not a Debian-based system; install these yourself: ${PACKAGES[*]}" >&2
else
  missing=()
  for pkg in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup: apt: all ${#PACKAGES[@]} Debian packages present"
  else
    if [[ "$(id -u)" -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
      echo "setup: apt: missing ${missing[*]}, and not root and no sudo: install them as root" >&2
      exit 1
    fi
    echo "setup: apt: installing ${#missing[@]} missing package(s): ${missing[*]}"
    start=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "setup: apt: installed in $(( $(date +%s) - start ))s"
  fi
fi

# --- Node and npm dependencies ----------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup: node: Node.js >= 20.19 with npm is required (Debian 12's nodejs is too old; see https://nodejs.org or NodeSource)" >&2
  exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "setup: node: Node.js >= 20.19 is required, found $(node --version)" >&2
  exit 1
fi
# npm writes node_modules/.package-lock.json on every install: older than package-lock.json
# (or absent) means the installed tree is stale.
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "setup: npm: installing dependencies (npm ci)"
  start=$(date +%s)
  npm ci --no-audit --no-fund --loglevel=error
  echo "setup: npm: done in $(( $(date +%s) - start ))s"
else
  echo "setup: npm: node_modules up to date"
fi

# --- Temporal CLI (dev server) ----------------------------------------------------------
bash scripts/build-temporal.sh
