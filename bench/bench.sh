#!/usr/bin/env bash
# `make bench`: pgward against what an operator would use instead, each pair
# run interleaved BENCH_RUNS times (default 3) in this one invocation, medians
# and ratios printed as a table with the machine on top:
#   1. pgward backup (manifest, row counts, fp1, verify-before-rename) vs pg_dump -Fc -f
#   2. pgward verify --deep vs pg_restore -f /dev/null, and the inflate limit
#      (every data block decompressed and discarded, nothing else)
#   3. pgward backup + drill --backup latest --sandbox vs the seed's shell drill
#      (bench/seed_drill.sh: pg_dump, dropdb, createdb, pg_restore, psql counts)
#   4. pgward list and prune --dry-run on 10,000 dump files
#   5. fp1 of a live table vs psql -c "copy t to stdout" | sha256sum
#   6. the idle service: RSS and CPU seconds per hour (bench/idle_service.sh)
#   7. compression with a 17 client (see below)
# Data: pgbench -i -s BENCH_SCALE (default 30) plus BENCH_TEXT_ROWS (default 2M)
# rows of random text, floats and timestamps (pgbench's tables compress 50:1
# and would hide the inflate cost).
# BENCH_ONLY=compression: only section 7, on the same data.
# Usage: bench/bench.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$repo/build}")
pgward=$build/pgward
tools=$build/bench/bench_tools
scale=${BENCH_SCALE:-30}
text_rows=${BENCH_TEXT_ROWS:-2000000}
runs=${BENCH_RUNS:-3}
source "$repo/scripts/lib/throwaway-pg.sh"
TPG_SERVER_OPTIONS="-c shared_buffers=256MB -c max_wal_size=4GB" throwaway_pg_start
work=$TPG_DIR/work
mkdir -p "$work"
export POSTGRES_DB=bench POSTGRES_BACKUP_DIR=$work/backups PGPASSWORD=$TPG_PASSWORD
export PGHOST=$TPG_DIR/sock PGUSER=postgres PATH="$TPG_BIN:$PATH"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "postgres: $("$TPG_BIN/postgres" --version), $(pg_dump --version), $("$pgward" version | head -n 1)"
echo "data: pgbench scale $scale + $text_rows rows of random text (creating...)"
tpsql postgres -c 'CREATE DATABASE bench'
"$TPG_BIN/pgbench" -q -i -s "$scale" -h "$TPG_DIR/sock" -U postgres bench >/dev/null 2>&1
tpsql bench -c "CREATE TABLE random_text AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS a,
  md5(random()::text) AS b, random() * 1e6 AS f, now() - random() * interval '1000 days' AS ts
  FROM generate_series(1, $text_rows) g"
tpsql bench -c 'VACUUM ANALYZE' >/dev/null
echo "data: $(tpsql bench -Atc "SELECT pg_size_pretty(pg_database_size('bench'))")"

