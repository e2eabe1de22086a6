#!/usr/bin/env bash
# `make test`: the everyday suite on one optimized build (with the standard
# library's assertions). The suites run side by side, each against its own
# throwaway cluster: unit, fault-unit, the integration suite in shards, the
# same suite in a hostile operator's shell (tests/hostile/run.sh), and the
# short reliability campaigns. Prints one line per suite and a closing
#   N passed, N failed, N skipped
# with the reason of every skip. Exits 1 when anything failed.
#   tests/run-tests.sh BUILD_DIR
# PGWARD_TEST_SHARDS (default 2) splits the integration and hostile runs;
# PGWARD_TEST_FILTER passes a gtest filter to both. The fault walks
# (FaultWalkTest) are make check's: they run in its coverage and walk runs.
# A test still running after PGWARD_TEST_TIMEOUT_SECONDS (default 900) fails
# its suite, named in the log (tests/harness/environment.cpp's watchdog;
# tests/harness/test_watchdog.sh, run here, makes it fire).
set -uo pipefail
build=$(realpath "${1:?usage: tests/run-tests.sh BUILD_DIR}")
repo=$(cd "$(dirname "$0")/.." && pwd)
shards=${PGWARD_TEST_SHARDS:-2}
filter=${PGWARD_TEST_FILTER:-*}
if [[ $filter == *-* ]]; then
  integration_filter="$filter:FaultWalkTest.*"
else
  integration_filter="$filter-FaultWalkTest.*"
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/pgward-run-XXXXXX")
chmod 0755 "$out"  # the clusters' postgres user writes nothing here, but reads paths under it
started=$SECONDS

for binary in pgward pgward_unit_tests; do
  [[ -x $build/$binary || -x $build/tests/$binary ]] || {
    echo "run-tests: $build has no $binary (build it first: make test does)" >&2
    exit 2
  }
done

# Each suite runs in its own process group (job control); interrupted, the
# runner passes the signal to each group, and each test binary stops its
# cluster (tests/harness/environment.cpp) before it dies.
set -m
interrupted() {
  trap - INT TERM
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null
  done
  wait
  echo "make test: interrupted; the logs are in $out" >&2
  exit 130
}
trap interrupted INT TERM

# name -> command; each writes $out/NAME.log, gtest suites also $out/NAME.json.
declare -A pids=()
launch() {
  local name=$1
  shift
  ("$@" >"$out/$name.log" 2>&1; echo $? >"$out/$name.rc") &
  pids[$name]=$!
}
gtest() {  # gtest NAME ENV... -- BINARY ARGS...
  local name=$1
  shift
  local env=()
  while [[ $1 != -- ]]; do env+=("$1"); shift; done
  shift
  launch "$name" env "${env[@]}" "$@" --gtest_output="json:$out/$name.json"
}

gtest unit -- "$build/tests/pgward_unit_tests" --gtest_filter="$filter"
if [[ -x $build/tests/pgward_fault_unit_tests ]]; then
  gtest fault-unit -- "$build/tests/pgward_fault_unit_tests" --gtest_filter="$filter"
fi
for ((i = 0; i < shards; i++)); do
  gtest "integration-$i" GTEST_TOTAL_SHARDS="$shards" GTEST_SHARD_INDEX="$i" -- \
    "$build/tests/pgward_integration_tests" --gtest_filter="$integration_filter"
  gtest "hostile-$i" GTEST_TOTAL_SHARDS="$shards" GTEST_SHARD_INDEX="$i" -- \
    "$repo/tests/hostile/run.sh" "$build" --gtest_filter="$integration_filter"
done
if [[ $filter == '*' ]]; then
  launch campaigns "$repo/tests/campaigns/campaigns.sh" "$build/pgward" short
  launch watchdog "$repo/tests/harness/test_watchdog.sh" "$build"
fi

passed=0 failed=0 skipped=0
skips=() failures=()
for name in $(printf '%s\n' "${!pids[@]}" | sort); do
  wait "${pids[$name]}"
  rc=$(cat "$out/$name.rc")
  if [[ -f $out/$name.json ]]; then
    # One line: passed failed skipped, then "skip\tTEST\tREASON" and "fail\tTEST" lines.
    summary=$(python3 - "$out/$name.json" "$out/$name.log" <<'PY'
import json, re, sys
report = json.load(open(sys.argv[1]))
# gtest's JSON has no skip messages: they are in the log, between
# "FILE:LINE: Skipped" and "[  SKIPPED ] Suite.Test".
reasons, message = {}, None
for line in open(sys.argv[2], errors="replace"):
    line = line.rstrip("\n")
    if line.endswith(": Skipped"):
        message = []
    elif line.startswith("[  SKIPPED ] ") and message is not None:
        test = re.sub(r" \(\d+ ms\)$", "", line[len("[  SKIPPED ] "):])
        reasons[test] = " ".join(m.strip() for m in message if m.strip())
        message = None
    elif message is not None:
        message.append(line)
counts = {"passed": 0, "failed": 0, "skipped": 0}
lines = []
for suite in report.get("testsuites", []):
    for test in suite.get("testsuite", []):
        name = f"{suite['name']}.{test['name']}"
        if test.get("result") == "SKIPPED" or test.get("status") == "NOTRUN":
            counts["skipped"] += 1
            lines.append(f"skip\t{name}\t{reasons.get(name) or 'no reason given'}")
        elif test.get("failures"):
            counts["failed"] += 1
            lines.append(f"fail\t{name}")
        else:
            counts["passed"] += 1
print(counts["passed"], counts["failed"], counts["skipped"])
print("\n".join(lines))
PY
)
    read -r p f s <<<"$(head -n1 <<<"$summary")"
    while IFS=$'\t' read -r kind test reason; do
      [[ $kind == skip ]] && skips+=("$name: $test: $reason")
      [[ $kind == fail ]] && failures+=("$name: $test")
    done < <(tail -n +2 <<<"$summary")
    if ((rc != 0 && f == 0)); then  # crashed, or a fixture failed outside any test
      f=1
      failures+=("$name: exit code $rc outside any test (see its log)")
    fi
  else  # a script: one test
    p=0 f=0 s=0
    if ((rc == 0)); then p=1; else f=1 failures+=("$name: exit code $rc"); fi
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
  printf '%-14s %4d passed %3d failed %3d skipped   (log: %s)\n' "$name" "$p" "$f" "$s" "$out/$name.log"
done

for skip in "${skips[@]}"; do echo "skipped: $skip"; done
for failure in "${failures[@]}"; do echo "FAILED: $failure"; done
if ((failed > 0)); then
  # Each failed test's own output (RUN to FAILED); a suite that failed outside
  # any test, its last 40 lines. The logs stay.
  for name in $(printf '%s\n' "${!pids[@]}" | sort); do
    [[ $(cat "$out/$name.rc") == 0 ]] && continue
    echo "---- $name ($out/$name.log)"
    if grep -q '^\[  FAILED  \] .*([0-9]* ms)$' "$out/$name.log"; then
      awk '/^\[ RUN      \]/ {buf = ""} {buf = buf $0 "\n"}
           /^\[  FAILED  \] .*\([0-9]+ ms\)$/ {printf "%s", buf; buf = ""}' "$out/$name.log" |
        grep -v ' level=info ' | cut -c1-400
    else
      tail -n 40 "$out/$name.log"
    fi
  done
fi
echo "make test: $passed passed, $failed failed, $skipped skipped in $((SECONDS - started)) s"
if ((failed > 0)); then
  exit 1
fi
rm -rf "$out"
