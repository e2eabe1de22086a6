#!/usr/bin/env bash
# `make demo`: pgward's main job on a throwaway PostgreSQL. Starts a private
# cluster (unix socket only, password auth), creates a small app database,
# takes three backups with retention 2, lists them, and removes the cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pgward=$(realpath "${1:-build/pgward}")
source "$here/lib/throwaway-pg.sh"

step() { printf '\n== %s\n' "$*"; }

throwaway_pg_start
step "started a throwaway PostgreSQL ($("$TPG_BIN/postgres" --version)) in $TPG_DIR"
export POSTGRES_DB=quiz_arena POSTGRES_BACKUP_DIR="$TPG_DIR/backups"

step "creating the sample database quiz_arena"
tpsql postgres -c 'CREATE DATABASE quiz_arena'
tpsql quiz_arena <<'SQL'
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
