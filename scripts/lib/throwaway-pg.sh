# Sourced by demo and bench scripts: a private PostgreSQL cluster in a temp
# dir (unix socket only, scram-sha-256), started as `postgres` when run as
# root, removed on exit. After `throwaway_pg_start`, POSTGRES_HOST,
# POSTGRES_USER and POSTGRES_PASSWORD point pgward at it, and `tpsql DB`
# runs psql against it.

throwaway_pg_start() {
  TPG_BIN=${PGWARD_DEMO_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
  TPG_DIR=$(mktemp -d /tmp/pgward-pg.XXXXXX)
  chmod 755 "$TPG_DIR"
  mkdir "$TPG_DIR/sock"
  TPG_PASSWORD="pw-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s\n' "$TPG_PASSWORD" > "$TPG_DIR/pwfile"
  if [[ $(id -u) == 0 ]]; then
    chown postgres "$TPG_DIR" "$TPG_DIR/sock" "$TPG_DIR/pwfile"
  fi
  _tpg_as_server "$TPG_BIN/initdb" -D "$TPG_DIR/data" -U postgres --auth=scram-sha-256 \
    --pwfile="$TPG_DIR/pwfile" -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  rm -f "$TPG_DIR/pwfile"
  _tpg_as_server "$TPG_BIN/pg_ctl" -D "$TPG_DIR/data" -l "$TPG_DIR/server.log" -w \
    -o "-c listen_addresses= -k $TPG_DIR/sock ${TPG_SERVER_OPTIONS:-}" start >/dev/null
  trap throwaway_pg_stop EXIT
  # A signal ends the script through `exit`, so the EXIT trap still runs.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  export POSTGRES_HOST="$TPG_DIR/sock" POSTGRES_USER=postgres POSTGRES_PASSWORD="$TPG_PASSWORD"
}

throwaway_pg_stop() {
  _tpg_as_server "$TPG_BIN/pg_ctl" -D "$TPG_DIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$TPG_DIR"
}

tpsql() {
  local db=$1
  shift
  PGPASSWORD="$TPG_PASSWORD" "$TPG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$TPG_DIR/sock" \
    -U postgres -d "$db" "$@"
}

_tpg_as_server() {
  if [[ $(id -u) == 0 ]]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}
