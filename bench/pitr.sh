#!/usr/bin/env bash
# `make bench`, point-in-time recovery (issue 22), in this one invocation:
#   1. what streaming the WAL costs the server: pgbench tps while
#      `pgward wal stream` runs vs without it, interleaved BENCH_RUNS times
#      (default 6; the order rotates), medians and their ratio (goal: at
#      least 0.97); and, as a third arm, pg_receivewal run alone with
#      pgward's flags on a slot of its own: the floor any streaming from
#      PostgreSQL's own tools pays, so the ratio pgward / pg_receivewal is
#      what pgward adds;
#   2. recovery speed: the WAL of those runs replayed by a server started on
#      `pgward restore --pitr` (segments per second, from start to promotion)
#      vs pg_waldump reading the same segments (its read rate, the bound).
# Data: pgbench -i -s BENCH_SCALE (default 10); each pgbench run is
# BENCH_SECONDS (default 15) with BENCH_CLIENTS (default 4) clients.
# Usage: bench/pitr.sh [BUILD_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$repo/build}")
pgward=$build/pgward
scale=${BENCH_SCALE:-10}
duration=${BENCH_SECONDS:-15}
runs=${BENCH_RUNS:-6}
clients=${BENCH_CLIENTS:-4}
source "$repo/scripts/lib/throwaway-pg.sh"
TPG_SERVER_OPTIONS="-c shared_buffers=256MB -c max_wal_size=4GB" throwaway_pg_start
work=$TPG_DIR/work
mkdir -p "$work"
chmod 777 "$work"
export POSTGRES_DB=bench POSTGRES_BACKUP_DIR=$work/backups PGPASSWORD=$TPG_PASSWORD
export PGHOST=$TPG_DIR/sock PGUSER=postgres PATH="$TPG_BIN:$PATH"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
echo "postgres: $("$TPG_BIN/postgres" --version), $("$pgward" version | head -n 1)"
tpsql postgres -c 'CREATE DATABASE bench'
"$TPG_BIN/pgbench" -q -i -s "$scale" -h "$TPG_DIR/sock" -U postgres bench >/dev/null 2>&1
echo "data: pgbench scale $scale; runs of ${duration} s, $clients clients, fsync on"

