#!/usr/bin/env bash
# `make demo`: pgward's main job on a throwaway PostgreSQL. Starts a private
# cluster (unix socket only, password auth), creates a small app database,
# takes three backups with retention 2, lists them, and removes the cluster.
set -euo pipefail

pgward=$(realpath "${1:-build/pgward}")
bindir=${PGWARD_DEMO_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
work=$(mktemp -d /tmp/pgward-demo.XXXXXX)
chmod 755 "$work"
mkdir "$work/sock"
password="demo-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"

as_server() {
  if [[ $(id -u) == 0 ]]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}
[[ $(id -u) == 0 ]] && chown postgres "$work" "$work/sock"

cleanup() {
  as_server "$bindir/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "starting a throwaway PostgreSQL ($("$bindir/postgres" --version)) in $work"
printf '%s\n' "$password" > "$work/pwfile"
[[ $(id -u) == 0 ]] && chown postgres "$work/pwfile"
as_server "$bindir/initdb" -D "$work/data" -U postgres --auth=scram-sha-256 \
  --pwfile="$work/pwfile" -E UTF8 --locale=C.UTF-8 >/dev/null
rm -f "$work/pwfile"
as_server "$bindir/pg_ctl" -D "$work/data" -l "$work/server.log" -w \
  -o "-c listen_addresses= -k $work/sock" start >/dev/null

export POSTGRES_HOST="$work/sock" POSTGRES_USER=postgres POSTGRES_PASSWORD="$password"
export POSTGRES_DB=quiz_arena POSTGRES_BACKUP_DIR="$work/backups"

step "creating the sample database quiz_arena"
PGPASSWORD="$password" "$bindir/psql" -q -h "$work/sock" -U postgres -d postgres \
  -c 'CREATE DATABASE quiz_arena'
PGPASSWORD="$password" "$bindir/psql" -q -h "$work/sock" -U postgres -d quiz_arena <<'SQL'
CREATE TABLE users(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                   telegram_user_id bigint UNIQUE NOT NULL, name text);
CREATE TABLE processed_updates(update_id bigint PRIMARY KEY, at timestamptz DEFAULT now());
CREATE TABLE alembic_version(version_num varchar(32) PRIMARY KEY);
INSERT INTO users(telegram_user_id, name) SELECT 1000 + g, 'player ' || g FROM generate_series(1, 5000) g;
INSERT INTO processed_updates(update_id) SELECT generate_series(1, 20000);
INSERT INTO alembic_version VALUES ('0001_initial');
SQL

for i in 1 2 3; do
  step "backup $i of 3 (retention 2)"
  "$pgward" backup --retention 2
  sleep 1
done

step "pgward list --verify"
"$pgward" list --verify

step "the newest manifest"
ls -1 "$POSTGRES_BACKUP_DIR"/*.json | tail -n 1 | xargs cat

step "done: 3 backups taken, 2 kept, each checked by pg_restore --list before it was published"
