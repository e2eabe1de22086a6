#!/usr/bin/env bash
# The reliability campaigns of docs/reliability.md, against a throwaway
# PostgreSQL cluster and real backups. Each prints its figure and fails
# (exit 1) when its goal is missed.
#   crash       N SIGKILLs of `pgward run` at random moments; after each, every
#               .dump passes verify --deep against its manifest, none lacks a
#               manifest, and the number of good dumps never falls below the
#               number before the crash
#   corruption  N damaged copies of a real archive (bit flips, truncations,
#               zeroed 4 KiB pages): detection by verify --deep with and without
#               the manifest, and by pg_restore --list and -f /dev/null.
#   soak        N service cycles with faults at random (server stopped and
#               started, pg_dump killed, the directory read-only): retention
#               exact, no .tmp, no leftover child, fds and RSS steady.
#               (or the retention count, when a prune was due).
# Usage: tests/campaigns/campaigns.sh PGWARD {short|full} [crash|corruption|soak]...
# `short` runs in `make test`; `full` (200 / 1,000 / 1,000) in `make torture`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
pgward=$(realpath "$1")
size=$2
shift 2
campaigns=("$@")
[[ ${#campaigns[@]} -gt 0 ]] || campaigns=(crash corruption soak)
case $size in
  short) crash_n=${CRASH_N:-12} corrupt_n=${CORRUPT_N:-150} soak_n=${SOAK_N:-40} soak_early=10 ;;
  full) crash_n=${CRASH_N:-200} corrupt_n=${CORRUPT_N:-1000} soak_n=${SOAK_N:-1000} soak_early=100 ;;
  *) echo "campaigns: size must be short or full, not '$size'" >&2; exit 2 ;;
esac
seed=${CAMPAIGN_SEED:-$RANDOM}
RANDOM=$seed
echo "campaigns: $size, seed $seed (CAMPAIGN_SEED=$seed repeats the choices)"

source "$repo/scripts/lib/throwaway-pg.sh"
throwaway_pg_start
# Whatever happens, no pgward this script started outlives it.
started_pids=()
campaign_cleanup() {
  local pid
  for pid in "${started_pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  throwaway_pg_stop
}
trap campaign_cleanup EXIT
export PATH="$TPG_BIN:$PATH" POSTGRES_DB=camp PGPASSWORD=$TPG_PASSWORD
work=$TPG_DIR/work
mkdir -p "$work"
chmod 755 "$work"
tpsql postgres -c 'CREATE DATABASE camp'
tpsql camp -c "CREATE TABLE accounts(id int PRIMARY KEY, owner text, balance numeric);
  INSERT INTO accounts SELECT g, md5(g::text), g * 1.5 FROM generate_series(1, 20000) g;
  CREATE TABLE events(id bigint, at timestamptz, payload text);
  INSERT INTO events SELECT g, now() - g * interval '1 minute', md5(random()::text) || md5(random()::text)
    FROM generate_series(1, 150000) g;"
tpsql postgres -c 'CREATE DATABASE soak'
tpsql soak -c "CREATE TABLE items(id int PRIMARY KEY, name text);
  INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 5000) g;"

failed=0
fail() {
  echo "FAIL: $*" >&2
  failed=1
}
# A random integer in [0, n).
rand() { echo $(((RANDOM << 15 | RANDOM) % $1)); }

# pgward as the user that owns the work dir: as root, the postgres user, so a
# read-only directory means something. An array, not a function, so that `$!`
# of a background run is pgward itself.
as_owner=()
if [[ $(id -u) == 0 ]]; then
  as_owner=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi
[[ $(id -u) == 0 ]] && chown postgres "$work"