# Seconds one run of a command took; a run that fails marks the bench failed
# (a failed run would look fast).
seconds() {
  local s=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/last.err" || { echo "bench: failed: $*: $(tail -n 1 "$work/last.err")" >&2; touch "$work/failed"; }
  awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
conn="host=$TPG_DIR/sock user=postgres dbname=bench"

# BENCH_ONLY=compression runs only section 7 (on the same data).
only=${BENCH_ONLY:-all}
if [[ $only != compression ]]; then
declare -a backup dump deep restore inflate zinflate fp copy
for ((i = 0; i < runs; i++)); do
  rm -rf "$work/backups" "$work/plain.dump"
  backup+=("$(seconds "$pgward" backup)")
  dump+=("$(seconds pg_dump -Fc -d "$conn" -f "$work/plain.dump")")
done
archive=$(ls "$work"/backups/*.dump | head -n 1)
for ((i = 0; i < runs; i++)); do
  deep+=("$(seconds "$pgward" verify --deep "$archive")")
  restore+=("$(seconds pg_restore -f /dev/null "$archive")")
  inflate+=("$(seconds "$tools" inflate "$archive")")
  zinflate+=("$(seconds "$tools" inflate-zlib "$archive")")
  fp+=("$(seconds "$tools" fingerprint "$conn" public random_text)")
  copy+=("$(seconds bash -c "psql -X -d '$conn' -c 'copy random_text to stdout' | sha256sum")")
done
"$pgward" verify --deep "$archive" | sed 's/^/verify: /'

declare -a drill seed
mkdir -p "$work/drill" "$work/seed"
chmod 777 "$work/drill"
for ((i = 0; i < runs; i++)); do
  rm -rf "$work/drill/backups" "$work/drill/reports"
  drill+=("$(seconds env POSTGRES_BACKUP_DIR="$work/drill/backups" TMPDIR="$work/drill" bash -c \
    "'$pgward' backup && '$pgward' drill --backup latest --sandbox --report-dir '$work/drill/reports'")")
  seed+=("$(seconds "$repo/bench/seed_drill.sh" bench "$work/seed")")
done
report=$(ls "$work"/drill/reports/*.json 2>/dev/null | head -n 1 || true)
grep -q '"restore_success": true' "$report" || { echo "bench: the sandbox drill did not pass ($report)" >&2; exit 1; }

# 10,000 backups of one database (each with a manifest) for list and prune.
many=$work/many
mkdir -p "$many"
manifest=${archive%.dump}.json
# Each a 5-byte dump with a manifest that matches it: list reports them all size-ok.
manifest_text=$(sed -E 's/"size_bytes": [0-9]+/"size_bytes": 5/; s/"file": "[^"]*"/"file": "@FILE@"/' "$manifest")
base=946684800 # 2000-01-01T00:00:00Z
for ((i = 0; i < 10000; i++)); do
  TZ=UTC printf -v stem 'bench_%(%Y%m%dT%H%M%SZ)T' "$((base + i * 3600))"
  printf 'PGDMP' >"$many/$stem.dump"
  printf '%s\n' "${manifest_text/@FILE@/$stem.dump}" >"$many/$stem.json"
done
declare -a list prune
for ((i = 0; i < runs; i++)); do
  list+=("$(seconds "$pgward" list --dir "$many")")
  prune+=("$(seconds "$pgward" prune --dir "$many" --keep 7 --dry-run)")
done
[[ $("$pgward" list --dir "$many" | grep -c '^bench_') == 10000 ]] || { echo "bench: list did not show 10,000 backups" >&2; exit 1; }

fi
# 7. Compression with a 17 client (scripts/pg-clients.sh): pgward backup (auto:
#    zstd:1) vs pg_dump -Fc (gzip) and vs pg_dump -Fc --compress=none (the
#    floor: COPY at the speed the server sends it); verify --deep of the zstd
#    archive vs pg_restore -f /dev/null of it; the sandbox drill of a zstd vs a
#    gzip backup; and each method's time and size, the measurement behind auto.
c17=$("$repo/scripts/pg-clients.sh" path client-17 2>"$work/c17.err" || true)
declare -a zbackup zdefault znone zdeep zrestore zinflate zdrill gdrill
declare -A level_time level_size
levels=(gzip zstd:1 zstd:3 lz4 none)
if [[ -n $c17 ]]; then
  zdir=$work/z
  mkdir -p "$zdir"
  chmod 777 "$zdir"
  for ((i = 0; i < runs; i++)); do
    rm -rf "$zdir/backups" "$zdir"/*.dump
    zbackup+=("$(seconds "$pgward" backup --pg-bin "$c17" --dir "$zdir/backups")")
    zdefault+=("$(seconds "$c17/pg_dump" -Fc -d "$conn" -f "$zdir/default.dump")")
    znone+=("$(seconds "$c17/pg_dump" -Fc --compress=none -d "$conn" -f "$zdir/none.dump")")
  done
  zarchive=$(ls "$zdir"/backups/*.dump | head -n 1)
  "$pgward" backup --pg-bin "$c17" --compress gzip --dir "$zdir/gzip-backups" >/dev/null 2>&1
  garchive=$(ls "$zdir"/gzip-backups/*.dump | head -n 1)
  for ((i = 0; i < runs; i++)); do
    zdeep+=("$(seconds "$pgward" verify --deep --pg-bin "$c17" "$zarchive")")
    zrestore+=("$(seconds "$c17/pg_restore" -f /dev/null "$zarchive")")
    zinflate+=("$(seconds "$tools" inflate "$zarchive")")
    rm -rf "$zdir/reports"
    zdrill+=("$(seconds env TMPDIR="$zdir" "$pgward" drill --backup "$zarchive" --sandbox --pg-bin "$c17" --report-dir "$zdir/reports")")
    gdrill+=("$(seconds env TMPDIR="$zdir" "$pgward" drill --backup "$garchive" --sandbox --pg-bin "$c17" --report-dir "$zdir/reports")")
  done
  for level in "${levels[@]}"; do
    declare -a t=()
    for ((i = 0; i < runs; i++)); do
      t+=("$(seconds "$c17/pg_dump" -Fc "--compress=$level" -d "$conn" -f "$zdir/level.dump")")
    done
    level_time[$level]=$(median "${t[@]}")
    level_size[$level]=$(stat -c %s "$zdir/level.dump")
  done
fi

[[ ! -e $work/failed ]] || { echo "bench: a measured run failed (above); no figures" >&2; exit 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
if [[ $only != compression ]]; then
mb=$(stat -c %s "$archive")
b=$(median "${backup[@]}") d=$(median "${dump[@]}") v=$(median "${deep[@]}") r=$(median "${restore[@]}")
f=$(median "${inflate[@]}") z=$(median "${zinflate[@]}") p=$(median "${fp[@]}") c=$(median "${copy[@]}")
dr=$(median "${drill[@]}") sd=$(median "${seed[@]}") ls_=$(median "${list[@]}") pr=$(median "${prune[@]}")
ms() { awk -v s="$1" 'BEGIN {printf "%.0f ms", s * 1000}'; }
printf '\n| pair (median of %d) | pgward | baseline | ratio | goal |\n|---|---|---|---|---|\n' "$runs"
printf '| backup vs pg_dump -Fc -f | %.2f s | %.2f s | %s | <= 1.25 |\n' "$b" "$d" "$(ratio "$b" "$d")"
printf '| verify --deep vs pg_restore -f /dev/null | %.2f s | %.2f s | %s | <= 0.50 |\n' "$v" "$r" "$(ratio "$v" "$r")"
printf '| verify --deep vs the inflate limit | %.2f s | %.2f s | %s (verify runs at %s%% of it) | |\n' \
  "$v" "$f" "$(ratio "$v" "$f")" "$(awk -v a="$f" -v b="$v" 'BEGIN {printf "%.0f", 100 * a / b}')"
printf '| inflate limit: ISA-L vs zlib | %.2f s | %.2f s | %s | kept if < 1 |\n' "$f" "$z" "$(ratio "$f" "$z")"
printf '| backup + drill --sandbox vs seed_drill.sh | %.2f s | %.2f s | %s | <= 1.00 |\n' "$dr" "$sd" "$(ratio "$dr" "$sd")"
printf '| list, 10,000 dumps | %s | | | <= 100 ms |\n' "$(ms "$ls_")"
printf '| prune --dry-run, 10,000 dumps | %s | | | <= 100 ms |\n' "$(ms "$pr")"
printf '| fp1 of random_text vs psql copy \\| sha256sum | %.2f s | %.2f s | %s | |\n' "$p" "$c" "$(ratio "$p" "$c")"
printf '\narchive: %s bytes (gzip, pg_dump %s)\n' "$mb" "$(pg_dump --version | awk '{print $3}')"

fi
if [[ -n $c17 ]]; then
  zb=$(median "${zbackup[@]}") zd=$(median "${zdefault[@]}") zn=$(median "${znone[@]}")
  zv=$(median "${zdeep[@]}") zr=$(median "${zrestore[@]}") zdr=$(median "${zdrill[@]}") gdr=$(median "${gdrill[@]}")
  zi=$(median "${zinflate[@]}")
  printf '\nwith %s (median of %d):\n\n' "$("$c17/pg_dump" --version)" "$runs"
  printf '| pair | pgward | baseline | ratio | goal |\n|---|---|---|---|---|\n'
  printf '| backup (auto: zstd:1) vs pg_dump -Fc (gzip) | %.2f s | %.2f s | %s | <= 0.40 |\n' "$zb" "$zd" "$(ratio "$zb" "$zd")"
  printf '| backup (auto) vs pg_dump -Fc --compress=none (the floor) | %.2f s | %.2f s | %s | <= 1.20 |\n' "$zb" "$zn" "$(ratio "$zb" "$zn")"
  printf '| archive size: pgward (zstd:1) vs pg_dump -Fc (gzip) | %s B | %s B | %s | <= 1.00 |\n' \
    "$(stat -c %s "$zarchive")" "$(stat -c %s "$zdir/default.dump")" "$(ratio "$(stat -c %s "$zarchive")" "$(stat -c %s "$zdir/default.dump")")"
  printf '| verify --deep (zstd) vs pg_restore -f /dev/null (same archive) | %.2f s | %.2f s | %s | <= 0.50 |\n' "$zv" "$zr" "$(ratio "$zv" "$zr")"
  printf '| verify --deep (zstd) vs the inflate limit (one thread: read and decompress, nothing else) | %.2f s | %.2f s | %s | |\n' "$zv" "$zi" "$(ratio "$zv" "$zi")"
  printf '| inflate limit (zstd) vs pg_restore -f /dev/null | %.2f s | %.2f s | %s | |\n' "$zi" "$zr" "$(ratio "$zi" "$zr")"
  printf '| backup (auto) vs pg_dump -Fc --compress=zstd:1 alone (what the proof adds) | %.2f s | %.2f s | %s | |\n' "$zb" "${level_time[zstd:1]}" "$(ratio "$zb" "${level_time[zstd:1]}")"
  printf '| drill --sandbox: zstd backup vs gzip backup | %.2f s | %.2f s | %s | |\n' "$zdr" "$gdr" "$(ratio "$zdr" "$gdr")"
  printf '\n| pg_dump 17 -Fc --compress= | time | archive | vs gzip time | vs gzip size |\n|---|---|---|---|---|\n'
  for level in "${levels[@]}"; do
    printf '| %s | %.2f s | %s B | %s | %s |\n' "$level" "${level_time[$level]}" "${level_size[$level]}" \
      "$(ratio "${level_time[$level]}" "${level_time[gzip]}")" "$(ratio "${level_size[$level]}" "${level_size[gzip]}")"
  done
else
  echo
  echo "bench: SKIPPED the compression rows: no client 17 ($(tail -n 1 "$work/c17.err"))"
fi
if [[ $only != compression ]]; then
echo
"$repo/bench/idle_service.sh" "$pgward" "${BENCH_IDLE_SECONDS:-60}"
fi
