#!/usr/bin/env bash
# A real Cinder from Debian's packages for test/cinder.test.ts. Installed, never started as a service:
# each test file starts its own (test/support/cinder.ts) on a MariaDB (scripts/test-deps/mariadb.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
ensure_packages cinder-api cinder-scheduler cinder-volume python3-pymysql
say "cinder $(dpkg-query -W -f='${Version}' cinder-common) present"
