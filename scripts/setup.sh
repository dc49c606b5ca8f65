#!/usr/bin/env bash
# `npm run setup`: installs what a fresh Debian 12 machine lacks to run tether (`npm start`): Debian
# packages (libvirt + QEMU, qemu-utils, openssl), npm dependencies and Temporal — the CLI and the
# server with its schema tool (built once into ~/.cache/tether). Idempotent: when everything is present it only checks, and prints one line per
# phase. The tests' own dependencies: scripts/setup-tests.sh (run by `npm test`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What `npm start` needs. What only the tests need (Cinder, MariaDB, RabbitMQ, the OpenStack clients,
# docker-compose, …) is installed by scripts/setup-tests.sh, which `npm test` runs first.
# openssl: the cluster mode's mTLS certificates (stack/cluster-certificates.ts).
PACKAGES=(libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils libvirt-clients openssl)

# shellcheck source=lib/apt.sh
TETHER_SETUP_PART=apt
source scripts/lib/apt.sh
ensure_packages "${PACKAGES[@]}"
if (( ${#ENSURED_INSTALLED[@]} == 0 )); then
  say "all ${#PACKAGES[@]} Debian packages present"
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

# --- The tether CLI compiled to JavaScript (dist/cli; bin/tether.js rebuilds it when stale) ----
node scripts/build-cli.js | sed 's/^build:/setup: cli:/'

# --- Temporal: the CLI (dev server) and the server with its schema tool (cluster mode) ----
bash scripts/build-temporal.sh all
