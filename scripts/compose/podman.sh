#!/usr/bin/env bash
# tether's own podman (configuration, storage and networks under ~/.cache/tether/containers, see
# podman-env.sh): `scripts/compose/podman.sh ps -a`, `… images`, `… system service …`.
set -euo pipefail
# shellcheck source=podman-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/podman-env.sh"
tether_podman_configure
exec podman --root "$TETHER_PODMAN_DIR/storage" --runroot "$TETHER_PODMAN_RUN/storage" "$@"
