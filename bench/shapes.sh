#!/usr/bin/env bash
# The shapes real databases come in (issue 17), pgward backup against
# pg_dump -Fc on each, interleaved BENCH_RUNS times (default 3) in this one
# invocation, medians and ratios printed, with pgward's peak RSS:
#   tenants  BENCH_TENANTS (default 1,000) schemas of 10 small tables each
#   blobs    BENCH_BLOBS (default 100,000) small large objects
#   big      one table of BENCH_BIG_GB (default 3) GB, far larger than the
#            2 x 128 MB of shared_buffers and work_mem the server gets
# and the server-side cost of the snapshot row counts (they scan every table
# a second time): the count's own time and buffer reads beside pg_dump's.
# Goals: pgward at most 1.3x pg_dump's time, at most 256 MB peak RSS.
# BENCH_SHAPES (default "tenants blobs big") picks shapes.
# Usage: bench/shapes.sh [BUILD_DIR]    (`make bench` runs it after bench.sh)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath "${1:-$repo/build}")
pgward=$build/pgward
runs=${BENCH_RUNS:-3}
tenants=${BENCH_TENANTS:-1000}
blobs=${BENCH_BLOBS:-100000}
big_gb=${BENCH_BIG_GB:-3}
shapes=${BENCH_SHAPES:-tenants blobs big}
has() { [[ " $shapes " == *" $1 "* ]]; }
source "$repo/scripts/lib/throwaway-pg.sh"
TPG_SERVER_OPTIONS="-c shared_buffers=128MB -c max_wal_size=8GB -c max_locks_per_transaction=256" \
  throwaway_pg_start
trap throwaway_pg_stop EXIT
work=$TPG_DIR/work
mkdir -p "$work"
export POSTGRES_BACKUP_DIR=$work/backups PGPASSWORD=$TPG_PASSWORD
export PGHOST=$TPG_DIR/sock PGUSER=postgres PATH="$TPG_BIN:$PATH"

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# "seconds max_rss_kib" of one run; a failed run fails the bench.
measure() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/last.err" ||
    { echo "shapes: failed: $*: $(tail -n 3 "$work/last.err")" >&2; exit 1; }
  cat "$work/time"
}

echo "shapes: creating $tenants x 10 tables, $blobs large objects, one ${big_gb} GB table..."
tpsql postgres -c 'CREATE DATABASE tenants' -c 'CREATE DATABASE blobs' -c 'CREATE DATABASE big'
has tenants && tpsql tenants -c "DO \$\$ BEGIN FOR t IN 1..$tenants LOOP
  EXECUTE format('CREATE SCHEMA tenant_%s', t);
  FOR k IN 1..10 LOOP
    EXECUTE format('CREATE TABLE tenant_%s.t%s(id int PRIMARY KEY, v text)', t, k);
    EXECUTE format('INSERT INTO tenant_%s.t%s SELECT g, md5(g::text) FROM generate_series(1, 20) g', t, k);
  END LOOP;
  IF t % 100 = 0 THEN COMMIT; END IF;
END LOOP; END \$\$"
has blobs && tpsql blobs -c "SELECT count(lo_from_bytea(0, convert_to(repeat(md5(g::text), 1 + g % 8), 'UTF8')))
  FROM generate_series(1, $blobs) g" >/dev/null
rows=$((big_gb * 1024 * 1024 * 1024 / 150))
has big && tpsql big -c "CREATE TABLE payload AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS a,
  md5(random()::text) AS b, random() * 1e6 AS f FROM generate_series(1, $rows) g"
tpsql postgres -c 'VACUUM ANALYZE' >/dev/null
for db in $shapes; do
  echo "shapes: $db: $(tpsql "$db" -Atc "SELECT pg_size_pretty(pg_database_size('$db'))")"
done

printf '\n| shape | pgward backup | pg_dump -Fc | ratio (goal <= 1.30) | pgward peak RSS (goal <= 256 MB) |\n|---|---|---|---|---|\n'
for db in $shapes; do
  declare -a ours=() theirs=() rss=()
  for ((i = 0; i < runs; i++)); do
    rm -rf "$work/backups" "$work/plain.dump"
    read -r s k < <(measure "$pgward" backup --dbname "$db")
    ours+=("$s") rss+=("$k")
    read -r s _ < <(measure pg_dump -Fc -f "$work/plain.dump" "$db")
    theirs+=("$s")
  done
  o=$(median "${ours[@]}") t=$(median "${theirs[@]}") r=$(median "${rss[@]}")
  printf '| %s | %.2f s | %.2f s | %s | %d MB |\n' "$db" "$o" "$t" "$(ratio "$o" "$t")" $((r / 1024))
done

# The proof's cost on the server: every table counted once more, in the
# dump's snapshot. Measured alone (one session, as pgward runs it, beside
# pg_dump's COPY of the same tables).
printf '\n| shape | snapshot counts alone | blocks read + hit by the counts | blocks read + hit by pg_dump |\n|---|---|---|---|\n'
for db in $shapes; do
  [[ $db == blobs ]] && continue
  blocks() { tpsql "$db" -Atc "SELECT blks_read + blks_hit FROM pg_stat_database WHERE datname = '$db'"; }
  sql=$(tpsql "$db" -Atc "SELECT string_agg(format('SELECT count(*) FROM ONLY %I.%I;', n.nspname, c.relname), ' ')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'")
  sleep 1; b0=$(blocks)
  s=$(date +%s.%N)
  printf '%s\n' "$sql" | tpsql "$db" >/dev/null
  e=$(date +%s.%N)
  sleep 1; b1=$(blocks)
  pg_dump -Fc -f "$work/plain.dump" "$db"
  sleep 1; b2=$(blocks)
  printf '| %s | %.2f s | %d | %d |\n' "$db" "$(awk -v a="$s" -v b="$e" 'BEGIN {print b - a}')" $((b1 - b0)) $((b2 - b1))
done
