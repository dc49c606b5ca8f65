#!/usr/bin/env bash
# Builds, without any registry, the images docker-compose.yml runs, into tether's own podman storage
# (scripts/compose/podman-env.sh), and writes the variables that make the unchanged compose file
# use them to ${TETHER_CACHE_DIR:-$HOME/.cache/tether}/containers/images.env:
#   localhost/tether-base:bookworm        debootstrap --variant=minbase bookworm (the tarball is kept
#                                         in ~/.cache/tether/images and re-imported when needed)
#   localhost/tether-node:20              that + this machine's Node 20 binary     (node:20-bookworm-slim)
#   localhost/tether:dev                  tether's own Dockerfile on it, node_modules installed here
#   localhost/tether-postgresql:15        Debian's PostgreSQL                      (postgres:16)
#   localhost/tether-temporal-server:…    the server scripts/build-temporal.sh builds (temporalio/server;
#                                         the compose file gives it deploy/temporal/config)
#   localhost/tether-temporal-admin-tools:…  its schema tool and the CLI          (temporalio/admin-tools)
#   localhost/tether-temporal-ui:…        the UI server, built from the Go module proxy (temporalio/ui)
# An image is built again only when a file of its build context or its parent image changed (then
# podman's layer cache keeps that to the layers whose files changed). Usage: scripts/compose/images.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# shellcheck source=podman-env.sh
source scripts/compose/podman-env.sh
tether_podman_configure

IMAGES_DIR="$TETHER_CACHE_DIR/images"
LOG_DIR="$IMAGES_DIR/logs"
mkdir -p "$IMAGES_DIR" "$LOG_DIR"

BASE_IMAGE=localhost/tether-base:bookworm
NODE_IMAGE=localhost/tether-node:20
TETHER_IMAGE=localhost/tether:dev
POSTGRESQL_IMAGE=localhost/tether-postgresql:15
TEMPORAL_SERVER_VERSION="${TEMPORAL_SERVER_VERSION:-1.29.1}"
TEMPORAL_CLI_VERSION="${TEMPORAL_CLI_VERSION:-1.5.1}"
TEMPORAL_UI_VERSION="${TEMPORAL_UI_VERSION:-2.42.1}"
TEMPORAL_BASE_IMAGE=localhost/tether-temporal-base:bookworm
TEMPORAL_SERVER_IMAGE=localhost/tether-temporal-server:$TEMPORAL_SERVER_VERSION
TEMPORAL_ADMINTOOLS_IMAGE=localhost/tether-temporal-admin-tools:$TEMPORAL_SERVER_VERSION
TEMPORAL_UI_IMAGE=localhost/tether-temporal-ui:$TEMPORAL_UI_VERSION

say() { echo "compose-images: $*"; }
elapsed() { echo "$(($(date +%s) - $1))s"; }

