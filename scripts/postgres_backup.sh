#!/usr/bin/env bash
# The seed's backup script name, kept for existing deployments: it now runs
# the pgward service (configured by the same POSTGRES_* variables).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pgward=$(command -v pgward || true)
[[ -n $pgward ]] || pgward="$here/build/pgward"
if [[ ! -x $pgward ]]; then
  echo "postgres_backup.sh: pgward not found on PATH or at $pgward (build it with make build)" >&2
  exit 2
fi
exec "$pgward" run "$@"
