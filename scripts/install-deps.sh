#!/usr/bin/env bash
# Installs, from Debian's packages, what pgward needs to build, test and run:
# only the packages that are missing, so a second run changes nothing.
# The Makefile, CI and the Dockerfile all call this one script.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ca-certificates
  libpq-dev libcli11-dev nlohmann-json3-dev libfmt-dev libssl-dev
  zlib1g-dev libzstd-dev liblz4-dev libxxhash-dev libisal-dev
  libcurl4-openssl-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev
  postgresql postgresql-client util-linux
)
if [[ ${PGWARD_DEPS_PROFILE:-full} == full ]]; then
  packages+=(docker-compose gcovr clang libfuzzer-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install as root: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done"
