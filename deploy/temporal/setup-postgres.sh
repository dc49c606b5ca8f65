#!/bin/sh
# Creates Temporal's two PostgreSQL databases if they are missing and brings their schemas to the
# version of the schema tool (whose schemas are built in). Idempotent: setup-schema skips a database
# whose schema is newer than 0.0, update-schema applies only what is missing — this is what upgrades
# the schema when the Temporal version changes. Run by the compose file's one-shot job (the
# temporalio/admin-tools image) and by the cluster mode of the stack (stack/temporal-cluster.ts, with
# TEMPORAL_SQL_TOOL naming the tool scripts/build-temporal.sh built).
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS must name the PostgreSQL host}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${POSTGRES_PWD?POSTGRES_PWD is required (it may be empty)}"
DB_PORT="${DB_PORT:-5432}"
SQL_TOOL="${TEMPORAL_SQL_TOOL:-temporal-sql-tool}"
export SQL_PASSWORD="$POSTGRES_PWD" # temporal-sql-tool reads the password from here

if command -v nc >/dev/null 2>&1; then
  until nc -z -w 5 "$POSTGRES_SEEDS" "$DB_PORT"; do
    echo "setup-postgres: waiting for PostgreSQL at $POSTGRES_SEEDS:$DB_PORT"
    sleep 2
  done
fi

sql() { "$SQL_TOOL" --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"; }

for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
  db=${pair%%:*}
  schema=postgresql/v12/${pair#*:}
  # "create" fails when the database exists; a real problem (credentials, network) fails the next step.
  sql --db "$db" create >/dev/null 2>&1 && echo "setup-postgres: database $db created" || echo "setup-postgres: database $db exists"
  sql --db "$db" setup-schema -v 0.0
  sql --db "$db" update-schema --schema-name "$schema"
  echo "setup-postgres: database $db is at the schema of this Temporal version ($schema)"
done
