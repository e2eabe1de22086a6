#!/usr/bin/env bash
# The seed's restore drill, kept with its interface, now `pgward drill` on the
# bundled example schema. Reads POSTGRES_CONTAINER, POSTGRES_USER,
# POSTGRES_PASSWORD, POSTGRES_PORT, DRILL_DB and POSTGRES_HOST (default
# localhost). With POSTGRES_CONTAINER set, pg_dump/pg_restore/pg_dumpall run
# inside that container (`docker exec -i`), so their version matches the
# server's; unset, the local tools are used.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pgward=${PGWARD:-$(command -v pgward || echo "$here/build/pgward")}
[[ -x $pgward ]] || { echo "restore_drill_local.sh: pgward not found (build it with make build)" >&2; exit 2; }

export POSTGRES_HOST=${POSTGRES_HOST:-localhost}
export POSTGRES_USER=${POSTGRES_USER:?set POSTGRES_USER} POSTGRES_PASSWORD=${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}
export POSTGRES_PORT=${POSTGRES_PORT:-5432}
args=(drill --migrations "$here/examples/quiz_arena/migrations" --report-dir "${REPORT_DIR:-reports}")
[[ -n ${DRILL_DB:-} ]] && export DRILL_DB

if [[ -n ${POSTGRES_CONTAINER:-} ]]; then
  # Wrappers that run each client tool in the container. Inside it, the
  # server is on localhost:${POSTGRES_CONTAINER_PORT:-5432}; the password
  # goes through `docker exec -e PGPASSWORD` (its value from the environment,
  # never argv); an archive path becomes the tool's stdin.
  bin=$(mktemp -d "${TMPDIR:-/tmp}/pgward-container-bin.XXXXXX")
  trap 'rm -rf "$bin"' EXIT
  for tool in pg_dump pg_restore pg_dumpall; do
    cat > "$bin/$tool" <<WRAPPER
#!/usr/bin/env bash
set -euo pipefail
args=()
input=
for a in "\$@"; do
  if [[ \$a == --dbname=* ]]; then
    a=\$(sed -e "s/hostaddr='[^']*'//; s/host='[^']*'/host='localhost'/; s/port='[^']*'/port='\${POSTGRES_CONTAINER_PORT:-5432}'/" <<< "\$a")
  fi
  if [[ $tool == pg_restore && -f \$a ]]; then input=\$a; continue; fi
  args+=("\$a")
done
if [[ -n \$input ]]; then
  exec docker exec -i -e PGPASSWORD "\$POSTGRES_CONTAINER" $tool "\${args[@]}" < "\$input"
fi
exec docker exec -i -e PGPASSWORD "\$POSTGRES_CONTAINER" $tool "\${args[@]}"
WRAPPER
    chmod +x "$bin/$tool"
  done
  export POSTGRES_CONTAINER
  args+=(--pg-bin "$bin")
fi
# Not exec: the trap above must still remove the wrappers.
status=0
"$pgward" "${args[@]}" || status=$?
exit "$status"
