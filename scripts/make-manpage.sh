#!/usr/bin/env bash
# Writes pgward's man page from the binary's own help (help2man), so the page
# and `pgward --help-all` never disagree. make package and make install call it.
#   scripts/make-manpage.sh PGWARD_BINARY OUTPUT.1
set -euo pipefail
binary=${1:?usage: scripts/make-manpage.sh PGWARD_BINARY OUTPUT.1}
output=${2:?usage: scripts/make-manpage.sh PGWARD_BINARY OUTPUT.1}
command -v help2man >/dev/null || {
  echo "make-manpage: help2man is missing (apt-get install help2man)" >&2
  exit 1
}
here=$(cd "$(dirname "$0")" && pwd)
extra=$(mktemp)
trap 'rm -f "$extra"' EXIT
cat >"$extra" <<'TEXT'
[DESCRIPTION]
pgward takes pg_dump \-Fc backups of a PostgreSQL database atomically, keeps
the newest N, and proves every row of every table survives: a content
fingerprint per table taken from the archive as it is written, checked again
on disk and in a restored copy. Run \fBpgward COMMAND \-\-help\fR for one
command's options; every option that has an environment variable names it.

[EXIT STATUS]
.TP
.B 0
success
.TP
.B 1
the operation ran and failed (one line on stderr says what and why)
.TP
.B 2
a bad flag or value; nothing ran

[ENVIRONMENT]
Flags outrank POSTGRES_* variables, which outrank libpq's PG* variables.
The password comes from POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (or
libpq's PGPASSWORD and PGPASSFILE), never from a command line.

[FILES]
.TP
.I <dir>/<db>_<UTC>.dump
a backup (pg_dump custom format), with its
.I .manifest.json
and
.I .globals.sql
beside it
.TP
.I <dir>/<db>_<UTC>.pre-restore.dump
the safety dump a restore takes of its target first (the newest 3 kept)
.TP
.I <dir>/.pgward-<db>.state.json
the service's state: last success, last failure and why

[SEE ALSO]
.BR pg_dump (1),
.BR pg_restore (1).
The full documentation is in /usr/share/doc/pgward.
TEXT
help2man --no-info --no-discard-stderr --help-option=--help-all --version-option=--version \
  --name="PostgreSQL backups you have proven you can restore" --section=1 \
  --include="$extra" --output="$output" "$binary"
