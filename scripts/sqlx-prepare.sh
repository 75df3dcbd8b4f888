#!/usr/bin/env bash
# Refreshes the offline data of both stores' checked queries (sqlx::query!
# and friends), one crate per backend, each against a throw-away database
# with its own schema:
# - store-sqlite/.sqlx: an SQLite file in a temp dir with the schema of
#   store-sqlite/migrations applied in order (python3's sqlite3 module);
# - store-postgres/.sqlx: a PostgreSQL cluster on loopback with the schema
#   of store-postgres/migrations.
# sqlx's macros read DATABASE_URL from the environment when they expand, so
# each crate is compiled on its own with the URL of its database.
# Run it after changing a query or a migration, and commit the result. With
# --check it changes nothing and fails when the committed data of either
# store is not what its queries and its schema give now (CI runs that).
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

stale=0
# prepare CRATE_DIR PACKAGE DATABASE_URL: describes every checked query of
# PACKAGE against DATABASE_URL into CRATE_DIR/.sqlx (--check: into the temp
# dir, then compares).
prepare() {
    local crate="$1" package="$2" url="$3"
    local out="$PWD/$crate/.sqlx"
    [ "$mode" = --check ] && out="$dir/sqlx-$package"
    rm -rf "$out"
    mkdir -p "$out"
    # The macros describe their queries again only when the crate is compiled again.
    touch "$crate/src/lib.rs"
    SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$out" DATABASE_URL="$url" cargo check -p "$package" --lib --locked --quiet
    if [ "$mode" = --check ]; then
        if ! diff -r -q "$crate/.sqlx" "$out"; then
            echo "$crate/.sqlx is stale: run scripts/sqlx-prepare.sh and commit $crate/.sqlx" >&2
            stale=1
        else
            echo "$crate/.sqlx is current ($(ls "$out" | wc -l) queries)"
        fi
    else
        echo "wrote $(ls "$out" | wc -l) queries to $crate/.sqlx"
    fi
}

# SQLite: a database file with the migrations applied in order.
sqlite_file="$dir/ferrum.sqlite"
python3 - "$sqlite_file" store-sqlite/migrations/*.sql <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for migration in sys.argv[2:]:
    with open(migration, encoding="utf-8") as f:
        db.executescript(f.read())
db.commit()
db.close()
PY
prepare store-sqlite ferrum-store-sqlite "sqlite://$sqlite_file"

# PostgreSQL: a cluster of its own.
"${as_pg[@]}" "$bin/initdb" -A trust -U ferrum -E UTF8 --locale=C --no-sync --no-instructions -D "$dir/data" >/dev/null
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -o "-h 127.0.0.1 -p $port -k $dir -F" -l "$dir/server.log" -w start >/dev/null
url="postgres://ferrum@127.0.0.1:$port/postgres"
for migration in store-postgres/migrations/*.sql; do
    psql -q -v ON_ERROR_STOP=1 "$url" -f "$migration" >/dev/null
done
prepare store-postgres ferrum-store-postgres "$url"

exit "$stale"
