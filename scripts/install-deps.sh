#!/usr/bin/env bash
# Installs, from Debian's packages, what pgward needs: only the packages that
# are missing, so a second run changes nothing. The Makefile, CI and the
# Dockerfile all call this one script. PGWARD_DEPS_PROFILE chooses the set:
#   full     (default) build, test and develop: compilers, -dev libraries,
#            GoogleTest, a PostgreSQL server and client, docker-compose, gcovr,
#            procps (pgrep, pkill and ps in the campaigns), debootstrap (the
#            version matrix's clients 17 and 18, scripts/pg-clients.sh), strace
#            (the write-order audit), PostGIS (the real-features database of
#            the tests) and a de_DE.UTF-8 locale (the hostile-environment run)
#   build    only what compiling pgward needs (the image's build stage)
#   runtime  only the shared libraries the built binary loads (the image),
#            plus ca-certificates (TLS to the server and alert URLs) and
#            util-linux (setpriv, for the sandbox drill run as root)
# Runs as root, or through sudo. `install-deps.sh --list` prints the profile's
# packages, one a line, and installs nothing (the deploy test checks them).
set -euo pipefail

profile=${PGWARD_DEPS_PROFILE:-full}
build=(
  build-essential cmake pkg-config ca-certificates
  libpq-dev libcli11-dev nlohmann-json3-dev libfmt-dev libssl-dev
  zlib1g-dev libzstd-dev liblz4-dev libxxhash-dev libisal-dev
  libcurl4-openssl-dev libcpp-httplib-dev
)
runtime=(
  ca-certificates libpq5 libfmt9 libssl3 zlib1g libzstd1 liblz4-1 libxxhash0 libisal2
  libcurl4 libcpp-httplib0.11 util-linux
)
case $profile in
  full) packages=("${build[@]}" libgtest-dev libgmock-dev postgresql postgresql-client util-linux
                  docker-compose python3-yaml gcovr clang libfuzzer-14-dev systemd procps
                  debootstrap strace postgresql-15-postgis-3 postgresql-15-postgis-3-scripts
                  locales) ;;
  build) packages=("${build[@]}") ;;
  runtime) packages=("${runtime[@]}") ;;
  *) echo "install-deps: unknown PGWARD_DEPS_PROFILE '$profile' (full, build or runtime)" >&2; exit 2 ;;
esac

if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

sudo=()
if [[ $(id -u) != 0 ]]; then
  sudo=(sudo)
fi

# The hostile-environment run (tests/hostile/run.sh) speaks German.
ensure_test_locale() {
  [[ $profile == full ]] || return 0
  locale -a 2>/dev/null | grep -qix 'de_DE.utf8' && return 0
  echo "install-deps: generating the de_DE.UTF-8 locale"
  "${sudo[@]}" localedef -i de_DE -f UTF-8 de_DE.UTF-8
}

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages of profile $profile present"
  ensure_test_locale
  exit 0
fi

echo "install-deps: installing (profile $profile): ${missing[*]}"
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install as root: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
ensure_test_locale
echo "install-deps: done"