good_dumps() { # prints the number of .dump files that pass verify --deep with their manifest
  local dir=$1 n=0 f
  for f in "$dir"/*.dump; do
    [[ -e $f ]] || continue
    if [[ ! -e ${f%.dump}.json ]]; then
      echo "no manifest: $f" >&2
      continue
    fi
    if "$pgward" verify --deep "$f" >/dev/null 2>&1; then
      n=$((n + 1))
    else
      echo "fails verify: $f" >&2
    fi
  done
  echo "$n"
}

crash_campaign() {
  local dir=$work/crash survived=0 partial=0 orphans=0 i pid before after
  "${as_owner[@]}" mkdir -p "$dir"
  echo "crash: $crash_n SIGKILLs of pgward run (interval 1 s, retention 3)"
  for ((i = 1; i <= crash_n; i++)); do
    before=$(good_dumps "$dir" 2>/dev/null)
    POSTGRES_BACKUP_DIR=$dir POSTGRES_BACKUP_INTERVAL_SECONDS=1 POSTGRES_BACKUP_RETENTION_COUNT=3 \
      POSTGRES_BACKUP_RETRY_SECONDS=1 "${as_owner[@]}" "$pgward" run >/dev/null 2>"$work/crash.err" &
    pid=$!
    started_pids+=("$pid")
    sleep "$(awk -v r="$(rand 2500)" 'BEGIN {printf "%.3f", 0.05 + r / 1000}')"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sleep 0.1 # pg_dump sees the broken pipe and exits
    local bad=0 f
    for f in "$dir"/*.dump; do
      [[ -e $f ]] || continue
      if [[ ! -e ${f%.dump}.json ]] || ! "$pgward" verify --deep "$f" >/dev/null 2>&1; then
        bad=$((bad + 1))
        echo "crash $i: partial or unproven dump $f" >&2
      fi
    done
    after=$(good_dumps "$dir" 2>/dev/null)
    orphans=$((orphans + $(find "$dir" -name '*.tmp' | wc -l)))
    partial=$((partial + bad))
    # Retention may finish between the count and the kill (4 -> 3 is a prune,
    # not a loss): the floor is the smaller of the count before and the retention.
    if ((bad == 0 && after >= (before < 3 ? before : 3))); then
      survived=$((survived + 1))
    else
      echo "crash $i: $bad partial, good dumps $before -> $after" >&2
    fi
  done
  # The next run removes what the kills left.
  POSTGRES_BACKUP_DIR=$dir "${as_owner[@]}" "$pgward" backup --retention 3 >/dev/null
  local left
  left=$(find "$dir" -name '*.tmp' | wc -l)
  echo "crash: survived $survived / $crash_n, partial dumps found $partial, orphan temp files seen $orphans (left after the next run: $left), good dumps at the end $(good_dumps "$dir")"
  ((survived == crash_n && partial == 0 && left == 0)) || fail "crash campaign"
}

corruption_campaign() {
  local src=$work/corrupt-src with=$work/corrupt-with without=$work/corrupt-without
  mkdir -p "$src" "$with" "$without"
  POSTGRES_BACKUP_DIR=$src "$pgward" backup >/dev/null
  local archive manifest name size
  archive=$(ls "$src"/*.dump)
  manifest=${archive%.dump}.json
  name=$(basename "$archive")
  size=$(stat -c %s "$archive")
  cp "$manifest" "$with/"
  echo "corruption: $corrupt_n damaged copies of a $size-byte archive (gzip, $(grep -c '"name"' "$manifest") tables)"
  declare -A caught=() tried=()
  local kinds=(flip truncate zero-page) i kind copy off orig
  for ((i = 1; i <= corrupt_n; i++)); do
    kind=${kinds[$((i % 3))]}
    copy=$with/$name
    cp "$archive" "$copy"
    case $kind in
      flip)
        off=$(rand "$size")
        orig=$(od -An -tu1 -j "$off" -N1 "$archive" | tr -d ' ')
        printf "\\$(printf '%03o' $((orig ^ (1 << $(rand 8)))))" |
          dd of="$copy" bs=1 seek="$off" conv=notrunc status=none
        ;;
      truncate) truncate -s "$(rand "$size")" "$copy" ;;
      zero-page)
        off=$(($(rand $(((size + 4095) / 4096))) * 4096))
        head -c "$((size - off < 4096 ? size - off : 4096))" /dev/zero |
          dd of="$copy" bs=4096 seek="$off" oflag=seek_bytes conv=notrunc status=none
        ;;
    esac
    if cmp -s "$archive" "$copy"; then
      i=$((i - 1)) # a page that was zero already: not a damaged copy
      continue
    fi
    cp "$copy" "$without/$name"
    tried[$kind]=$((${tried[$kind]:-0} + 1))
    "$pgward" verify --deep "$copy" >/dev/null 2>&1 || caught[with,$kind]=$((${caught[with,$kind]:-0} + 1))
    "$pgward" verify --deep "$without/$name" >/dev/null 2>&1 || caught[without,$kind]=$((${caught[without,$kind]:-0} + 1))
    pg_restore --list "$copy" >/dev/null 2>&1 || caught[list,$kind]=$((${caught[list,$kind]:-0} + 1))
    pg_restore -f /dev/null "$copy" >/dev/null 2>&1 || caught[restore,$kind]=$((${caught[restore,$kind]:-0} + 1))
  done
  local tool total
  printf '| damage | copies | verify --deep (manifest) | verify --deep (no manifest) | pg_restore --list | pg_restore -f /dev/null |\n|---|---|---|---|---|---|\n'
  for kind in "${kinds[@]}" all; do
    local row="| $kind |" n
    if [[ $kind == all ]]; then
      n=$corrupt_n
    else
      n=${tried[$kind]:-0}
    fi
    row+=" $n |"
    for tool in with without list restore; do
      if [[ $kind == all ]]; then
        total=$((${caught[$tool,flip]:-0} + ${caught[$tool,truncate]:-0} + ${caught[$tool,zero-page]:-0}))
      else
        total=${caught[$tool,$kind]:-0}
      fi
      row+=" $(awk -v c="$total" -v n="$n" 'BEGIN {printf "%d (%.1f%%)", c, n ? 100 * c / n : 0}') |"
    done
    echo "$row"
  done
  local with_all=$((${caught[with,flip]:-0} + ${caught[with,truncate]:-0} + ${caught[with,zero-page]:-0}))
  echo "corruption: verify --deep with the manifest caught $with_all / $corrupt_n"
  ((with_all == corrupt_n)) || fail "corruption campaign: verify --deep with the manifest missed $((corrupt_n - with_all))"
}

soak_campaign() {
  local dir=$work/soak state pid
  "${as_owner[@]}" mkdir -p "$dir"
  state=$dir/.pgward-soak.state.json
  echo "soak: $soak_n service cycles (interval 1 s, retention 3) with faults at random"
  POSTGRES_DB=soak POSTGRES_BACKUP_DIR=$dir POSTGRES_BACKUP_INTERVAL_SECONDS=1 \
    POSTGRES_BACKUP_RETENTION_COUNT=3 POSTGRES_BACKUP_RETRY_SECONDS=1 POSTGRES_BACKUP_RETRY_MAX_SECONDS=1 \
    "${as_owner[@]}" "$pgward" run >"$work/soak.out" 2>&1 &
  pid=$!
  started_pids+=("$pid")
  cycles() {
    if [[ -e $state ]]; then
      grep -oE '"(successes|failures)_total": [0-9]+' "$state" | awk '{s += $2} END {print s + 0}'
    else
      echo 0
    fi
  }
  # fds and RSS between cycles (a cycle in flight holds its pipes and connection).
  sample() {
    local tries=0 fds rss
    while ((tries++ < 200)); do
      if grep -q '"running": false' "$state" 2>/dev/null; then
        fds=$(ls /proc/"$pid"/fd | wc -l)
        rss=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)
        if grep -q '"running": false' "$state"; then
          echo "$fds $rss"
          return
        fi
      fi
      sleep 0.01
    done
    echo "0 0"
  }
  local early="" faults=0 stops=0 kills=0 readonly_=0 c last=-1 stuck=0
  while c=$(cycles) && ((c < soak_n)); do
    if [[ -z $early ]] && ((c >= soak_early)); then
      early=$(sample)
    fi
    if ((c == last)); then
      stuck=$((stuck + 1))
      ((stuck < 600)) || { fail "soak: no cycle for 60 s at cycle $c"; break; }
    else
      stuck=0 last=$c
    fi
    kill -0 "$pid" 2>/dev/null || { fail "soak: the service died at cycle $c"; break; }
    if (($(rand 100) == 0)); then # about one fault every 10 s
      faults=$((faults + 1))
      case $(rand 3) in
        0) stops=$((stops + 1))
           _tpg_as_server "$TPG_BIN/pg_ctl" -D "$TPG_DIR/data" -m fast stop >/dev/null
           sleep 2
           _tpg_as_server "$TPG_BIN/pg_ctl" -D "$TPG_DIR/data" -l "$TPG_DIR/server.log" -w \
             -o "-c listen_addresses= -k $TPG_DIR/sock" start >/dev/null ;;
        1) kills=$((kills + 1))
           pkill -KILL -P "$pid" -x pg_dump 2>/dev/null || true ;;
        2) readonly_=$((readonly_ + 1))
           chmod 500 "$dir"
           sleep 2
           chmod 700 "$dir" ;;
      esac
    fi
    sleep 0.1
  done
  local late zombies
  late=$(sample)
  zombies=$(ps --ppid "$pid" -o stat= 2>/dev/null | grep -c '^Z' || true)
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  local dumps tmps leftover
  dumps=$(find "$dir" -name '*.dump' | wc -l)
  tmps=$(find "$dir" -name '*.tmp' | wc -l)
  leftover=$(pgrep -f "pg_dump.*$TPG_DIR" | wc -l || true)
  read -r fd_early rss_early <<<"${early:-0 0}"
  read -r fd_late rss_late <<<"$late"
  echo "soak: $(cycles) cycles ($(grep -oE '"successes_total": [0-9]+' "$state" | awk '{print $2}') ok), $faults faults ($stops server stops, $kills pg_dump kills, $readonly_ read-only spells); exit $rc after SIGTERM"
  echo "soak: at cycle $soak_early: $fd_early fds, $rss_early KiB RSS; at cycle $soak_n: $fd_late fds, $rss_late KiB RSS"
  echo "soak: $dumps dumps (retention 3), $tmps temp files, $zombies zombies, $leftover leftover pg_dump; good dumps $(POSTGRES_DB=soak good_dumps "$dir")"
  ((rc == 0)) || fail "soak: exit $rc after SIGTERM"
  ((dumps == 3)) || fail "soak: $dumps dumps, retention is 3"
  ((tmps == 0 && zombies == 0 && leftover == 0)) || fail "soak: leftovers"
  ((fd_late == fd_early)) || fail "soak: fds $fd_early -> $fd_late"
  # RSS within 10% (the allocator's arenas move a little; a leak grows without bound).
  ((rss_late * 10 <= rss_early * 11)) || fail "soak: RSS $rss_early -> $rss_late KiB"
}

for campaign in "${campaigns[@]}"; do
  case $campaign in
    crash) crash_campaign ;;
    corruption) corruption_campaign ;;
    soak) soak_campaign ;;
    *) echo "campaigns: unknown campaign '$campaign'" >&2; exit 2 ;;
  esac
done
exit "$failed"
