#!/bin/sh
# Entry point of the local stand-in for the postgres image: on an empty PGDATA it creates the
# cluster (superuser POSTGRES_USER with POSTGRES_PASSWORD, password authentication over TCP) and
# the database POSTGRES_DB, then runs PostgreSQL as the postgres user, listening on every address.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
superuser="${POSTGRES_USER:-postgres}"
database="${POSTGRES_DB:-$superuser}"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
bin=/usr/lib/postgresql/15/bin
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  as_postgres "$bin/initdb" -D "$PGDATA" -U "$superuser" --pwfile="$pwfile" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$database" != postgres ]; then
    echo "CREATE DATABASE \"$database\"" | as_postgres "$bin/postgres" --single -j -D "$PGDATA" postgres >/dev/null
  fi
  echo "postgresql-entrypoint: cluster created in $PGDATA (superuser $superuser, database $database)"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$bin/postgres" -D "$PGDATA" -c listen_addresses='*'
