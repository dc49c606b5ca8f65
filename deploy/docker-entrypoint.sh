#!/bin/sh
# Entry point of tether's image (one image; the command chooses the process).
# A compute agent is named after the hypervisor it runs on: when TETHER_COMPUTE_HOST is empty and
# the host's /etc/hostname is mounted at /etc/host-hostname (docker-compose.yml does this for the
# compute agent, and for the API, whose /healthz checks that agent), the host's name is used. Then the command replaces this shell, so the process
# receives SIGTERM itself and drains (workers/process.ts).
set -eu
if [ -z "${TETHER_COMPUTE_HOST:-}" ] && [ -r /etc/host-hostname ]; then
  TETHER_COMPUTE_HOST=$(head -n 1 /etc/host-hostname | tr -d '[:space:]')
  if [ -n "$TETHER_COMPUTE_HOST" ]; then export TETHER_COMPUTE_HOST; else unset TETHER_COMPUTE_HOST; fi
fi
exec "$@"
