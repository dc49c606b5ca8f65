#!/usr/bin/env bash
# Starts a throw-away real Cinder from Debian's packages (the harness the integration tests use,
# test/support/cinder.ts) and prints the environment that points tether at it:
#
#   bash scripts/start-cinder.sh            # one process, fake:// transport, MariaDB (the default)
#   bash scripts/start-cinder.sh --multi    # cinder-api + cinder-scheduler + cinder-volume over RabbitMQ
#   bash scripts/start-cinder.sh --fake-driver   # FakeLoggingVolumeDriver as is (no attachable file)
#
# Needs what scripts/setup-tests.sh provides (`npm test` runs it first): cinder-api cinder-scheduler
# cinder-volume python3-pymysql, MariaDB on 127.0.0.1:3306 with the account tether_test
# (TETHER_TEST_CINDER_MYSQL_URL to change), RabbitMQ for --multi.
# Ctrl-C stops it and removes its database, state folder and volume files.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --import tsx test/support/cinder.ts "$@"
