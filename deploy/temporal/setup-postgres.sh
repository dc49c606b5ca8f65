#!/bin/sh
# One-shot job (temporalio/admin-tools image): creates Temporal's two PostgreSQL databases if they
# are missing and brings their schemas to the version this image ships. Idempotent: it runs on
# every `docker compose up` (setup-schema skips a database whose schema is newer than 0.0;
# update-schema applies only what is missing) — this is what upgrades the schema when
# TEMPORAL_VERSION changes.
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS must name the PostgreSQL host}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${POSTGRES_PWD:?POSTGRES_PWD is required}"
DB_PORT="${DB_PORT:-5432}"
export SQL_PASSWORD="$POSTGRES_PWD" # temporal-sql-tool reads the password from here
SCHEMA=/etc/temporal/schema/postgresql/v12

until nc -z -w 5 "$POSTGRES_SEEDS" "$DB_PORT"; do
  echo "setup-postgres: waiting for PostgreSQL at $POSTGRES_SEEDS:$DB_PORT"
  sleep 2
done

sql() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"; }

for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
  db=${pair%%:*}
  dir=${pair#*:}
  # "create" fails when the database exists; a real problem (credentials, network) fails the next step.
  sql --db "$db" create >/dev/null 2>&1 && echo "setup-postgres: database $db created" || echo "setup-postgres: database $db exists"
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema -d "$SCHEMA/$dir/versioned"
  echo "setup-postgres: database $db is at the schema of this Temporal version"
done
