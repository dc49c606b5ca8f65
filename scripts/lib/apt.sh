# Debian packages for the set-up scripts (sourced; also sources common.sh).
#   ensure_packages PKG…   installs those of PKG… that are not installed; nothing else. `apt-get update`
#                          runs at most once per set-up run (scripts/setup-tests.sh shares one stamp file,
#                          TETHER_APT_STAMP, between its parts), and only when something is missing.
#                          Sets ENSURED_INSTALLED to what it installed (empty when all was present).
# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ENSURED_INSTALLED=()

package_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

ensure_packages() {
  local pkg missing=() start
  ENSURED_INSTALLED=()
  if ! command -v dpkg-query >/dev/null 2>&1; then
    say "not a Debian-based system: make sure these are installed: $*"
    return 0
  fi
  for pkg in "$@"; do
    package_installed "$pkg" || missing+=("$pkg")
  done
  (( ${#missing[@]} == 0 )) && return 0
  start=$(date +%s)
  # apt waits for the dpkg lock (another set-up may be installing at the same time) instead of failing.
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq)
  if ! { [[ -n "${TETHER_APT_STAMP:-}" && -s "$TETHER_APT_STAMP" ]] || [[ "${_TETHER_APT_UPDATED:-}" == 1 ]]; }; then
    say "apt-get update"
    as_root "${apt[@]}" update || die "apt-get update failed"
    _TETHER_APT_UPDATED=1
    if [[ -n "${TETHER_APT_STAMP:-}" ]]; then echo updated >"$TETHER_APT_STAMP"; fi
  fi
  say "installing ${missing[*]}"
  as_root "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
  ENSURED_INSTALLED=("${missing[@]}")
  say "installed ${#missing[@]} package(s) in $(( $(date +%s) - start )) s"
}
