# pgward on the official postgres image of the server's major version, so
# pg_dump, pg_restore and libpq match the server (PG_MAJOR 13 to 18).
ARG PG_MAJOR=16

FROM postgres:${PG_MAJOR} AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN PGWARD_DEPS_PROFILE=build scripts/install-deps.sh
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPGWARD_BUILD_TESTS=OFF \
 && cmake --build build -j"$(nproc)" \
 && strip build/pgward

FROM postgres:${PG_MAJOR}
COPY scripts/install-deps.sh /usr/local/share/pgward/install-deps.sh
RUN PGWARD_DEPS_PROFILE=runtime /usr/local/share/pgward/install-deps.sh \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/pgward /usr/local/bin/pgward
RUN useradd --system --uid 10001 --home-dir /backups --shell /usr/sbin/nologin pgward \
 && mkdir -p /backups && chown pgward /backups && chmod 0700 /backups
USER pgward
VOLUME /backups
ENV POSTGRES_BACKUP_DIR=/backups
# docker stop sends SIGTERM: pgward kills an in-flight pg_dump, removes its
# temp file and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=60s --timeout=10s --start-period=120s CMD ["pgward", "healthcheck"]
# Not the postgres image's entrypoint: this container runs no server.
ENTRYPOINT ["pgward"]
CMD ["run"]
