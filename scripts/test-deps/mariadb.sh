#!/usr/bin/env bash
# A MariaDB for the Cinder the tests start (test/support/cinder.ts), with the account the tests use
# (tether_test, all privileges, from localhost only). Left alone when something answers on
# 127.0.0.1:3306, otherwise Debian's mariadb-server is installed and started by hand (no systemd
# needed). With TETHER_TEST_CINDER_MYSQL_URL set, only checks that that server answers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"

# the mysql and mysqldump commands: the Cinder harness loads and dumps its schema with them
ensure_packages mariadb-client

if [[ -n "${TETHER_TEST_CINDER_MYSQL_URL:-}" ]]; then
  hostport="${TETHER_TEST_CINDER_MYSQL_URL#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
  host="${hostport%%:*}"; port="${hostport##*:}"; [[ "$port" == "$hostport" ]] && port=3306
  wait_port "$host" "$port" 60 || die "nothing answers at $host:$port (TETHER_TEST_CINDER_MYSQL_URL)"
  say "answering on $host:$port (TETHER_TEST_CINDER_MYSQL_URL)"
  exit 0
fi

DB_USER=tether_test DB_PASSWORD=tether_test
started=""
if ! port_open 127.0.0.1 3306; then
  ensure_packages mariadb-server
  start=$(date +%s)
  # What Debian's init script would do: the socket folder, then the server as the mysql user
  # (Debian's config names no user, and mariadbd refuses to run as root).
  as_root install -d -o mysql -g mysql -m 0755 /run/mysqld
  as_root start-stop-daemon --start --oknodo --background --pidfile /run/mysqld/mysqld.pid \
    --exec /usr/sbin/mariadbd -- --user=mysql
  wait_port 127.0.0.1 3306 120 || die "MariaDB did not answer on 127.0.0.1:3306 within 120 s (log: /var/log/mysql/error.log, or run /usr/sbin/mariadbd --user=mysql)"
  started=" (started mariadbd in $(( $(date +%s) - start )) s)"
fi

if ! mysql -h127.0.0.1 -P3306 -u"$DB_USER" -p"$DB_PASSWORD" -e 'select 1' >/dev/null 2>&1; then
  # Create the account as MariaDB's root: over the Unix socket (Debian's root@localhost logs in
  # through unix_socket when we are root), else over TCP without a password.
  sql="CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
       CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
       GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'localhost';
       GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'127.0.0.1';"
  as_root mysql --protocol=socket -uroot -e "$sql" 2>/dev/null || mysql -h127.0.0.1 -P3306 -uroot -e "$sql" 2>/dev/null \
    || die "cannot create the MariaDB account $DB_USER: neither root over the socket nor root@127.0.0.1 without a password may log in; create it yourself ($sql) or set TETHER_TEST_CINDER_MYSQL_URL"
  mysql -h127.0.0.1 -P3306 -u"$DB_USER" -p"$DB_PASSWORD" -e 'select 1' >/dev/null \
    || die "the account $DB_USER was created but cannot log in over 127.0.0.1:3306"
  started="$started, account $DB_USER created"
fi
say "answering on 127.0.0.1:3306 as $DB_USER$started"
