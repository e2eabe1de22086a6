#!/usr/bin/env bash
# Installs, from Debian's packages, what pgward needs: only the packages that
# are missing, so a second run changes nothing. The Makefile, CI and the
# Dockerfile all call this one script. PGWARD_DEPS_PROFILE chooses the set,
# each one the one before it plus more:
#   build    compiling pgward and packaging it (help2man writes the man page;
#            CPack's dpkg-shlibdeps step needs file): the image's build stage
#   demo     build + a PostgreSQL server and client (make demo)
#   offsite  demo + a one-node Ceph (the S3 server) and python3-boto3: make
#            demo-offsite (not part of the chain below)
#   test     demo + GoogleTest, python3 (the test runner's report), procps
#            (pgrep, pkill and ps in the campaigns), PostGIS (the real-features
#            database of the tests) and a de_DE.UTF-8 locale (the
#            hostile-environment run), age (the reference tool the age
#            format is checked against): make test
#   full     (default) test + what make check adds: gcovr, clang and
#            libFuzzer with its sanitizer runtimes (clang does not pull them in
#            without its recommends), debootstrap (clients 17 and 18, scripts/pg-clients.sh),
#            strace (the write-order audit of the fault walks),
#            docker-compose, python3-yaml and systemd (the deployment check),
#            man-db (the package test reads the man page), and a one-node
#            Ceph (radosgw, ceph-mon, ceph-osd: the S3 server the offsite
#            tests start on loopback) with python3-boto3 (the independent
#            S3 client that checks what pgward wrote), and s3cmd (make bench's
#            baseline for the offsite upload)
#   runtime  only the shared libraries the built binary loads (a host given
#            a bare binary), plus ca-certificates (TLS to the server and alert
#            URLs) and util-linux (setpriv, for the sandbox drill run as root)
# Runs as root, or through sudo. `install-deps.sh --list` prints the profile's
# packages, one a line, and installs nothing (the deploy test checks them).
set -euo pipefail

profile=${PGWARD_DEPS_PROFILE:-full}
build=(
  build-essential cmake pkg-config ca-certificates
  libpq-dev libcli11-dev nlohmann-json3-dev libfmt-dev libssl-dev
  zlib1g-dev libzstd-dev liblz4-dev libxxhash-dev libisal-dev
  libcurl4-openssl-dev libcpp-httplib-dev libpugixml-dev help2man file
)
runtime=(
  ca-certificates libpq5 libfmt9 libssl3 zlib1g libzstd1 liblz4-1 libxxhash0 libisal2
  libcurl4 libcpp-httplib0.11 libpugixml1v5 util-linux
)
demo=("${build[@]}" postgresql postgresql-client util-linux)
offsite=("${demo[@]}" radosgw ceph-mon ceph-osd python3-boto3 curl)
test=("${demo[@]}" libgtest-dev libgmock-dev python3 procps postgresql-15-postgis-3
      postgresql-15-postgis-3-scripts locales age)
case $profile in
  full) packages=("${test[@]}" gcovr clang libfuzzer-14-dev libclang-rt-14-dev debootstrap strace docker-compose
                  python3-yaml systemd man-db
                  radosgw ceph-mon ceph-osd python3-boto3 s3cmd curl) ;;
  test) packages=("${test[@]}") ;;
  demo) packages=("${demo[@]}") ;;
  offsite) packages=("${offsite[@]}") ;;
  build) packages=("${build[@]}") ;;
  runtime) packages=("${runtime[@]}") ;;
  *) echo "install-deps: unknown PGWARD_DEPS_PROFILE '$profile' (full, test, demo, offsite, build or runtime)" >&2; exit 2 ;;
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
  [[ $profile == full || $profile == test ]] || return 0
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
