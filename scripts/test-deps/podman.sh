#!/usr/bin/env bash
# podman and what it needs here, to bring docker-compose.yml up for real (test/compose-up.test.ts):
# tether's own podman (scripts/compose/podman-env.sh) serves the Docker API that docker-compose
# drives; runc (Debian's default crun fails here), netavark + aardvark-dns (the compose network and
# its service names), iptables (netavark's port forwarding), catatonit (`init: true`), debootstrap
# (the base image of scripts/compose/images.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
ensure_packages podman runc netavark aardvark-dns iptables catatonit debootstrap
say "podman $(dpkg-query -W -f='${Version}' podman) present"
