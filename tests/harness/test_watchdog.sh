#!/usr/bin/env bash
# The harness's watchdog (tests/harness/environment.cpp) made to fire: a test
# that outruns PGWARD_TEST_TIMEOUT_SECONDS ends its binary with SIGABRT (exit
# 134), named on a "[ TIMEOUT  ]" line, and leaves nothing it started running:
# not the pgward and pg_receivewal of a PITR test, not the test cluster.
# One line per check; exit 1 on any failure.
#   tests/harness/test_watchdog.sh BUILD_DIR
set -uo pipefail
build=$(realpath "${1:?usage: tests/harness/test_watchdog.sh BUILD_DIR}")
work=$(mktemp -d "${TMPDIR:-/tmp}/pgward-watchdog-XXXXXX")
chmod 0755 "$work"  # the cluster, under it, runs as postgres when we are root
trap 'rm -rf "$work"' EXIT
test_name=PitrTest.RecoveryToADumpsRestorePointGivesTheTablesAsDumped  # ~9 s

# In a session of its own (setsid execs in place: its pid is the session's
# id), so that what it started is found after it died, orphaned or not.
TMPDIR=$work PGWARD_TEST_TIMEOUT_SECONDS=3 bash -c 'echo $$ >"$1/pid"; shift; exec setsid "$@"' \
  _ "$work" "$build/tests/pgward_integration_tests" --gtest_filter="$test_name" >"$work/log" 2>&1
rc=$?
session=$(cat "$work/pid")
sleep 1  # SIGKILLed children are reaped by their new parent

failed=0
check() {  # check DESCRIPTION CONDITION...
  local description=$1
  shift
  if "$@"; then echo "ok: $description"; else echo "FAIL: $description"; failed=1; fi
}
check "the binary aborted (exit $rc, 134 expected)" test "$rc" = 134
check "the timed-out test is named" grep -qF "[ TIMEOUT  ] $test_name has run for 3 s" "$work/log"
check "the test did not end on its own" bash -c '! grep -qF "[       OK ] $1" "$2"' _ "$test_name" "$work/log"

# Left running: a process of its session, or one whose command line names
# the temp dir (the cluster's postgres). Zombies have neither. (Here the
# pgward and pg_receivewal the test started die with the cluster and their
# pipes even without the watchdog's kill, which is for children with no such
# tie, e.g. the fault proxy; this check guards against any that outlive it.)
leftovers=()
for stat in /proc/[0-9]*/stat; do
  pid=${stat#/proc/}
  pid=${pid%/stat}
  line=$(cat "$stat" 2>/dev/null) || continue  # gone since the glob
  read -r _state _ppid _pgrp sid _ <<<"${line##*) }"
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
  if [[ $_state != Z && ($sid == "$session" || $cmdline == *"$work"*) ]]; then
    leftovers+=("$pid: $cmdline")
  fi
done
check "nothing it started runs on (${#leftovers[@]} left)" test "${#leftovers[@]}" = 0
for leftover in "${leftovers[@]}"; do echo "  left: $leftover"; done
if ((failed)); then
  echo "--- its log ($work/log):"
  tail -n 20 "$work/log"
fi
exit "$failed"
