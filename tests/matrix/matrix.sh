#!/usr/bin/env bash
# The version matrix: servers 13-18 x clients 15, 17, 18, each cell the real
# integration suite (tests/integration) against a real server of that major,
# with pgward pointed at that client (PGWARD_TEST_PG_BIN, PGWARD_TEST_CLIENT_BIN).
#   client >= server: the suite must pass (backup with manifest and
#     fingerprints, verify --deep, restore, the drills, every compression the
#     client writes read back by the archive reader, and in the 15/15 cell the
#     upgrade rehearsals into 16, 17 and 18);
#   client <  server: pgward must refuse before writing anything
#     (VersionTest.AnOlderPgDumpIsRefusedNamingBothVersionsAndWritesNothing).
# The ServiceTest and FaultWalkTest suites are left out of the cells: the
# scheduler and pgward's own file-system calls do not depend on the client's
# major, and they are half of the suite's time.
# Cells whose binaries cannot be made here are "skipped" with the reason, and
# then the run exits 2: the matrix never passes with a hole in it.
#
# Usage: tests/matrix/matrix.sh BUILD_DIR [DOC]   (DOC: docs/compatibility.md)
set -uo pipefail

build=${1:?usage: matrix.sh BUILD_DIR [DOC]}
doc=${2:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
tests=$build/tests/pgward_integration_tests
[[ -x $tests ]] || { echo "matrix: $tests not built" >&2; exit 1; }

servers=(13 14 15 16 17 18)
clients=(15 17 18)
logs=$(mktemp -d /tmp/pgward-matrix-XXXXXX)
echo "matrix: logs in $logs"

cache=$("$here/scripts/pg-clients.sh" ensure 2>"$logs/pg-clients.log" | tail -1)
declare -A why_missing
for item in $(printf 'server-%s ' "${servers[@]}") $(printf 'client-%s ' "${clients[@]}"); do
  if ! bin=$("$here/scripts/pg-clients.sh" path "$item" 2>"$logs/$item.err"); then
    why_missing[$item]=$(tail -1 "$logs/$item.err" | sed 's/^pg-clients: //')
  fi
done

declare -A cell
failed=0 skipped=0
started=$(date +%s)
for s in "${servers[@]}"; do
  for c in "${clients[@]}"; do
    name="server $s x client $c"
    if [[ -n ${why_missing[server-$s]:-} || -n ${why_missing[client-$c]:-} ]]; then
      cell[$s,$c]="skipped: ${why_missing[server-$s]:-${why_missing[client-$c]}}"
      skipped=$((skipped + 1))
      echo "matrix: $name: ${cell[$s,$c]}"
      continue
    fi
    log=$logs/s$s-c$c.log
    if ((c >= s)); then
      filter='-ServiceTest.*:FaultWalkTest.*'
    else
      filter='VersionTest.AnOlderPgDumpIsRefusedNamingBothVersionsAndWritesNothing'
    fi
    t0=$(date +%s)
    PGWARD_TEST_PG_BIN=$cache/server-$s/bin PGWARD_TEST_CLIENT_BIN=$cache/client-$c/bin \
      PGWARD_TEST_PG_CACHE=$cache "$tests" --gtest_filter="$filter" >"$log" 2>&1
    rc=$?
    secs=$(($(date +%s) - t0))
    passed=$(grep -c '^\[       OK \]' "$log")
    skips=$(grep -c '^\[  SKIPPED \] [A-Za-z]*\.[A-Za-z]* (' "$log")
    if ((rc != 0)); then
      cell[$s,$c]="**fail** ($(grep '^\[  FAILED  \] [A-Za-z]*\.[A-Za-z]* (' "$log" | awk '{print $4}' | paste -sd, -))"
      failed=$((failed + 1))
    elif ((c >= s)); then
      cell[$s,$c]="pass ($passed tests, ${secs}s)"
    elif ((passed == 1 && skips == 0)); then
      cell[$s,$c]="refused as expected"
    else
      cell[$s,$c]="**fail** (the refusal test did not run)"
      failed=$((failed + 1))
    fi
    echo "matrix: $name: ${cell[$s,$c]}"
  done
done
total=$(($(date +%s) - started))

version_of() { "$1" --version 2>/dev/null | head -1 | awk '{print $3}'; }
table=$(
  echo "| server \\ client |$(for c in "${clients[@]}"; do printf ' pg_dump %s (%s) |' "$c" "$(version_of "$cache/client-$c/bin/pg_dump")"; done)"
  echo "|---|$(for _ in "${clients[@]}"; do printf -- '---|'; done)"
  for s in "${servers[@]}"; do
    printf '| PostgreSQL %s (%s) |' "$s" "$(version_of "$cache/server-$s/bin/postgres")"
    for c in "${clients[@]}"; do printf ' %s |' "${cell[$s,$c]}"; done
    echo
  done
)
rehearsal=$(grep -E '^\[( +OK|  FAILED  |  SKIPPED) \] UpgradeRehearsalTest' "$logs/s15-c15.log" 2>/dev/null |
  sed -E 's/^\[ *([A-Z]+) *\] UpgradeRehearsalTest\.([A-Za-z]+).*/- \2: \1/')
summary="$(date -u +%Y-%m-%d), $(uname -m), ${total}s; failed $failed, skipped $skipped"

echo
echo "$table"
echo
echo "Upgrade rehearsals (server 15 -> 16, 17, 18):"
echo "${rehearsal:-- not run}"
echo "matrix: $summary"

if [[ -n $doc && -f $doc ]]; then
  {
    sed -n '1,/<!-- matrix:begin -->/p' "$doc"
    echo
    echo "Run: $summary (\`make test-matrix\`)."
    echo
    echo "$table"
    echo
    echo "Upgrade rehearsals, in the server 15 / client 15 cell:"
    echo
    echo "${rehearsal:-- not run}"
    echo
    sed -n '/<!-- matrix:end -->/,$p' "$doc"
  } >"$doc.tmp" && mv "$doc.tmp" "$doc"
  echo "matrix: wrote the table into $doc"
fi

if ((failed > 0)); then
  echo "matrix: FAILED: $failed cell(s); logs in $logs" >&2
  exit 1
fi
if ((skipped > 0)); then
  echo "matrix: INCOMPLETE: $skipped cell(s) skipped (reasons above); logs in $logs" >&2
  exit 2
fi
rm -rf "$logs"