tps() {
  # Each run starts just after a checkpoint: the full-page writes a run pays
  # for do not depend on where the last checkpoint fell. And with nothing left
  # to write back: a streamer that just caught up on a backlog leaves
  # hundreds of MB the kernel would write during the run, slowing every
  # commit's fsync in that arm only.
  sync
  tpsql postgres -qc 'CHECKPOINT'
  "$TPG_BIN/pgbench" -n -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$duration" -h "$TPG_DIR/sock" -U postgres bench 2>&1 |
    awk '/^tps = / {printf "%.1f", $3}'
}
median() {
  printf '%s\n' "$@" | sort -n |
    awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.1f", (a[NR/2] + a[NR/2+1]) / 2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

# Waits until the streamer of application_name $1 has everything the server
# has written.
caught_up() {
  local lsn
  lsn=$(tpsql postgres -Atc 'SELECT pg_current_wal_lsn()')
  for _ in $(seq 600); do
    [[ $(tpsql postgres -Atc "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$1' AND write_lsn >= '$lsn'") == 1 ]] && return
    sleep 0.1
  done
  echo "bench: the streamer did not catch up in 60 s" >&2
  exit 1
}

streamer=
stop_streamer() {
  if [[ -n $streamer ]]; then
    kill -TERM "$streamer" 2>/dev/null || true
    wait "$streamer" 2>/dev/null || true
    streamer=
  fi
}
trap 'stop_streamer; throwaway_pg_stop' EXIT

"$pgward" wal stream >"$work/stream.log" 2>&1 &
streamer=$!
caught_up pgward_wal
"$pgward" basebackup >/dev/null 2>"$work/base.log"
stop_streamer

declare -a with without alone
# CPU time (clock ticks) of a process, and of the whole machine.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }
percent() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f%%", 100 * a / b}'; }
cpu_line=
alone_cpu_line=
run_with() {
  # The slot kept the last run's WAL: caught up first, so the run measures
  # streaming as it goes, not a backlog.
  local log_from
  log_from=$(($(wc -l <"$work/stream.log") + 1))
  "$pgward" wal stream >>"$work/stream.log" 2>&1 &
  streamer=$!
  caught_up pgward_wal
  # pgward checks each segment it completes, in order: the backlog's before
  # the run.
  local newest
  newest=$(ls "$work"/backups/wal/*/ | grep -E '^[0-9A-F]{24}$' | tail -n 1)
  for _ in $(seq 100); do
    tail -n +"$log_from" "$work/stream.log" | grep -q "msg=\"WAL segment archived\" segment=$newest" && break
    sleep 0.1
  done
  # What the streaming costs, by process, over the run: the server's
  # walsender, pg_receivewal, and pgward itself.
  local receiver sender t0 r0 s0 p0
  receiver=$(pgrep -P "$streamer" pg_receivewal | head -n 1)
  sender=$(pgrep -f 'postgres: walsender' | head -n 1)
  t0=$(machine_ticks) r0=$(ticks "$receiver") s0=$(ticks "$sender") p0=$(ticks "$streamer")
  with+=("$(tps)")
  local total=$(($(machine_ticks) - t0))
  cpu_line+="$(percent $(($(ticks "$sender") - s0)) $total)/$(percent $(($(ticks "$receiver") - r0)) $total)/$(percent $(($(ticks "$streamer") - p0)) $total) "
  stop_streamer
}
# pg_receivewal alone, with the flags pgward gives it, into a folder and on
# a slot of its own made for the run (from the server's position now): the
# archive pgward keeps is not touched.
run_alone() {
  rm -rf "$work/alone"
  mkdir -p "$work/alone"
  tpsql postgres -qAtc "SELECT 1 FROM pg_create_physical_replication_slot('bench_alone', true)" >/dev/null
  PGAPPNAME=bench_alone "$TPG_BIN/pg_receivewal" --directory="$work/alone" --slot=bench_alone \
    --no-loop --verbose --status-interval=1 -h "$TPG_DIR/sock" -U postgres 2>>"$work/alone.log" &
  streamer=$!
  caught_up bench_alone
  local sender t0 r0 s0
  sender=$(pgrep -f 'postgres: walsender' | head -n 1)
  t0=$(machine_ticks) r0=$(ticks "$streamer") s0=$(ticks "$sender")
  alone+=("$(tps)")
  local total=$(($(machine_ticks) - t0))
  alone_cpu_line+="$(percent $(($(ticks "$sender") - s0)) $total)/$(percent $(($(ticks "$streamer") - r0)) $total) "
  stop_streamer
  for _ in $(seq 100); do
    [[ $(tpsql postgres -Atc "SELECT active FROM pg_replication_slots WHERE slot_name = 'bench_alone'") == f ]] && break
    sleep 0.1
  done
  tpsql postgres -qAtc "SELECT pg_drop_replication_slot('bench_alone')" >/dev/null
}
# How busy pgbench keeps the machine: its idle (and I/O wait) share.
idle_ticks() { awk '/^cpu / {print $5 + $6}' /proc/stat; }
idle_line=
run_without() {
  local t0 i0
  t0=$(machine_ticks) i0=$(idle_ticks)
  without+=("$(tps)")
  idle_line+="$(percent $(($(idle_ticks) - i0)) $(($(machine_ticks) - t0))) "
}
# The server slows as its tables grow and age over the runs: the order
# rotates (without, pgward, alone; pgward, alone, without; ...) so no arm
# always runs first or last.
arms=(run_without run_with run_alone)
for ((i = 0; i < runs; i++)); do
  for ((j = 0; j < 3; j++)); do
    "${arms[$(((i + j) % 3))]}"
  done
done
if grep -q 'level=error' "$work/stream.log"; then
  echo "bench: the streamer reported an error:" >&2
  grep 'level=error' "$work/stream.log" | head -n 3 >&2
  exit 1
fi

# Recovery: everything streamed since the base backup (the runs without the
# streamer left gaps the slot filled in: the server kept that WAL for it).
"$pgward" wal stream >>"$work/stream.log" 2>&1 &
streamer=$!
tpsql postgres -c 'SELECT pg_switch_wal()' >/dev/null
caught_up pgward_wal
stop_streamer
archive=$(ls -d "$work"/backups/wal/*)
first=$(ls "$archive" | grep -E '^[0-9A-F]{24}$' | head -n 1)
last=$(ls "$archive" | grep -E '^[0-9A-F]{24}$' | tail -n 1)
segments=$(ls "$archive" | grep -cE '^[0-9A-F]{24}$')
s=$(date +%s.%N)
"$TPG_BIN/pg_waldump" --stats -p "$archive" "$first" "$last" >/dev/null
waldump=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')

"$pgward" restore --pitr --pgdata "$work/recovered" >/dev/null 2>"$work/restore.log"
mkdir -p "$work/rsock"
chmod 777 "$work/rsock"
s=$(date +%s.%N)
_tpg_as_server "$TPG_BIN/pg_ctl" -D "$work/recovered" -l "$work/recovered.log" -w -t 3600 \
  -o "-c listen_addresses= -k $work/rsock -c port=5433 -c hot_standby=off" start >/dev/null
# pg_ctl returns once recovery runs; the replay ends at promotion.
for _ in $(seq 36000); do
  grep -q 'database system is ready to accept connections' "$work/recovered.log" && break
  sleep 0.1
done
replay=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN {printf "%.3f", b - a}')
_tpg_as_server "$TPG_BIN/pg_ctl" -D "$work/recovered" -m immediate stop >/dev/null
grep -q 'archive recovery complete' "$work/recovered.log" || {
  echo "bench: the recovered server did not finish its recovery; its log:" >&2
  tail -n 20 "$work/recovered.log" >&2
  exit 1
}

printf '\n%-52s %10s %10s %7s %6s\n' "point-in-time recovery ($runs runs, median)" "pgward" "baseline" "ratio" "goal"
printf '%-52s %10s %10s %6sx %6s\n' "pgbench tps while WAL streams (baseline: not)" \
  "$(median "${with[@]}")" "$(median "${without[@]}")" "$(ratio "$(median "${with[@]}")" "$(median "${without[@]}")")" ">=0.97"
printf '%-52s %10s %10s %6sx %6s\n' "  the same, pg_receivewal alone (baseline: not)" \
  "$(median "${alone[@]}")" "$(median "${without[@]}")" "$(ratio "$(median "${alone[@]}")" "$(median "${without[@]}")")" ""
printf '%-52s %10s %10s %6sx %6s\n' "  pgward vs pg_receivewal alone (what pgward adds)" \
  "$(median "${with[@]}")" "$(median "${alone[@]}")" "$(ratio "$(median "${with[@]}")" "$(median "${alone[@]}")")" ""
replay_rate=$(awk -v n="$segments" -v t="$replay" 'BEGIN {printf "%.1f", n / t}')
read_rate=$(awk -v n="$segments" -v t="$waldump" 'BEGIN {printf "%.1f", n / t}')
printf '%-52s %10s %10s %6sx %6s\n' "segments/s replayed (baseline: pg_waldump's read)" \
  "$replay_rate" "$read_rate" "$(ratio "$replay_rate" "$read_rate")" ""
echo "tps runs: pgward ${with[*]}; pg_receivewal alone ${alone[*]}; without ${without[*]}"
echo "CPU of the machine ($(nproc) cores) during each run with pgward, walsender/pg_receivewal/pgward: $cpu_line"
echo "CPU of the machine during each run of pg_receivewal alone, walsender/pg_receivewal: $alone_cpu_line"
echo "idle CPU of the machine (idle and I/O wait) during each run without streaming: $idle_line"
echo "recovery: $segments segments of 16 MiB ($first to $last) replayed in ${replay} s from start to promotion; pg_waldump --stats read them in ${waldump} s"
