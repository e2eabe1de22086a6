#!/usr/bin/env bash
# Measures `pgward run` idle between backups: RSS and CPU time over a window
# (default 60 s) after the first backup, read from /proc. Usage:
#   bench/idle_service.sh [build/pgward] [seconds]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pgward=$(realpath "${1:-$here/build/pgward}")
window=${2:-60}
source "$here/scripts/lib/throwaway-pg.sh"
throwaway_pg_start
tpsql postgres -c 'CREATE DATABASE idle'
tpsql idle -c 'CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g'
export POSTGRES_DB=idle POSTGRES_BACKUP_DIR="$TPG_DIR/backups" POSTGRES_BACKUP_INTERVAL_SECONDS=86400
"$pgward" run > "$TPG_DIR/service.log" &
pid=$!
until grep -q 'backup end' "$TPG_DIR/service.log" 2>/dev/null; do sleep 0.2; done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu)
sleep "$window"
after=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"
wait "$pid"
awk -v b="$before" -v a="$after" -v t="$ticks" -v w="$window" -v rss="$rss" -v hwm="$hwm" 'BEGIN {
  cpu = (a - b) / t
  printf "idle pgward run: window %d s, CPU %.3f s (%.2f s per hour), RSS %d KiB (peak %d KiB)\n",
         w, cpu, cpu * 3600 / w, rss, hwm
}'
