#!/usr/bin/env bash
# The seed runbook's drill, as a shell script: the baseline `make bench`
# compares `pgward backup` + `pgward drill --backup latest --sandbox` with.
# pg_dump -Fc, drop and create a scratch database, pg_restore into it, then
# compare each table's row count in the source and the copy with psql.
# Usage: bench/seed_drill.sh DB WORKDIR (libpq's PG* variables say where).
set -euo pipefail
db=$1
work=$2
scratch=${db}_seed_drill
pg_dump -Fc -d "$db" -f "$work/seed.dump"
dropdb --if-exists "$scratch"
createdb "$scratch"
pg_restore --no-owner -d "$scratch" "$work/seed.dump"
tables=$(psql -X -At -d "$db" -c "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables ORDER BY 1")
for t in $tables; do
  a=$(psql -X -At -d "$db" -c "SELECT count(*) FROM $t")
  b=$(psql -X -At -d "$scratch" -c "SELECT count(*) FROM $t")
  [[ $a == "$b" ]] || { echo "seed drill: $t has $a rows, the restore $b" >&2; exit 1; }
done
dropdb "$scratch"
rm -f "$work/seed.dump"
