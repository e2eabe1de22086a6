#!/usr/bin/env bash
# `make bench` section 8: the offsite copy of one large backup to a local
# S3 server (Ceph RGW on loopback, tests/s3/rgw.sh) against s3cmd's upload of
# the same file to the same server, interleaved BENCH_RUNS times (default 3)
# in this one run, medians and ratios printed:
#   pgward push                        upload, read the object back, SHA-256
#                                      against the manifest, then the manifest
#   pgward push --remote-verify size   upload, size check, manifest
#   s3cmd put                          upload alone (its own MD5 check)
# Data: one table of BENCH_OFFSITE_MB (default 500) MiB of random text, dumped
# uncompressed so the dump is that size. Skips (exit 0, reason printed) when
# Ceph or s3cmd is not installed.
# Usage: bench/offsite.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$repo/build}")
pgward=$build/pgward
runs=${BENCH_RUNS:-3}
megabytes=${BENCH_OFFSITE_MB:-500}
if ! command -v s3cmd >/dev/null; then
  echo "offsite bench: SKIP: s3cmd is not installed (apt-get install s3cmd)"
  exit 0
fi
source "$repo/scripts/lib/throwaway-pg.sh"
throwaway_pg_start
rgw=$TPG_DIR/rgw
rc=0
# memstore's reported capacity (RAM is used only as objects are stored):
# room for a few copies of the dump at once.
RGW_MEMSTORE_BYTES=$((16 * 1024 * 1024 * 1024)) \
  "$repo/tests/s3/rgw.sh" start "$rgw" >/dev/null 2>"$TPG_DIR/rgw.err" || rc=$?
if [[ $rc == 3 ]]; then
  echo "offsite bench: $(cat "$TPG_DIR/rgw.err")"
  exit 0
elif [[ $rc != 0 ]]; then
  cat "$TPG_DIR/rgw.err" >&2
  exit 1
fi
trap '"$repo/tests/s3/rgw.sh" stop "$rgw" >/dev/null 2>&1 || true; throwaway_pg_stop' EXIT
set -a
source "$rgw/env"
set +a
export AWS_ENDPOINT_URL=$S3_ENDPOINT POSTGRES_DB=bench POSTGRES_BACKUP_DIR=$TPG_DIR/backups
host=${S3_ENDPOINT#http://}
cat > "$TPG_DIR/s3cfg" <<CFG
[default]
access_key = $AWS_ACCESS_KEY_ID
secret_key = $AWS_SECRET_ACCESS_KEY
host_base = $host
host_bucket = $host
use_https = False
signature_v2 = False
bucket_location = us-east-1
CFG
chmod 600 "$TPG_DIR/s3cfg"
s3() { s3cmd -c "$TPG_DIR/s3cfg" --no-progress "$@"; }
s3 mb s3://bench >/dev/null

echo "offsite: ${megabytes} MiB dump to Ceph RGW $(radosgw --version | awk '{print $3}') on loopback, s3cmd $(s3cmd --version | awk '{print $3}')"
tpsql postgres -c 'CREATE DATABASE bench'
# 1 KiB rows of random text: incompressible enough, and exact in size.
tpsql bench -c "CREATE TABLE blob AS SELECT g AS id, string_agg(md5(random()::text), '')
  AS t FROM generate_series(1, $((megabytes * 1024))) g, generate_series(1, 30) r GROUP BY g"
dump=$("$pgward" backup --compress none 2>/dev/null)
size=$(stat -c %s "$dump")
echo "dump: $(basename "$dump"), $((size / 1048576)) MiB"

# Each upload bounded: a stuck client fails the bench instead of hanging it.
seconds() { local t0 t1; t0=$(date +%s.%N); timeout 600 "$@" >/dev/null 2>&1 || { echo "offsite bench: failed: $*" >&2; exit 1; }; t1=$(date +%s.%N); calc "$t1 - $t0"; }
calc() { awk "BEGIN {print $1}"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
declare -a read_back size_only baseline
for ((i = 1; i <= runs; i++)); do
  # Each copy deleted at once: memstore holds every object in RAM.
  t=$(seconds "$pgward" push --remote "s3://bench/read-$i")
  read_back+=("$t")
  s3 del --recursive --force "s3://bench/read-$i" >/dev/null
  t=$(seconds "$pgward" push --remote "s3://bench/size-$i" --remote-verify size)
  size_only+=("$t")
  s3 del --recursive --force "s3://bench/size-$i" >/dev/null
  t=$(seconds s3cmd -c "$TPG_DIR/s3cfg" --no-progress put "$dump" "s3://bench/s3cmd-$i/$(basename "$dump")")
  baseline+=("$t")
  s3 del --recursive --force "s3://bench/s3cmd-$i" >/dev/null
done
b=$(printf '%s\n' "${baseline[@]}" | median)
r=$(printf '%s\n' "${read_back[@]}" | median)
s=$(printf '%s\n' "${size_only[@]}" | median)
mib=$((size / 1048576))
printf '%-44s %8s %10s %8s\n' "offsite copy of one dump" "seconds" "MiB/s" "ratio"
printf '%-44s %8.2f %10.1f %8s\n' "s3cmd put (baseline)" "$b" "$(calc "$mib / $b")" "1.00"
printf '%-44s %8.2f %10.1f %8.2f\n' "pgward push (read back, SHA-256: the proof)" "$r" \
  "$(calc "$mib / $r")" "$(calc "$r / $b")"
printf '%-44s %8.2f %10.1f %8.2f\n' "pgward push --remote-verify size" "$s" \
  "$(calc "$mib / $s")" "$(calc "$s / $b")"
echo "goals: read back <= 1.5x the baseline, size only <= 1.0x"
