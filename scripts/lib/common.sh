# Shared by scripts/setup.sh, scripts/setup-tests.sh and every scripts/test-deps/*.sh (sourced, not run).
#   say MESSAGE        one line, prefixed with the part's name ("setup-tests: mariadb: …")
#   die MESSAGE        the same on stderr, then exit 1
#   as_root CMD…       CMD as root (directly, or through sudo when there is one)
#   port_open HOST PORT           whether something accepts TCP connections there (now)
#   wait_port HOST PORT SECONDS   waits until it does; returns 1 after SECONDS
# TETHER_SETUP_PREFIX (default "setup") and TETHER_SETUP_PART (default: the script's name) make the prefix.

TETHER_SETUP_PREFIX="${TETHER_SETUP_PREFIX:-setup}"
TETHER_SETUP_PART="${TETHER_SETUP_PART:-$(basename "${0%.sh}")}"

say() { echo "${TETHER_SETUP_PREFIX}: ${TETHER_SETUP_PART}: $*"; }
die() { echo "${TETHER_SETUP_PREFIX}: ${TETHER_SETUP_PART}: $*" >&2; exit 1; }

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "needs root for: $* (not root, and no sudo): run it as root"
  fi
}

port_open() {
  # bash's /dev/tcp: no netcat needed; `timeout` bounds a connect that hangs.
  timeout 5 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

wait_port() {
  local host="$1" port="$2" seconds="$3" start
  start=$(date +%s)
  until port_open "$host" "$port"; do
    (( $(date +%s) - start >= seconds )) && return 1
    sleep 1
  done
}
