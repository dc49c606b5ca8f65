#!/usr/bin/env bash
# RabbitMQ on 127.0.0.1:5672 for test/notifications.test.ts (and Cinder's multi-process mode): left
# alone when something answers there (or at TETHER_TEST_AMQP_URL), otherwise installed and started
# by hand (`rabbitmq-server -detached`: no systemd needed).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

url="${TETHER_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672}"
hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [[ "$port" == "$hostport" ]] && port=5672

if port_open "$host" "$port"; then
  say "answering on $host:$port"
  exit 0
fi
[[ -n "${TETHER_TEST_AMQP_URL:-}" ]] && die "nothing answers at $host:$port (TETHER_TEST_AMQP_URL)"
ensure_packages rabbitmq-server
start=$(date +%s)
as_root rabbitmq-server -detached >/dev/null 2>&1 || true
# Erlang and RabbitMQ take 5-20 s to come up; much longer on a loaded machine.
wait_port "$host" "$port" 180 || die "RabbitMQ did not answer on $host:$port within 180 s (logs: /var/log/rabbitmq/)"
say "started rabbitmq-server, answering on $host:$port after $(( $(date +%s) - start )) s"
