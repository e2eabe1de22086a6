#!/usr/bin/env bash
# The part of the suite that depends on the client's major, run again with
# Debian trixie's pg_dump/pg_restore 17 against the Debian 12 server 15: zstd
# and lz4 backups, format 1.16 archives, pg_restore 17 into an older server.
# Part of `make test`. Client 17 comes from scripts/pg-clients.sh (debootstrap,
# about 30 s the first time, then cached); a machine where that cannot run
# (not root) skips this with the reason, as root a failure to build it fails.
# Usage: tests/matrix/client17.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: client17.sh BUILD_DIR}
here=$(cd "$(dirname "$0")/../.." && pwd)
if ! bin=$("$here/scripts/pg-clients.sh" path client-17); then
  if [[ $(id -u) != 0 ]]; then
    echo "client17: SKIPPED: client 17 cannot be built here (not root); the tests above ran with client 15"
    exit 0
  fi
  echo "client17: FAILED to build client 17 (see the line above)" >&2
  exit 1
fi
echo "client17: $("$bin/pg_dump" --version) from $bin"
PGWARD_TEST_CLIENT_BIN=$bin exec "$build/tests/pgward_integration_tests" \
  --gtest_filter='CompressionTest.*:VersionTest.*:FingerprintTest.*:RestoreTest.*:BackupTest.*'
