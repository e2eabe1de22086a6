#!/usr/bin/env bash
# `make bench`, encryption: what age costs a backup and its proof, each pair
# run interleaved BENCH_RUNS times (default 3) in this one invocation, medians
# and ratios printed (issue 21's goals: at most 1.05 for the backup, 1.2 for
# verify --deep):
#   1. pgward backup --encrypt-to KEY vs pgward backup (plain)
#   2. pgward verify --deep --identity of that backup vs verify --deep of the
#      plain one (nothing decrypted is written to disk)
#   3. the sandbox drill of each
# Data as bench/bench.sh: pgbench -i -s BENCH_SCALE (default 30) plus
# BENCH_TEXT_ROWS (default 2M) rows of random text.
# Usage: bench/encryption.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$repo/build}")
pgward=$build/pgward
scale=${BENCH_SCALE:-30}
text_rows=${BENCH_TEXT_ROWS:-2000000}
runs=${BENCH_RUNS:-3}
source "$repo/scripts/lib/throwaway-pg.sh"
TPG_SERVER_OPTIONS="-c shared_buffers=256MB -c max_wal_size=4GB" throwaway_pg_start
work=$TPG_DIR/work
mkdir -p "$work"
chmod 777 "$work"
export POSTGRES_DB=bench PGPASSWORD=$TPG_PASSWORD
export PGHOST=$TPG_DIR/sock PGUSER=postgres PATH="$TPG_BIN:$PATH"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
echo "postgres: $("$TPG_BIN/postgres" --version), $(pg_dump --version), $("$pgward" version | head -n 1)"
tpsql postgres -c 'CREATE DATABASE bench'
"$TPG_BIN/pgbench" -q -i -s "$scale" -h "$TPG_DIR/sock" -U postgres bench >/dev/null 2>&1
tpsql bench -c "CREATE TABLE random_text AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS a,
  md5(random()::text) AS b, random() * 1e6 AS f, now() - random() * interval '1000 days' AS ts
  FROM generate_series(1, $text_rows) g"
tpsql bench -c 'VACUUM ANALYZE' >/dev/null
echo "data: pgbench scale $scale + $text_rows rows of random text: $(tpsql bench -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")"

# Seconds one run of a command took; a run that fails fails the bench (a
# failed run would look fast).
seconds() {
  local s=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/last.err" || { echo "bench: failed: $*: $(tail -n 1 "$work/last.err")" >&2; exit 1; }
  awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

"$pgward" keygen -o "$work/key.txt" >"$work/recipient" 2>/dev/null
recipient=$(head -n 1 "$work/recipient")
declare -a plain encrypted
for ((i = 0; i < runs; i++)); do
  rm -rf "$work/plain" "$work/encrypted"
  plain+=("$(seconds "$pgward" backup --dir "$work/plain")")
  encrypted+=("$(seconds "$pgward" backup --dir "$work/encrypted" --encrypt-to "$recipient")")
done
plain_dump=$(ls "$work"/plain/*.dump)
sealed_dump=$(ls "$work"/encrypted/*.dump.age)
declare -a deep_plain deep_sealed drill_plain drill_sealed
for ((i = 0; i < runs; i++)); do
  deep_plain+=("$(seconds "$pgward" verify --deep "$plain_dump")")
  deep_sealed+=("$(seconds "$pgward" verify --deep --identity "$work/key.txt" "$sealed_dump")")
  rm -rf "$work/reports"
  drill_plain+=("$(seconds env TMPDIR="$work" "$pgward" drill --backup "$plain_dump" --sandbox --report-dir "$work/reports")")
  drill_sealed+=("$(seconds env TMPDIR="$work" "$pgward" drill --backup "$sealed_dump" --sandbox --identity "$work/key.txt" --report-dir "$work/reports")")
done
"$pgward" verify --deep --identity "$work/key.txt" "$sealed_dump" | sed 's/^/verify: /'
if ls -a "$work/encrypted" | grep -q '^\.pgward-decrypt-'; then
  echo "bench: a decrypted copy was left in $work/encrypted" >&2
  exit 1
fi

printf '\n%-44s %10s %10s %7s %6s\n' "encryption ($runs runs, median)" "encrypted" "plain" "ratio" "goal"
row() { printf '%-44s %9ss %9ss %6sx %6s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")" "$4"; }
row "backup (pg_dump -Fc, counts, fp1, age)" "$(median "${encrypted[@]}")" "$(median "${plain[@]}")" "<=1.05"
row "verify --deep" "$(median "${deep_sealed[@]}")" "$(median "${deep_plain[@]}")" "<=1.20"
row "drill --backup FILE --sandbox" "$(median "${drill_sealed[@]}")" "$(median "${drill_plain[@]}")" ""
echo "sizes: plain $(stat -c %s "$plain_dump") B, encrypted $(stat -c %s "$sealed_dump") B"