# build TAG CONTEXT_DIR [podman build options…]: builds quietly into a log, says how long it took.
build() {
  local tag=$1 context=$2 start log
  shift 2
  start=$(date +%s)
  log="$LOG_DIR/$(echo "$tag" | tr '/:' '__').log"
  # --network host: the RUN steps (apt-get) use the host's network, so no bridge network is made
  # (netavark would add firewall chains and turn on IPv4 forwarding for it).
  if ! tpodman build --layers --network host -t "$tag" "$@" "$context" >"$log" 2>&1; then
    say "building $tag FAILED; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  say "$tag built in $(elapsed "$start") ($(tpodman image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%d MB", $1 / 1e6 }'))"
}

# fresh TAG PARENT CONTEXT [find predicates…]: whether TAG exists, was built by this script on the
# image PARENT as it is now, and no file of CONTEXT (but those the predicates prune) changed since
# (by ctime: a hard link or a copy that keeps an old mtime counts as a change).
# Even with every layer cached, podman hashes the whole context on each build (hundreds of MB of
# binaries or node_modules): a fresh image is not built again.
fresh() {
  local tag=$1 parent=$2 context=$3 stamp
  shift 3
  stamp="$IMAGES_DIR/.built-$(echo "$tag" | tr '/:' '__')"
  tpodman image exists "$tag" && [[ -f "$stamp" ]] \
    && [[ "$(cat "$stamp")" == "$(image_id "$parent") $(image_id "$tag")" ]] \
    && [[ -z "$(find "$context" "$@" -cnewer "$stamp" -print -quit)" ]]
}
# built TAG PARENT: records what fresh() compares.
built() { image_id "$2" >/dev/null && echo "$(image_id "$2") $(image_id "$1")" >"$IMAGES_DIR/.built-$(echo "$1" | tr '/:' '__')"; }
image_id() { tpodman image inspect --format '{{.Id}}' "$1"; }

# context_file SRC DEST: puts a file into a build context (a hard link where it can, so the large
# binaries are not stored twice), only when it changed.
context_file() { cmp -s "$1" "$2" || ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"; }

# The Debian mirror this machine uses (the first deb.debian.org-like one in its apt sources).
debian_mirror() {
  if [[ -n "${TETHER_DEBIAN_MIRROR:-}" ]]; then
    echo "$TETHER_DEBIAN_MIRROR"
    return
  fi
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v '^\s*#' | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n 1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# --- Base: Debian 12 minbase, from the machine's mirror -------------------------------------
BASE_TAR="$IMAGES_DIR/bookworm-minbase.tar"
if ! tpodman image exists "$BASE_IMAGE"; then
  if [[ ! -s "$BASE_TAR" ]]; then
    command -v debootstrap >/dev/null || { say "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
    start=$(date +%s)
    mirror=$(debian_mirror)
    say "making the base image with debootstrap from $mirror (~30 s on a quiet machine)"
    root=$(mktemp -d "$IMAGES_DIR/.debootstrap.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$LOG_DIR/debootstrap.log" 2>&1; then
      say "debootstrap FAILED; last lines of $LOG_DIR/debootstrap.log:" >&2
      tail -n 20 "$LOG_DIR/debootstrap.log" >&2
      exit 1
    fi
    # As Debian's slim container images: no apt caches or package lists in any layer (every image
    # that installs a package runs apt-get update first), no documentation, manual pages or locales.
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    find "$root/usr/share/doc" -mindepth 2 -not -name copyright -not -type d -delete
    tar -C "$root" -cf "$BASE_TAR.part" . && mv "$BASE_TAR.part" "$BASE_TAR"
    rm -rf "$root"
    trap - EXIT
    say "debootstrap done in $(elapsed "$start") -> $BASE_TAR"
  fi
  tpodman import --quiet "$BASE_TAR" "$BASE_IMAGE" >/dev/null
  say "$BASE_IMAGE imported from $BASE_TAR"
fi

# --- Node 20: this machine's binary --------------------------------------------------------
node_bin=$(command -v node)
ctx="$IMAGES_DIR/node-context"
mkdir -p "$ctx"
context_file "$node_bin" "$ctx/node"
context_file scripts/compose/images/node/Dockerfile "$ctx/Dockerfile"
fresh "$NODE_IMAGE" "$BASE_IMAGE" "$ctx" || { build "$NODE_IMAGE" "$ctx" --build-arg BASE_IMAGE="$BASE_IMAGE" && built "$NODE_IMAGE" "$BASE_IMAGE"; }

# --- tether: its own Dockerfile, with node_modules installed on this machine -----------------
# (npm inside a container may not reach the registry: see docs/production.md)
deps="$IMAGES_DIR/dependencies"
mkdir -p "$deps/app"
# package-lock.json holds the dependencies of package.json too: unchanged, nothing to install.
if ! cmp -s package-lock.json "$deps/app/package-lock.json" || [[ ! -f "$deps/app/node_modules/.package-lock.json" ]]; then
  start=$(date +%s)
  cp package.json package-lock.json "$deps/app/"
  (cd "$deps/app" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >"$LOG_DIR/npm-ci.log" 2>&1) || {
    say "npm ci --omit=dev FAILED; see $LOG_DIR/npm-ci.log" >&2
    exit 1
  }
  say "production node_modules installed in $(elapsed "$start")"
fi
# The build context is the checkout (less .dockerignore) and node_modules; a change elsewhere
# (tests, docs) needs no new image.
if fresh "$TETHER_IMAGE" "$NODE_IMAGE" . \( -path ./node_modules -o -path ./.git -o -path ./.data -o -path ./.cache \
  -o -path ./test -o -path ./docs -o -path ./bench-results -o -name "docker-compose*.yml" \) -prune -o -type f \
  && [[ ! "$deps/app/node_modules/.package-lock.json" -nt "$IMAGES_DIR/.built-localhost_tether_dev" ]]; then
  say "$TETHER_IMAGE is up to date"
else
  build "$TETHER_IMAGE" "$ROOT" --build-arg NODE_IMAGE="$NODE_IMAGE" --build-context dependencies="$deps"
  built "$TETHER_IMAGE" "$NODE_IMAGE"
  # The image this one replaced (tether's own storage holds nothing else untagged).
  tpodman image prune -f >/dev/null
fi

# --- PostgreSQL ------------------------------------------------------------------------------
tpodman image exists "$POSTGRESQL_IMAGE" \
  || build "$POSTGRESQL_IMAGE" scripts/compose/images/postgresql --build-arg BASE_IMAGE="$BASE_IMAGE"

# --- Temporal: server, schema tool and CLI from scripts/build-temporal.sh; the UI server -------
bash scripts/build-temporal.sh all | grep -v '^temporal: cached at' || true
server_dir="$TETHER_CACHE_DIR/bin/temporal-server-$TEMPORAL_SERVER_VERSION"
cli="$TETHER_CACHE_DIR/bin/temporal-$TEMPORAL_CLI_VERSION/temporal"
for f in "$server_dir/temporal-server" "$server_dir/temporal-sql-tool" "$cli"; do
  [[ -x "$f" ]] || { say "$f is missing after scripts/build-temporal.sh" >&2; exit 1; }
done

# The UI server: its module has no replace directive at this version (the one the CLI embeds), so
# `go install` builds it like the CLI; the binary is cached next to the others.
ui_dir="$TETHER_CACHE_DIR/bin/temporal-ui-$TEMPORAL_UI_VERSION"
if [[ ! -x "$ui_dir/ui-server" ]]; then
  command -v go >/dev/null || { say "go is needed to build the Temporal UI server (see scripts/build-temporal.sh)" >&2; exit 1; }
  start=$(date +%s)
  say "building the Temporal UI server v$TEMPORAL_UI_VERSION (~2 min the first time)"
  mkdir -p "$ui_dir"
  tmp=$(mktemp -d "$ui_dir/.build.XXXXXX")
  if ! GOBIN="$tmp" go install "github.com/temporalio/ui-server/v2/cmd/server@v$TEMPORAL_UI_VERSION" >"$LOG_DIR/ui-server-build.log" 2>&1; then
    rm -rf "$tmp"
    say "building the UI server FAILED; last lines of $LOG_DIR/ui-server-build.log:" >&2
    tail -n 20 "$LOG_DIR/ui-server-build.log" >&2
    exit 1
  fi
  mv "$tmp/server" "$ui_dir/ui-server"
  rm -rf "$tmp"
  say "UI server built in $(elapsed "$start")"
fi
ui_config="$(go env GOMODCACHE 2>/dev/null)/github.com/temporalio/ui-server/v2@v$TEMPORAL_UI_VERSION/config/docker.yaml"
[[ -f "$ui_config" ]] || (cd "$IMAGES_DIR" && go mod download "github.com/temporalio/ui-server/v2@v$TEMPORAL_UI_VERSION" >/dev/null 2>&1) || true
[[ -f "$ui_config" ]] || { say "cannot find the UI server's config/docker.yaml (Go module cache)" >&2; exit 1; }

tpodman image exists "$TEMPORAL_BASE_IMAGE" \
  || build "$TEMPORAL_BASE_IMAGE" scripts/compose/images/temporal-base --build-arg BASE_IMAGE="$BASE_IMAGE"

ctx="$IMAGES_DIR/temporal-server-context"
mkdir -p "$ctx"
context_file "$server_dir/temporal-server" "$ctx/temporal-server"
context_file scripts/compose/images/temporal-server/Dockerfile "$ctx/Dockerfile"
fresh "$TEMPORAL_SERVER_IMAGE" "$TEMPORAL_BASE_IMAGE" "$ctx" || { build "$TEMPORAL_SERVER_IMAGE" "$ctx" --build-arg TEMPORAL_BASE_IMAGE="$TEMPORAL_BASE_IMAGE" && built "$TEMPORAL_SERVER_IMAGE" "$TEMPORAL_BASE_IMAGE"; }

ctx="$IMAGES_DIR/temporal-admin-tools-context"
mkdir -p "$ctx"
context_file "$server_dir/temporal-sql-tool" "$ctx/temporal-sql-tool"
context_file "$cli" "$ctx/temporal"
context_file scripts/compose/images/temporal-admin-tools/Dockerfile "$ctx/Dockerfile"
fresh "$TEMPORAL_ADMINTOOLS_IMAGE" "$TEMPORAL_BASE_IMAGE" "$ctx" || { build "$TEMPORAL_ADMINTOOLS_IMAGE" "$ctx" --build-arg TEMPORAL_BASE_IMAGE="$TEMPORAL_BASE_IMAGE" && built "$TEMPORAL_ADMINTOOLS_IMAGE" "$TEMPORAL_BASE_IMAGE"; }

ctx="$IMAGES_DIR/temporal-ui-context"
mkdir -p "$ctx"
context_file "$ui_dir/ui-server" "$ctx/ui-server"
context_file "$ui_config" "$ctx/docker.yaml"
context_file scripts/compose/images/temporal-ui/Dockerfile "$ctx/Dockerfile"
fresh "$TEMPORAL_UI_IMAGE" "$TEMPORAL_BASE_IMAGE" "$ctx" || { build "$TEMPORAL_UI_IMAGE" "$ctx" --build-arg TEMPORAL_BASE_IMAGE="$TEMPORAL_BASE_IMAGE" && built "$TEMPORAL_UI_IMAGE" "$TEMPORAL_BASE_IMAGE"; }

cat >"$TETHER_PODMAN_DIR/images.env.part" <<ENV
TETHER_IMAGE=$TETHER_IMAGE
POSTGRESQL_IMAGE=$POSTGRESQL_IMAGE
TEMPORAL_SERVER_IMAGE=$TEMPORAL_SERVER_IMAGE
TEMPORAL_ADMINTOOLS_IMAGE=$TEMPORAL_ADMINTOOLS_IMAGE
TEMPORAL_UI_IMAGE=$TEMPORAL_UI_IMAGE
ENV
mv "$TETHER_PODMAN_DIR/images.env.part" "$TETHER_PODMAN_DIR/images.env"
say "images ready; compose variables in $TETHER_PODMAN_DIR/images.env"
