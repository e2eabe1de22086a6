#!/usr/bin/env bash
# Checks the deployment artifacts on a machine without a Docker engine: the
# compose file through Debian's docker-compose (v1) and its YAML, the
# Dockerfile's instructions stage by stage, the image's install steps run for
# real (the same script and profiles), the runtime profile covering every
# library the binary loads, the systemd units through systemd-analyze, and the
# shell scripts' syntax.
# Usage: tests/deploy/test_compose.sh [PATH/TO/pgward]   (default build/pgward;
# without a binary, the checks that need one are skipped and say so)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
pgward=${1:-build/pgward}
[[ -x $pgward ]] && pgward=$(realpath "$pgward") || pgward=

passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
skip() { echo "SKIP: $*"; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok; else bad "$what"; fi; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- docker-compose.prod.yml ---------------------------------------------------
# Hermetic: only the variables given here, and no .env of the checkout.
: > "$tmp/empty.env"
compose() {
  env -i PATH="$PATH" HOME="$tmp" "$@" \
    docker-compose --env-file "$tmp/empty.env" -f docker-compose.prod.yml config
}
# expect WHAT PYTHON-EXPRESSION: true of `c`, the parsed config.
expect() {
  if /usr/bin/python3 -c 'import os, sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
b = c["services"].get("postgres_backup", {})
env = b.get("environment", {})
sys.exit(0 if eval(sys.argv[2]) else 1)' "$tmp/config.yml" "$2" 2>/dev/null; then ok; else bad "compose: $1"; fi
}

if compose POSTGRES_PASSWORD=x POSTGRES_USER=u POSTGRES_DB=d > "$tmp/config.yml" 2> "$tmp/config.err"; then
  ok
  expect "services postgres and postgres_backup" 'set(c["services"]) >= {"postgres", "postgres_backup"}'
  expect "postgres image postgres:16" 'c["services"]["postgres"]["image"] == "postgres:16"'
  expect "healthcheck with pg_isready of the container's user and db" \
    '"pg_isready" in " ".join(c["services"]["postgres"]["healthcheck"]["test"]) and "POSTGRES_USER}" in " ".join(c["services"]["postgres"]["healthcheck"]["test"])'
  expect "postgres keeps its data in pg_data" \
    'any(v.startswith("pg_data:") for v in c["services"]["postgres"]["volumes"])'
  expect "backup image built here with PG_MAJOR 16" \
    'b["build"]["args"]["PG_MAJOR"] == "16" and os.path.samefile(b["build"]["context"], ".")'
  expect "depends_on postgres: service_healthy" \
    'b["depends_on"]["postgres"]["condition"] == "service_healthy"'
  expect "pg_backups mounted at /backups" \
    'any(v.split(":")[:2] == ["pg_backups", "/backups"] for v in b["volumes"])'
  expect "top-level volumes pg_data and pg_backups" 'set(c["volumes"]) >= {"pg_data", "pg_backups"}'
  expect "restart: unless-stopped" 'b["restart"] == "unless-stopped"'
  expect "stop_grace_period: 30s" 'b["stop_grace_period"] == "30s"'
  while read -r var value; do
    expect "$var=$value" "env.get('$var') == '$value'"
  done <<'EOF'
POSTGRES_HOST postgres
POSTGRES_PORT 5432
POSTGRES_USER u
POSTGRES_PASSWORD x
POSTGRES_DB d
POSTGRES_BACKUP_DIR /backups
POSTGRES_BACKUP_INTERVAL_SECONDS 86400
POSTGRES_BACKUP_RETENTION_COUNT 7
POSTGRES_BACKUP_ON_START true
POSTGRES_BACKUP_TIMEOUT_SECONDS 21600
POSTGRES_BACKUP_STALL_SECONDS 900
POSTGRES_DRILL_FROM local
PGWARD_HTTP_ADDR 0.0.0.0:9187
EOF
  expect "postgres_wal streams WAL into the same volume, only with --profile pitr" \
    'c["services"]["postgres_wal"]["command"] == ["wal", "stream"] and c["services"]["postgres_wal"]["profiles"] == ["pitr"] and any(v.split(":")[:2] == ["pg_backups", "/backups"] for v in c["services"]["postgres_wal"]["volumes"]) and c["services"]["postgres_wal"]["environment"]["POSTGRES_PASSWORD"] == "x"'
  expect "WAL streaming in the backup service is off by default" \
    'env.get("POSTGRES_BACKUP_WAL") == "false" and env.get("POSTGRES_BACKUP_WAL_SLOT") == "pgward"'
  # Optional alerts: present, empty (= off) unless set.
  expect "PGWARD_NOTIFY_URL and PGWARD_PING_URL off by default" \
    'env.get("PGWARD_NOTIFY_URL", 1) == "" and env.get("PGWARD_PING_URL", 1) == ""'
  expect "the offsite copy and encryption off by default, no key in the file" \
    'env.get("POSTGRES_BACKUP_REMOTE", 1) == "" and env.get("POSTGRES_BACKUP_ENCRYPT_RECIPIENTS", 1) == "" and env.get("AWS_SECRET_ACCESS_KEY", 1) == "" and env.get("AWS_REGION") == "us-east-1"'
else
  bad "docker-compose config: $(cat "$tmp/config.err")"
fi

if compose POSTGRES_PASSWORD=x POSTGRES_BACKUP_RETENTION_COUNT=3 POSTGRES_MAJOR=17 \
     PGWARD_PING_URL=https://hc.example/p > "$tmp/config.yml" 2>/dev/null; then
  expect "variables override the defaults" \
    'env["POSTGRES_BACKUP_RETENTION_COUNT"] == "3" and b["build"]["args"]["PG_MAJOR"] == "17" and c["services"]["postgres"]["image"] == "postgres:17" and env["PGWARD_PING_URL"] == "https://hc.example/p"'
else
  bad "docker-compose config with overrides failed"
fi

# Every supported major: the server image and the backup image's build arg
# (its pg_dump, pg_restore and libpq) follow POSTGRES_MAJOR together.
for major in 13 14 15 16 17 18; do
  if compose POSTGRES_PASSWORD=x POSTGRES_MAJOR=$major > "$tmp/config.yml" 2>/dev/null; then
    expect "POSTGRES_MAJOR=$major sets the server image and PG_MAJOR" \
      "b['build']['args']['PG_MAJOR'] == '$major' and c['services']['postgres']['image'] == 'postgres:$major' and b['image'] == 'pgward:$major'"
  else
    bad "docker-compose config with POSTGRES_MAJOR=$major failed"
  fi
done

# No password in the file: config must refuse to run without one.
if compose POSTGRES_USER=u POSTGRES_DB=d > /dev/null 2> "$tmp/config.err"; then
  bad "compose config must fail without POSTGRES_PASSWORD"
elif grep -q "set POSTGRES_PASSWORD" "$tmp/config.err"; then
  ok
else
  bad "compose config without POSTGRES_PASSWORD failed for another reason: $(cat "$tmp/config.err")"
fi
# shellcheck disable=SC2016 # a literal ${...}
if grep -E 'PASSWORD' docker-compose.prod.yml | grep -v '^\s*#' | grep -vqF '${POSTGRES_PASSWORD:?'; then
  bad "compose file has a PASSWORD line not taken from \${POSTGRES_PASSWORD:?...}"
else
  ok
fi

# --- Dockerfile ----------------------------------------------------------------
# Instructions without comments, split into stages at each FROM.
grep -v '^\s*#' Dockerfile > "$tmp/Dockerfile"
awk '/^FROM /{n++} n==1' "$tmp/Dockerfile" > "$tmp/stage1"
awk '/^FROM /{n++} n==2' "$tmp/Dockerfile" > "$tmp/stage2"
has() { grep -qE -- "$2" "$1"; }
dockerfile() { local what=$1 file=$2 re=$3; if has "$file" "$re"; then ok; else bad "Dockerfile: $what"; fi; }
dockerfile "ARG PG_MAJOR=16 before the first FROM" <(sed '/^FROM /,$d' "$tmp/Dockerfile") '^ARG PG_MAJOR=16$'
dockerfile "two stages" <(grep -c '^FROM ' "$tmp/Dockerfile") '^2$'
# Both stages on the PGDG image of the chosen major's Debian 12 variant, which
# exists for 13 to 18, so the build compiles against that image's libpq.
dockerfile "both stages FROM postgres:\${PG_MAJOR}-bookworm" <(grep -c '^FROM postgres:\${PG_MAJOR}-bookworm' "$tmp/Dockerfile") '^2$'
# -bookworm: the bare tags are Debian 13, where the runtime package names differ.
dockerfile "build stage on postgres:\${PG_MAJOR}-bookworm" "$tmp/stage1" '^FROM postgres:\$\{PG_MAJOR\}-bookworm AS build$'
dockerfile "build stage: install-deps.sh, profile build" "$tmp/stage1" 'RUN PGWARD_DEPS_PROFILE=build (\./)?scripts/install-deps\.sh'
dockerfile "build stage: the package's build script" "$tmp/stage1" '^RUN (\./)?scripts/build-package\.sh build$'
dockerfile "runtime stage on postgres:\${PG_MAJOR}-bookworm" "$tmp/stage2" '^FROM postgres:\$\{PG_MAJOR\}-bookworm$'
dockerfile "runtime stage: the package from the build stage" "$tmp/stage2" '^COPY --from=build /src/build/pgward_\*\.deb /tmp/$'
dockerfile "runtime stage: apt-get installs the package" "$tmp/stage2" 'apt-get install -y --no-install-recommends /tmp/pgward_\*\.deb'
dockerfile "runtime stage: user made before the package" <(grep -nE 'useradd|apt-get install' "$tmp/stage2" | head -n1) 'useradd'
dockerfile "runtime stage: /backups owned by pgward, 0700" "$tmp/stage2" 'chown pgward(:pgward)? /backups.*chmod 0700 /backups'
dockerfile "USER pgward" "$tmp/stage2" '^USER pgward$'
if has "$tmp/Dockerfile" '^USER (root|0)(:|$)'; then bad "Dockerfile: runs as root"; else ok; fi
dockerfile "VOLUME /backups" "$tmp/stage2" '^VOLUME /backups$'
dockerfile "STOPSIGNAL SIGTERM" "$tmp/stage2" '^STOPSIGNAL SIGTERM$'
dockerfile "HEALTHCHECK runs pgward healthcheck" "$tmp/stage2" \
  '^HEALTHCHECK --interval=60s --timeout=10s --start-period=60s CMD \["pgward", "healthcheck"\]$'
dockerfile "ENTRYPOINT pgward (not the postgres image's)" "$tmp/stage2" '^ENTRYPOINT \["pgward"\]$'
dockerfile "CMD run" "$tmp/stage2" '^CMD \["run"\]$'
for want in 'build\*/' '\.git' 'reports/' '\.env'; do
  if grep -qx -- "$want" .dockerignore; then ok; else bad ".dockerignore lacks $want"; fi
done

# --- scripts/install-deps.sh: the image's install steps, run for real -----------
check "install-deps.sh, profile build" env PGWARD_DEPS_PROFILE=build scripts/install-deps.sh
check "install-deps.sh, profile runtime" env PGWARD_DEPS_PROFILE=runtime scripts/install-deps.sh
PGWARD_DEPS_PROFILE=nonsense scripts/install-deps.sh >/dev/null 2>&1
if [[ $? == 2 ]]; then ok; else bad "install-deps.sh accepted an unknown profile"; fi
# The profiles' package lists, in files (grep -q on a pipe would SIGPIPE it).
for profile in full build runtime; do
  PGWARD_DEPS_PROFILE=$profile scripts/install-deps.sh --list > "$tmp/$profile.packages" ||
    { bad "install-deps.sh --list $profile"; : > "$tmp/$profile.packages"; }
done
inlist() { grep -qx -- "$2" "$tmp/$1.packages"; }
for p in build-essential cmake pkg-config libpq-dev; do
  if inlist build "$p"; then ok; else bad "build profile lacks $p"; fi
done
for p in postgresql libgtest-dev docker-compose gcovr clang libfuzzer-14-dev systemd; do
  if inlist build "$p"; then bad "build profile has $p"; else ok; fi
done
for p in libpq5 libfmt9 libssl3 zlib1g libzstd1 liblz4-1 libxxhash0 libisal2 libcurl4 ca-certificates; do
  if inlist runtime "$p"; then ok; else bad "runtime profile lacks $p"; fi
done
if grep -q -- '-dev$' "$tmp/runtime.packages"; then bad "runtime profile has -dev packages"; else ok; fi
# Every package of every profile exists in this Debian's archive.
if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  # One call for all (each call reads the whole cache); it exits 0 when only some
  # are missing, so its stderr decides; per package only to name a miss.
  # shellcheck disable=SC2046 # one package name a word
  if [[ -z $(apt-cache show --no-all-versions $(sort -u "$tmp"/*.packages) 2>&1 >/dev/null) ]]; then
    ok
  else
    # shellcheck disable=SC2013 # one package name a line
    for p in $(sort -u "$tmp"/*.packages); do
      apt-cache show --no-all-versions "$p" >/dev/null 2>&1 || bad "no package $p in the apt archive"
    done
  fi
else
  skip "apt-cache show: no apt lists here (apt-get update)"
fi

# Every library the binary links comes from a runtime-profile package.
if [[ -n $pgward ]]; then
  while read -r lib; do
    path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
    # dpkg knows a library under the path it installed (/lib or /usr/lib).
    pkg=$( (dpkg -S "$path" || dpkg -S "$(realpath "$path")") 2>/dev/null | head -n1 | cut -d: -f1)
    case $pkg in
      libc6 | libstdc++6 | libgcc-s1) ok ;; # in every Debian image
      *) if inlist runtime "$pkg"; then ok; else bad "$lib ($pkg) is not in the runtime profile"; fi ;;
    esac
  done < <(readelf -d "$pgward" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
else
  skip "runtime libraries: no pgward binary (build it, or pass its path)"
fi

# --- systemd units ---------------------------------------------------------------
for want in "ExecStart=/usr/local/bin/pgward run" "EnvironmentFile=/etc/pgward/pgward.env" "User=pgward" \
            "NoNewPrivileges=yes" "ProtectSystem=strict" "ReadWritePaths=/var/backups/pgward" "PrivateTmp=yes" \
            "KillSignal=SIGTERM" "TimeoutStopSec=30" "Restart=on-failure"; do
  if grep -qx -- "$want" deploy/systemd/pgward-backup.service; then ok; else bad "pgward-backup.service lacks $want"; fi
done
# shellcheck disable=SC2016 # systemd's ${...}, literally
for want in "Type=oneshot" 'ExecStart=/usr/local/bin/pgward backup --retention ${POSTGRES_BACKUP_RETENTION_COUNT}' \
            "Environment=POSTGRES_BACKUP_RETENTION_COUNT=7" "EnvironmentFile=/etc/pgward/pgward.env" "User=pgward"; do
  if grep -qxF -- "$want" deploy/systemd/pgward-backup-once.service; then ok; else bad "pgward-backup-once.service lacks $want"; fi
done
for want in "OnCalendar=daily" "Persistent=true" "RandomizedDelaySec=15m" "Unit=pgward-backup-once.service"; do
  if grep -qx -- "$want" deploy/systemd/pgward-backup.timer; then ok; else bad "pgward-backup.timer lacks $want"; fi
done
if grep -q '^POSTGRES_PASSWORD=change-me$' deploy/systemd/pgward.env.example && grep -q 0600 deploy/systemd/pgward.env.example; then
  ok
else
  bad "pgward.env.example: placeholder password and the 0600 note"
fi
if command -v systemd-analyze >/dev/null; then
  # ExecStart must exist for verify: point it at the built binary (or true).
  mkdir "$tmp/units"
  for unit in deploy/systemd/*.service deploy/systemd/*.timer; do
    sed "s|/usr/local/bin/pgward|${pgward:-$(command -v true)}|" "$unit" > "$tmp/units/$(basename "$unit")"
  done
  # verify exits 0 on unknown keys and bad values: any output is a failure.
  verify=$(cd "$tmp/units" && systemd-analyze verify ./*.service ./*.timer 2>&1)
  if [[ -z $verify ]]; then ok; else bad "systemd-analyze verify: $verify"; fi
else
  skip "systemd-analyze verify: systemd-analyze not installed"
fi

# --- shell scripts ---------------------------------------------------------------
shopt -s nullglob globstar
for script in scripts/**/*.sh deploy/**/*.sh tests/deploy/*.sh bench/*.sh; do
  check "bash -n $script" bash -n "$script"
done

# postgres_backup.sh runs `pgward run` (seen by run's own config error) ...
if [[ -n $pgward ]]; then
  out=$(env -i PATH="$(dirname "$pgward"):/usr/bin:/bin" POSTGRES_BACKUP_INTERVAL_SECONDS=0 \
    scripts/postgres_backup.sh 2>&1)
  rc=$?
  if [[ $rc == 2 && $out == *POSTGRES_BACKUP_INTERVAL_SECONDS* ]]; then ok; else bad "postgres_backup.sh did not run pgward run: $rc $out"; fi
else
  skip "postgres_backup.sh running pgward: no pgward binary"
fi
# ... and says so clearly when there is no pgward at all.
mkdir -p "$tmp/repo/scripts"
cp scripts/postgres_backup.sh "$tmp/repo/scripts/"
out=$(env -i PATH=/usr/bin:/bin "$tmp/repo/scripts/postgres_backup.sh" 2>&1)
rc=$?
if [[ $rc != 0 && $out == *"pgward not found"* ]]; then ok; else bad "postgres_backup.sh without pgward: $rc $out"; fi

echo "$passed passed, $failed failed"
((failed == 0))
