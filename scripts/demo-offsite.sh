#!/usr/bin/env bash
# `make demo-offsite`: the offsite copy on a throwaway PostgreSQL and a
# throwaway S3 server (Ceph's RADOS Gateway as a one-node cluster on
# loopback, tests/s3/rgw.sh). A backup is copied to a bucket and proven
# there, an independent client (boto3) reads it back, `verify --remote
# --deep` reads every row in the bucket, and a sandbox drill restores the
# newest backup from the bucket alone, with an empty local backup directory:
# the rehearsal of losing the host. Everything is removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
pgward=$(realpath "${1:-$repo/build/pgward}")
source "$here/lib/throwaway-pg.sh"

step() { printf '\n== %s\n' "$*"; }
started=$SECONDS

throwaway_pg_start
rgw_dir=$TPG_DIR/rgw
stop_all() {
  "$repo/tests/s3/rgw.sh" stop "$rgw_dir" >/dev/null 2>&1 || true
  throwaway_pg_stop
}
trap stop_all EXIT
step "started a throwaway PostgreSQL ($("$TPG_BIN/postgres" --version)) in $TPG_DIR"
out=${PGWARD_DEMO_OUT:-$TPG_DIR}
export POSTGRES_DB=quiz_arena POSTGRES_BACKUP_DIR="$out/backups"
tpsql postgres -c 'CREATE DATABASE quiz_arena'
for migration in "$repo"/examples/quiz_arena/migrations/*.sql; do
  tpsql quiz_arena -f "$migration"
done
tpsql quiz_arena -o /dev/null -f "$repo/examples/quiz_arena/sample_data.sql"

"$repo/tests/s3/rgw.sh" start "$rgw_dir" >/dev/null
set -a
source "$rgw_dir/env"
set +a
export AWS_ENDPOINT_URL=$S3_ENDPOINT POSTGRES_BACKUP_REMOTE=s3://pgward-demo/prod/quiz
step "started a throwaway S3 server (Ceph RGW $(radosgw --version | awk '{print $3}')) at $S3_ENDPOINT"
python3 "$repo/tests/s3/check_bucket.py" mkbucket "$S3_ENDPOINT" pgward-demo >/dev/null

step "pgward backup --remote $POSTGRES_BACKUP_REMOTE"
dump=$("$pgward" backup 2> "$out/backup.log")
grep -E 'backup end|copying a backup offsite|copied offsite and proven' "$out/backup.log"

step "pgward list --remote"
"$pgward" list --remote

step "an independent client (boto3) reads the object back"
name=$(basename "$dump")
remote_sha=$(python3 "$repo/tests/s3/check_bucket.py" sha256 "$S3_ENDPOINT" pgward-demo "prod/quiz/$name")
manifest_sha=$(sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p' "${dump%.dump}.json")
echo "SHA-256 in the bucket:  $remote_sha"
echo "SHA-256 in the manifest: $manifest_sha"
[[ $remote_sha == "$manifest_sha" ]]

step "pgward verify --remote latest --deep (every row read from the bucket, nothing written to disk)"
"$pgward" verify --remote latest --deep

step "the host is gone: an empty backup directory, and a sandbox drill from the bucket alone"
export POSTGRES_BACKUP_DIR="$out/new-host"
mkdir -p "$POSTGRES_BACKUP_DIR"
report=$("$pgward" drill --remote --sandbox --report-dir "$out/reports" 2> "$out/drill.log")
grep -E 'fetching a backup|fetched and checked|drill end' "$out/drill.log"

step "what was proven (in $((SECONDS - started)) s)"
echo "- the backup $name is in $POSTGRES_BACKUP_REMOTE with its manifest, uploaded last"
echo "- its bytes in the bucket hash to the manifest's SHA-256, as read by pgward and by boto3"
echo "- every table's rows and fingerprint in the bucket's copy equal the manifest"
echo "- restored from the bucket into a private cluster with nothing local: $report"
printf 'restore_success: %s, checks passed: %s of %s\n' \
  "$(sed -n 's/.*"restore_success": \(.*\),/\1/p' "$report")" \
  "$(grep -c '"passed": true' "$report")" "$(grep -c '"passed":' "$report")"
