#!/bin/sh
# One-shot job (temporalio/admin-tools image; any shell with the `temporal` CLI will do): waits for
# the Temporal frontend, creates tether's namespace if it is missing, registers tether's search
# attributes (src/temporal/search-attributes.ts) if they are missing, then waits until the frontend
# accepts a query on them, so tether never starts a workflow the server would reject.
# Idempotent: it runs on every `docker compose up`.
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS must name the Temporal frontend (host:port)}"
export TEMPORAL_ADDRESS # the temporal CLI reads it
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_NAMESPACE_RETENTION:-168h}"
# name=Type pairs, separated by spaces.
ATTRIBUTES="${TETHER_SEARCH_ATTRIBUTES:-InstanceUuid=Keyword VolumeId=Keyword ComputeHost=Keyword TetherState=Keyword}"
ATTEMPTS="${SETUP_ATTEMPTS:-90}"
out="${TMPDIR:-/tmp}/setup-namespace.$$"
trap 'rm -f "$out"' EXIT

say() { echo "setup-namespace: $*"; }

# retry <what> <command...>: runs the command until it succeeds, every 2 s, at most $ATTEMPTS times.
retry() {
  what=$1
  shift
  i=1
  until "$@" >"$out" 2>&1; do
    if [ "$i" -ge "$ATTEMPTS" ]; then
      say "$what: gave up after $ATTEMPTS attempts:" >&2
      cat "$out" >&2
      return 1
    fi
    [ "$i" -eq 1 ] && say "$what: waiting…"
    i=$((i + 1))
    sleep 2
  done
}

retry "Temporal frontend at $TEMPORAL_ADDRESS" temporal operator cluster health
say "Temporal frontend at $TEMPORAL_ADDRESS is serving"

if temporal operator namespace describe --namespace "$NAMESPACE" >/dev/null 2>&1; then
  say "namespace $NAMESPACE exists"
else
  retry "create namespace $NAMESPACE" temporal operator namespace create --namespace "$NAMESPACE" --retention "$RETENTION"
  say "namespace $NAMESPACE created (retention $RETENTION)"
  # A new namespace reaches the frontend's namespace cache within seconds.
  retry "namespace $NAMESPACE visible" temporal operator search-attribute list --namespace "$NAMESPACE"
fi

existing=$(temporal operator search-attribute list --namespace "$NAMESPACE")
query=""
for pair in $ATTRIBUTES; do
  name=${pair%%=*}
  type=${pair#*=}
  have=$(printf '%s\n' "$existing" | awk -v n="$name" '$1 == n { print $2 }')
  if [ -z "$have" ]; then
    retry "create search attribute $name ($type)" \
      temporal operator search-attribute create --namespace "$NAMESPACE" --name "$name" --type "$type"
    say "search attribute $name ($type) created"
  elif [ "$have" != "$type" ]; then
    say "search attribute $name exists in namespace $NAMESPACE with type $have; tether needs $type" >&2
    exit 1
  else
    say "search attribute $name ($type) exists"
  fi
  query="${query:+$query AND }$name = 'tether-setup-probe'"
done

# The frontend validates queries and new workflows' search attributes against the same cache.
retry "search attributes usable in namespace $NAMESPACE" \
  temporal workflow list --namespace "$NAMESPACE" --query "$query" --limit 1
say "namespace $NAMESPACE ready: $ATTRIBUTES"
