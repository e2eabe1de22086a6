#!/usr/bin/env bash
# The integration suite once more, in an operator's shell whose libpq, locale
# and time-zone variables are set to wrong-but-plausible values (issue 17).
# Every test must still pass: only the documented variables change what
# pgward does, and only where documented. The harness hands these variables
# to every pgward it starts (tests/harness/runner.cpp); the tests' own
# POSTGRES_* settings outrank them, as flags and POSTGRES_* outrank PG* for
# an operator.
#   tests/hostile/run.sh BUILD_DIR [gtest args...]
set -euo pipefail
build=${1:?usage: tests/hostile/run.sh BUILD_DIR [gtest args]}
shift

if ! locale -a 2>/dev/null | grep -qix 'de_DE.utf8'; then
  echo "hostile: the de_DE.UTF-8 locale is missing (scripts/install-deps.sh makes it)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/pgward-hostile-XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"

# A service that names another server, and a password file of wrong entries.
cat >"$work/pg_service.conf" <<'CONF'
[hostile]
host=192.0.2.10
port=6543
dbname=hostile_service_db
user=hostile_service_user
CONF
printf '%s\n' '*:*:*:*:wrong-password-from-pgpass' '127.0.0.1:*:*:*:another-wrong-password' \
  >"$work/.pgpass"
chmod 0600 "$work/.pgpass"

export HOME=$work  # ~/.pgpass
export PGHOST=/nonexistent/hostile-socket-dir
export PGPORT=6543
export PGUSER=hostile_user
export PGDATABASE=hostile_db
export PGSERVICE=hostile
export PGSERVICEFILE=$work/pg_service.conf
export PGSSLMODE=prefer
export PGAPPNAME=hostile-app
export PGTZ=America/St_Johns
export PGOPTIONS='-c DateStyle=German,DMY -c IntervalStyle=sql_standard -c TimeZone=Pacific/Chatham -c extra_float_digits=-15 -c bytea_output=escape'
export LANG=de_DE.UTF-8
export LC_ALL=de_DE.UTF-8
export TZ=Pacific/Kiritimati

echo "hostile: running the integration suite with PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER" \
  "PGDATABASE=$PGDATABASE PGSERVICE=$PGSERVICE PGSSLMODE=$PGSSLMODE PGTZ=$PGTZ LANG=$LANG TZ=$TZ" \
  "PGOPTIONS='$PGOPTIONS' and a ~/.pgpass of wrong entries"
exec "$build/tests/pgward_integration_tests" "$@"
