#!/usr/bin/env bash
# Builds the Temporal CLI (which contains the dev server, its SQLite store and the Web UI)
# from source with `go install`, once, into a cache outside the clone:
#   ${TETHER_CACHE_DIR:-$HOME/.cache/tether}/bin/temporal-<version>/temporal
# v1.5.1 is pinned: the newest release whose go.mod has no `replace` directive
# (see docs / shared reference). Nothing is downloaded at run time; only this build
# talks to the Go module proxy. With warm Go caches (~/go/pkg/mod, ~/.cache/go-build)
# a rebuild takes ~15 s; a cold first build ~7 min on 2 cores.
set -euo pipefail

VERSION="${TEMPORAL_CLI_VERSION:-1.5.1}"
CACHE_DIR="${TETHER_CACHE_DIR:-$HOME/.cache/tether}"
DEST_DIR="$CACHE_DIR/bin/temporal-$VERSION"
BIN="$DEST_DIR/temporal"

if [[ -x "$BIN" ]]; then
  echo "temporal: cached at $BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "temporal: 'go' was not found on PATH; the Temporal CLI is built from source." >&2
  echo "temporal: install Go >= 1.25 from https://go.dev/dl/ (Debian 12's golang package is too old)," >&2
  echo "temporal: put it on PATH (e.g. /usr/local/go/bin), then re-run $0" >&2
  exit 1
fi

mkdir -p "$DEST_DIR"
# Build into a temporary GOBIN and move the binary into place at the end, so an
# interrupted build never leaves a half-written "cached" binary behind.
TMP_BIN="$(mktemp -d "$DEST_DIR/.build.XXXXXX")"
LOG="$TMP_BIN/build.log"
cleanup() {
  [[ -n "${TICKER_PID:-}" ]] && kill "$TICKER_PID" 2>/dev/null || true
  rm -rf "$TMP_BIN"
}
trap cleanup EXIT

echo "temporal: building CLI v$VERSION with $(go version | awk '{print $3}') (first build ~7 min, with warm Go caches ~15 s)"
start=$(date +%s)
(
  while sleep 15; do
    now=$(date +%s)
    last=$(tail -n 1 "$LOG" 2>/dev/null | cut -c1-100 || true)
    echo "temporal: still building... $((now - start))s elapsed${last:+ (last: $last)}"
  done
) &
TICKER_PID=$!

if ! GOBIN="$TMP_BIN" GOFLAGS="${GOFLAGS:-}" go install "github.com/temporalio/cli/cmd/temporal@v$VERSION" >"$LOG" 2>&1; then
  kill "$TICKER_PID" 2>/dev/null || true
  wait "$TICKER_PID" 2>/dev/null || true
  TICKER_PID=
  echo "temporal: build FAILED after $(( $(date +%s) - start ))s; last lines of the build log:" >&2
  tail -n 30 "$LOG" >&2
  exit 1
fi
kill "$TICKER_PID" 2>/dev/null || true
wait "$TICKER_PID" 2>/dev/null || true
TICKER_PID=

mv -f "$TMP_BIN/temporal" "$BIN"
echo "temporal: built in $(( $(date +%s) - start ))s -> $BIN"
echo "temporal: $("$BIN" --version)"
