#!/usr/bin/env bash
# `make demo`: pgward's main job on a throwaway PostgreSQL. Starts a private
# cluster (unix socket only, password auth), creates the example quiz app
# database from its migrations with sample data, runs the backup service for
# a few short cycles with retention, runs the restore drill and a sandbox
# drill of the newest backup, prints what was proven, and removes it all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
pgward=$(realpath "${1:-$repo/build/pgward}")
source "$here/lib/throwaway-pg.sh"

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

throwaway_pg_start
step "started a throwaway PostgreSQL ($("$TPG_BIN/postgres" --version)) in $TPG_DIR"
out=${PGWARD_DEMO_OUT:-$TPG_DIR}
export POSTGRES_DB=quiz_arena POSTGRES_BACKUP_DIR="$out/backups"

step "creating quiz_arena from examples/quiz_arena/migrations, with sample data"
tpsql postgres -c 'CREATE DATABASE quiz_arena'
for migration in "$repo"/examples/quiz_arena/migrations/*.sql; do
  tpsql quiz_arena -f "$migration"
done
tpsql quiz_arena -c "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
                     INSERT INTO alembic_version VALUES ('0003_answers')"
tpsql quiz_arena -o /dev/null -f "$repo/examples/quiz_arena/sample_data.sql"

step "pgward run: a backup every 2 s, retention 3, for 9 s"
POSTGRES_BACKUP_INTERVAL_SECONDS=2 POSTGRES_BACKUP_RETENTION_COUNT=3 "$pgward" run > "$out/service.log" &
service=$!
sleep 9
kill -TERM "$service"
wait "$service"
grep -E 'backup end|pruned|delete|service stopped' "$out/service.log" | tail -n 8

step "pgward list --verify (every dump re-hashed against its manifest)"
"$pgward" list --verify

step "pgward healthcheck"
"$pgward" healthcheck

step "pgward drill: migrate a scratch database, seed markers, dump, drop, restore, verify"
drill_report=$("$pgward" drill --migrations "$repo/examples/quiz_arena/migrations" --report-dir "$out/reports")

step "pgward drill --backup latest --sandbox: the newest real backup restored into a private cluster"
sandbox_report=$("$pgward" drill --backup latest --sandbox --report-dir "$out/reports")

summary() {
  local report=$1
  sed -n 's/.*"restore_success": \(.*\),/restore_success: \1/p; s/.*"dump_file": "\(.*\)",/dump: \1/p' "$report"
  printf 'checks passed: %s of %s\n' "$(grep -c '"passed": true' "$report")" "$(grep -c '"passed":' "$report")"
}
step "what was proven (in $((SECONDS - started)) s)"
echo "- the service took a backup every 2 s, kept exactly $(ls "$POSTGRES_BACKUP_DIR"/*.dump | wc -l) dumps, each with a manifest"
echo "- every kept dump's SHA-256 matches its manifest, and pg_restore reads it"
echo "- the seed's drill passed: $drill_report"
summary "$drill_report"
echo "- the newest backup restores on a fresh server with every table's row count equal to the"
echo "  count taken in the dump's own snapshot: $sandbox_report"
summary "$sandbox_report"
