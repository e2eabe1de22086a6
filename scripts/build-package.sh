#!/usr/bin/env bash
# The one way pgward is built for installing: a Release build of the pgward
# target, its man page, and a Debian package (CPack; dependencies from
# dpkg-shlibdeps). `make package` and the Dockerfile's build stage run this.
#   scripts/build-package.sh [BUILD_DIR]   -> BUILD_DIR/pgward_<version>_<arch>.deb
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-package}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPGWARD_BUILD_TESTS=OFF \
  -DCMAKE_INSTALL_PREFIX=/usr ${PGWARD_CMAKE_FLAGS:-} >/dev/null
cmake --build "$build" -j"$(nproc)" --target pgward manpage
rm -f "$build"/pgward_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls "$build"/pgward_*.deb)
echo "build-package: $deb"
dpkg-deb --field "$deb" Package Version Architecture Depends Recommends
