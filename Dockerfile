# pgward on the official postgres image of the server's major version, so
# pg_dump, pg_restore and libpq (from the image's PGDG repository) match the
# server:  docker build --build-arg PG_MAJOR=17 -t pgward:17 .
ARG PG_MAJOR=16

# -bookworm, not the bare major: the bare tags moved to Debian 13 (trixie),
# whose library package names (libfmt, libssl3t64, ...) differ from those
# scripts/install-deps.sh installs. Both stages use the same Debian release.
FROM postgres:${PG_MAJOR}-bookworm AS build
WORKDIR /src
# The dependency layer first: it is rebuilt only when the script changes.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN PGWARD_DEPS_PROFILE=build scripts/install-deps.sh
COPY . .
# The same build as `make package`: Release, the man page, a Debian package
# whose dependencies dpkg-shlibdeps read from the binary.
RUN scripts/build-package.sh build

FROM postgres:${PG_MAJOR}-bookworm
# pgward never needs root; /backups is private to it (dumps are 0600 anyway).
# The user first, with a fixed uid: the package's postinst keeps an existing one.
RUN useradd --system --uid 10001 --user-group --home-dir /backups --shell /usr/sbin/nologin pgward \
 && mkdir -p /backups && chown pgward:pgward /backups && chmod 0700 /backups
COPY --from=build /src/build/pgward_*.deb /tmp/
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends /tmp/pgward_*.deb \
 && rm -rf /tmp/pgward_*.deb /var/lib/apt/lists/*
USER pgward
VOLUME /backups
ENV POSTGRES_BACKUP_DIR=/backups
# docker stop sends SIGTERM: pgward kills an in-flight pg_dump, removes its
# temp file and exits 0 within 10 s.
STOPSIGNAL SIGTERM
# pgward reports healthy during its own grace before the first backup, so
# the start period only has to cover the process starting.
HEALTHCHECK --interval=60s --timeout=10s --start-period=60s CMD ["pgward", "healthcheck"]
# Replaces the postgres image's entrypoint: this container runs no server.
ENTRYPOINT ["pgward"]
CMD ["run"]
