# Sourced by the compose scripts: tether's own podman, isolated from any other on the machine.
#   tpodman ARGS...       podman with tether's configuration, storage and network definitions
# Everything lives under ${TETHER_CACHE_DIR:-$HOME/.cache/tether}/containers (images are reused
# across runs); the runtime state under /run/tether-podman. Nothing in /etc/containers changes.
# Why the configuration (see docs/production.md#trying-the-compose-file-without-a-registry):
#   runtime runc        Debian's default crun fails here (cgroups in hybrid mode; setrlimit)
#   default_ulimits     root cannot raise the open-files limit above the machine's hard limit,
#                       which podman's default (1048576) asks for
TETHER_CACHE_DIR="${TETHER_CACHE_DIR:-$HOME/.cache/tether}"
TETHER_PODMAN_DIR="$TETHER_CACHE_DIR/containers"
TETHER_PODMAN_RUN="${TETHER_PODMAN_RUN:-/run/tether-podman}"
export CONTAINERS_CONF="$TETHER_PODMAN_DIR/containers.conf"

tether_podman_configure() {
  mkdir -p "$TETHER_PODMAN_DIR/networks" "$TETHER_PODMAN_RUN"
  local nofile nproc
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  # podman build runs RUN steps with nproc 32768 unless told otherwise; ask no more than that
  [[ "$nproc" == unlimited || "$nproc" -gt 32768 ]] && nproc=32768
  [[ "$nofile" == unlimited ]] && nofile=1048576
  local conf
  conf=$(cat <<CONF
# Written by scripts/compose/podman-env.sh; do not edit.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"

[network]
network_config_dir = "$TETHER_PODMAN_DIR/networks"
CONF
)
  [[ -f "$CONTAINERS_CONF" && "$(cat "$CONTAINERS_CONF")" == "$conf" ]] || printf '%s\n' "$conf" >"$CONTAINERS_CONF"
}

tpodman() {
  podman --root "$TETHER_PODMAN_DIR/storage" --runroot "$TETHER_PODMAN_RUN/storage" "$@"
}
