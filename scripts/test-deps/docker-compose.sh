#!/usr/bin/env bash
# docker-compose, to validate the production compose file (test/compose.test.ts; no Docker engine needed).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
ensure_packages docker-compose
say "docker-compose $(dpkg-query -W -f='${Version}' docker-compose) present"
