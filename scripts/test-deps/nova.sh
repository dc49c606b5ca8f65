#!/usr/bin/env bash
# A real Nova from Debian's packages (nova-api, nova-conductor, nova-scheduler, nova-compute with its
# QEMU driver, placement-api) for the side-by-side tests, the benchmark's Nova column and the kill
# comparison (test/support/nova.ts, docs/nova.md). Installed, never started as a service: each user
# starts its own beside a Cinder (scripts/test-deps/cinder.sh) on the MariaDB and RabbitMQ of
# scripts/test-deps/mariadb.sh and rabbitmq.sh. Its volumes are loop devices: losetup must work.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
# Debconf's questions (database, Keystone, RabbitMQ) default to "no": nothing is configured or started.
ensure_packages nova-api nova-conductor nova-scheduler nova-compute nova-compute-qemu placement-api python3-pymysql
[[ -e /dev/loop-control ]] || as_root modprobe loop 2>/dev/null || true
[[ -e /dev/loop-control ]] || die "no loop devices (/dev/loop-control): the volumes Nova and tether share are loop devices"
say "nova $(dpkg-query -W -f='${Version}' nova-common), placement $(dpkg-query -W -f='${Version}' placement-common) present"
