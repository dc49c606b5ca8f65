#!/usr/bin/env bash
# Starts a throw-away real Nova (Debian's nova-api, -conductor, -scheduler, -compute and placement-api)
# beside a real Cinder whose volumes are loop devices — the harness the side-by-side tests, the
# benchmark's Nova column and the kill comparison use (test/support/nova.ts; docs/nova.md) — and
# prints how to reach them:
#
#   bash scripts/start-nova.sh              # Cinder + Nova
#   bash scripts/start-nova.sh --server     # … and a server vm1 booted from a volume
#
# Needs what scripts/test-deps/nova.sh installs, MariaDB on 127.0.0.1:3306 (root, no password) and
# RabbitMQ on 127.0.0.1:5672 (guest). Ctrl-C stops both and removes their databases, vhost, domains
# and files (TETHER_KEEP_NOVA_LOGS=1 keeps Nova's folder).
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --import tsx test/support/nova.ts "$@"
