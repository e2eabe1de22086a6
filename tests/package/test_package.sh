#!/usr/bin/env bash
# The Debian package of `make package`, installed for real: apt-get install
# ./pgward_*.deb resolves its dependencies, `pgward version` runs from
# /usr/bin, `man pgward` shows the page, bash completion, the systemd units
# (naming /usr/bin/pgward) and the docs are in place, the pgward system user
# exists; then the package is purged and its files are gone.
#   tests/package/test_package.sh PACKAGE_BUILD_DIR
# Needs root (or sudo) and apt; installs onto this machine. Skips (exit 0,
# saying why) where it cannot install, and fails when pgward is already
# installed from elsewhere (it would be replaced).
set -uo pipefail
dir=${1:?usage: tests/package/test_package.sh PACKAGE_BUILD_DIR}
passes=0 failures=0
ok() { passes=$((passes + 1)); }
bad() { failures=$((failures + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok; else bad "$what"; fi; }

sudo=()
if [[ $(id -u) != 0 ]]; then
  if ! sudo -n true 2>/dev/null; then
    echo "package test: skipped: installing a package needs root or password-less sudo"
    exit 0
  fi
  sudo=(sudo -n)
fi
shopt -s nullglob
debs=("$dir"/pgward_*_*.deb)
if ((${#debs[@]} != 1)); then
  echo "package test: expected one pgward_*.deb in $dir, found ${#debs[@]} (make package)" >&2
  exit 1
fi
deb=$(realpath "${debs[0]}")
if dpkg-query -W -f='${Status}' pgward 2>/dev/null | grep -q 'install ok installed'; then
  echo "package test: a pgward package is already installed; remove it first (apt-get purge pgward)" >&2
  exit 1
fi
version=$(dpkg-deb --field "$deb" Version)
[[ $(basename "$deb") == "pgward_${version}_amd64.deb" ]] && ok || bad "file name $(basename "$deb") is not pgward_<version>_amd64.deb"
depends=$(dpkg-deb --field "$deb" Depends)
for lib in libpq5 libzstd1 libssl3 libcurl4; do
  [[ $depends == *"$lib"* ]] && ok || bad "Depends lacks $lib (dpkg-shlibdeps): $depends"
done

trap '"${sudo[@]}" apt-get purge -y -q pgward >/dev/null 2>&1' EXIT
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb" \
    >/tmp/pgward-package-install.log 2>&1; then
  bad "apt-get install $deb: $(tail -n 5 /tmp/pgward-package-install.log)"
  echo "package test: $passes passed, $failures failed"
  exit 1
fi
check "pgward at /usr/bin/pgward" test -x /usr/bin/pgward
out=$(/usr/bin/pgward version 2>&1)
[[ $out == *"pgward $version"* ]] && ok || bad "pgward version printed: $out"
out=$(/usr/bin/pgward --version 2>&1)
[[ $out == "pgward $version" ]] && ok || bad "pgward --version printed: $out"
page=$(MANPAGER=cat MANWIDTH=100 man pgward 2>&1)
for want in "PostgreSQL backups you have proven you can restore" "restore" "EXIT STATUS" "POSTGRES_BACKUP_DIR"; do
  [[ $page == *"$want"* ]] && ok || bad "man pgward lacks \"$want\""
done
check "man page installed, compressed" test -f /usr/share/man/man1/pgward.1.gz
check "bash completion installed" test -f /usr/share/bash-completion/completions/pgward
completion=$(bash -c 'source /usr/share/bash-completion/completions/pgward
  COMP_WORDS=(pgward dr); COMP_CWORD=1; _pgward; echo "${COMPREPLY[*]}"
  COMP_WORDS=(pgward drill --sand); COMP_CWORD=2; _pgward; echo "${COMPREPLY[*]}"' 2>&1)
[[ $completion == $'drill\n--sandbox' ]] && ok || bad "completion of 'pgward dr' and 'drill --sand': $completion"
for unit in pgward-backup.service pgward-backup-once.service pgward-backup.timer; do
  check "unit $unit" test -f "/lib/systemd/system/$unit"
done
grep -qx 'ExecStart=/usr/bin/pgward run' /lib/systemd/system/pgward-backup.service && ok ||
  bad "pgward-backup.service does not run /usr/bin/pgward"
check "docs" test -f /usr/share/doc/pgward/runbook.md
check "env example" test -f /usr/share/doc/pgward/examples/pgward.env.example
check "system user pgward" getent passwd pgward
[[ $(stat -c '%U %a' /var/backups/pgward 2>/dev/null) == "pgward 700" ]] && ok ||
  bad "/var/backups/pgward is not pgward's, 0700: $(stat -c '%U %a' /var/backups/pgward 2>&1)"

"${sudo[@]}" apt-get purge -y -q pgward >/dev/null 2>&1 && ok || bad "apt-get purge pgward"
trap - EXIT
check "binary removed" test ! -e /usr/bin/pgward
check "man page removed" test ! -e /usr/share/man/man1/pgward.1.gz
check "completion removed" test ! -e /usr/share/bash-completion/completions/pgward
check "units removed" test ! -e /lib/systemd/system/pgward-backup.service
# make install with DESTDIR and PREFIX: everything under DESTDIR/PREFIX, the
# units naming PREFIX/bin/pgward; the package's build dir is put back after.
repo=$(cd "$(dirname "$0")/../.." && pwd)
stage=$(mktemp -d)
if make -C "$repo" --no-print-directory install RELEASE_DIR="$(realpath "$dir")" PREFIX=/opt/pgward \
    DESTDIR="$stage" >"$stage.log" 2>&1; then
  check "make install: binary" test -x "$stage/opt/pgward/bin/pgward"
  check "make install: man page" test -f "$stage/opt/pgward/share/man/man1/pgward.1.gz"
  grep -qx 'ExecStart=/opt/pgward/bin/pgward run' "$stage/opt/pgward/lib/systemd/system/pgward-backup.service" &&
    ok || bad "make install: the unit does not run /opt/pgward/bin/pgward"
  outside=$(find "$stage" -mindepth 1 -maxdepth 1 ! -name opt)
  [[ -z $outside ]] && ok || bad "make install wrote outside DESTDIR/PREFIX: $outside"
else
  bad "make install DESTDIR=$stage PREFIX=/opt/pgward: $(tail -n 5 "$stage.log")"
fi
cmake -S "$repo" -B "$dir" -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
rm -rf "$stage" "$stage.log"
echo "package test: $passes passed, $failures failed ($(basename "$deb"))"
((failures == 0))
