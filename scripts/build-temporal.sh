#!/usr/bin/env bash
# Builds Temporal from source with `go install`, once, into a cache outside the clone
# (${TETHER_CACHE_DIR:-$HOME/.cache/tether}/bin/):
#   temporal-<cli version>/temporal                  the Temporal CLI: the dev server `npm start` runs
#                                                    (SQLite store, Web UI) and `temporal operator …`
#   temporal-server-<version>/temporal-server        the multi-service server on PostgreSQL that
#                                                    `TETHER_TEMPORAL=cluster npm start` runs as two nodes
#   temporal-server-<version>/temporal-sql-tool      its schema tool (schemas are embedded in it)
# Usage: build-temporal.sh [cli|server|all]   (default all)
#
# CLI v1.5.1 is pinned: the newest release whose go.mod has no `replace` directive (which
# `go install module@version` refuses); it contains server v1.29.1, so the server is pinned to the
# same version. Nothing is downloaded at run time; only this build talks to the Go module proxy.
# A binary that is present is never rebuilt; each is built into a temporary folder and moved into
# place at the end, so an interrupted build never leaves a half-written "cached" binary behind.
set -euo pipefail

CLI_VERSION="${TEMPORAL_CLI_VERSION:-1.5.1}"
SERVER_VERSION="${TEMPORAL_SERVER_VERSION:-1.29.1}"
CACHE_DIR="${TETHER_CACHE_DIR:-$HOME/.cache/tether}"
WHAT="${1:-all}"
case "$WHAT" in cli | server | all) ;; *)
  echo "usage: $0 [cli|server|all]" >&2
  exit 2
  ;;
esac

TMP_BIN=
TICKER_PID=
cleanup() {
  [[ -n "$TICKER_PID" ]] && kill "$TICKER_PID" 2>/dev/null || true
  [[ -n "$TMP_BIN" ]] && rm -rf "$TMP_BIN"
  return 0
}
trap cleanup EXIT

require_go() {
  if ! command -v go >/dev/null 2>&1; then
    echo "temporal: 'go' was not found on PATH; Temporal is built from source." >&2
    echo "temporal: install Go >= 1.25 from https://go.dev/dl/ (Debian 12's golang package is too old)," >&2
    echo "temporal: put it on PATH (e.g. /usr/local/go/bin), then re-run $0" >&2
    exit 1
  fi
}

# build LABEL DEST_DIR HINT "PACKAGE@VERSION=NAME_IN_CACHE"...
# Installs the packages (one module, one version) with one `go install`, printing progress every
# 15 s, then moves each binary into DEST_DIR under its cache name. Skips when all are present.
build() {
  local label=$1 dest=$2 hint=$3
  shift 3
  local missing=0 spec
  for spec in "$@"; do [[ -x "$dest/${spec#*=}" ]] || missing=1; done
  if [[ $missing -eq 0 ]]; then
    for spec in "$@"; do echo "temporal: cached at $dest/${spec#*=}"; done
    return 0
  fi
  require_go
  mkdir -p "$dest"
  TMP_BIN="$(mktemp -d "$dest/.build.XXXXXX")"
  local log="$TMP_BIN/build.log" start packages=()
  for spec in "$@"; do packages+=("${spec%=*}"); done
  echo "temporal: building $label with $(go version | awk '{print $3}') ($hint)"
  start=$(date +%s)
  (
    while sleep 15; do
      last=$(tail -n 1 "$log" 2>/dev/null | cut -c1-100 || true)
      echo "temporal: still building $label... $(($(date +%s) - start))s elapsed${last:+ (last: $last)}"
    done
  ) &
  TICKER_PID=$!
  local ok=1
  GOBIN="$TMP_BIN" GOFLAGS="${GOFLAGS:-}" go install "${packages[@]}" >"$log" 2>&1 || ok=0
  kill "$TICKER_PID" 2>/dev/null || true
  wait "$TICKER_PID" 2>/dev/null || true
  TICKER_PID=
  if [[ $ok -eq 0 ]]; then
    echo "temporal: building $label FAILED after $(($(date +%s) - start))s; last lines of the build log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  for spec in "$@"; do
    local package=${spec%=*} name=${spec#*=}
    package=${package%@*}
    mv -f "$TMP_BIN/${package##*/}" "$dest/$name"
  done
  rm -rf "$TMP_BIN"
  TMP_BIN=
  echo "temporal: built $label in $(($(date +%s) - start))s -> $dest"
}

if [[ "$WHAT" == cli || "$WHAT" == all ]]; then
  build "CLI v$CLI_VERSION" "$CACHE_DIR/bin/temporal-$CLI_VERSION" \
    "first build ~7 min on 2 cores, with warm Go caches ~15 s" \
    "github.com/temporalio/cli/cmd/temporal@v$CLI_VERSION=temporal"
  echo "temporal: $("$CACHE_DIR/bin/temporal-$CLI_VERSION/temporal" --version)"
fi

if [[ "$WHAT" == server || "$WHAT" == all ]]; then
  build "server v$SERVER_VERSION and its SQL schema tool" "$CACHE_DIR/bin/temporal-server-$SERVER_VERSION" \
    "first build ~4 min on 2 cores, ~1 min after the CLI" \
    "go.temporal.io/server/cmd/server@v$SERVER_VERSION=temporal-server" \
    "go.temporal.io/server/cmd/tools/sql@v$SERVER_VERSION=temporal-sql-tool"
  echo "temporal: $("$CACHE_DIR/bin/temporal-server-$SERVER_VERSION/temporal-server" --version 2>&1 | head -n 1)"
fi
