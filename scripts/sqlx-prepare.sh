#!/usr/bin/env bash
# Refreshes store-postgres/.sqlx, the offline data of the PostgreSQL store's
# checked queries (sqlx::query! and friends), from a throw-away PostgreSQL
# cluster on loopback with the schema of store-postgres/migrations.
# Run it after changing a query or a PostgreSQL migration, and commit the
# result. With --check it changes nothing and fails when the committed
# data is not what the queries and the schema give now (CI runs that).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-write}"
case "$mode" in write|--check) ;; *) echo "usage: $0 [--check]" >&2; exit 2 ;; esac

bin="${FERRUM_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
[ -x "$bin/initdb" ] || { echo "$0: PostgreSQL server binaries not found (apt-get install postgresql-15, or set FERRUM_PG_BIN)" >&2; exit 1; }
dir="$(mktemp -d /tmp/ferrum-sqlx.XXXXXX)"
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; as_pg=(runuser -u postgres --); fi
cleanup() {
    [ -f "$dir/data/postmaster.pid" ] && "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
"${as_pg[@]}" "$bin/initdb" -A trust -U ferrum -E UTF8 --locale=C --no-sync --no-instructions -D "$dir/data" >/dev/null
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -o "-h 127.0.0.1 -p $port -k $dir -F" -l "$dir/server.log" -w start >/dev/null
url="postgres://ferrum@127.0.0.1:$port/postgres"
for migration in store-postgres/migrations/*.sql; do
    psql -q -v ON_ERROR_STOP=1 "$url" -f "$migration" >/dev/null
done

out="$PWD/store-postgres/.sqlx"
[ "$mode" = --check ] && out="$dir/sqlx"
rm -rf "$out"
mkdir -p "$out"
# The macros describe their queries again only when the crate is compiled again.
touch store-postgres/src/lib.rs
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out" DATABASE_URL="$url" cargo check -p ferrum-store-postgres --lib --locked --quiet
if [ "$mode" = --check ]; then
    if ! diff -r -q store-postgres/.sqlx "$out"; then
        echo "store-postgres/.sqlx is stale: run scripts/sqlx-prepare.sh and commit store-postgres/.sqlx" >&2
        exit 1
    fi
    echo "store-postgres/.sqlx is current ($(ls "$out" | wc -l) queries)"
else
    echo "wrote $(ls "$out" | wc -l) queries to store-postgres/.sqlx"
fi
