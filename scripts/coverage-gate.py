#!/usr/bin/env python3
"""The coverage gate of docs/reliability.md, over gcovr's --json-summary.

The modules a backup's durability and its proof rest on must be fully covered:
the atomic file writer, the manifest, the retention planner, the archive reader
and verify at 100% of lines and at least 90% of branches; the whole of src/ at
least 90% of lines. Prints each file's figures and exits 1 below any of them.
Usage: scripts/coverage-gate.py COVERAGE_JSON
"""
import json
import sys

STRICT = {
    "src/util/files.cpp": "the atomic file writer",
    "src/domain/manifest.cpp": "the manifest",
    "src/domain/retention.cpp": "the retention planner",
    "src/archive/reader.cpp": "the archive reader",
    "src/domain/verify.cpp": "verify",
}
STRICT_LINES, STRICT_BRANCHES, TOTAL_LINES = 100.0, 90.0, 90.0


def percent(covered, total):
    return 100.0 if total == 0 else 100.0 * covered / total


def main():
    with open(sys.argv[1]) as f:
        summary = json.load(f)
    files = {entry["filename"]: entry for entry in summary["files"]}
    failures = []
    print(f"{'file':44} {'lines':>16} {'branches':>16}")
    for name in sorted(files):
        e = files[name]
        lines = percent(e["line_covered"], e["line_total"])
        branches = percent(e["branch_covered"], e["branch_total"])
        mark = ""
        if name in STRICT:
            mark = f"  <- {STRICT[name]}: gate {STRICT_LINES:.0f}% / {STRICT_BRANCHES:.0f}%"
            if lines < STRICT_LINES or branches < STRICT_BRANCHES:
                failures.append(f"{name} ({STRICT[name]}): {lines:.1f}% of lines, "
                                f"{branches:.1f}% of branches")
        print(f"{name:44} {lines:6.1f}% {e['line_covered']:4}/{e['line_total']:<4} "
              f"{branches:6.1f}% {e['branch_covered']:4}/{e['branch_total']:<4}{mark}")
    for name in STRICT:
        if name not in files:
            failures.append(f"{name}: no coverage data")
    total = percent(summary["line_covered"], summary["line_total"])
    total_branches = percent(summary["branch_covered"], summary["branch_total"])
    print(f"{'all of src/':44} {total:6.1f}% {summary['line_covered']:4}/{summary['line_total']:<4} "
          f"{total_branches:6.1f}% {summary['branch_covered']:4}/{summary['branch_total']:<4}"
          f"  <- gate {TOTAL_LINES:.0f}% of lines")
    if total < TOTAL_LINES:
        failures.append(f"all of src/: {total:.1f}% of lines")
    for failure in failures:
        print(f"coverage gate: below the gate: {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("coverage gate: passed")


if __name__ == "__main__":
    main()
