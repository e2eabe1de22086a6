#!/usr/bin/env bash
# Checks the deployment artifacts without a Docker engine: the compose file
# through Debian's docker-compose, the Dockerfile's instructions, the image's
# install steps run for real (the same script and profiles), the runtime
# profile covering every library the binary needs, the systemd units through
# systemd-analyze, and the shell scripts' syntax.
# Usage: tests/deploy/test_deploy.sh PATH/TO/pgward
set -uo pipefail
cd "$(dirname "$0")/../.."
pgward=${1:?usage: test_deploy.sh PATH/TO/pgward}
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok; else bad "$what"; fi; }
has() { grep -qF -- "$2" <<< "$1"; }

# Compose: a valid file, the seed's services, volume and variables with defaults.
config=$(POSTGRES_PASSWORD=x docker-compose -f docker-compose.prod.yml config 2>&1) || bad "docker-compose config: $config"
for want in "postgres:" "postgres_backup:" "pg_backups:/backups:rw" "image: postgres:16" \
            "POSTGRES_BACKUP_INTERVAL_SECONDS: '86400'" "POSTGRES_BACKUP_RETENTION_COUNT: '7'" \
            "POSTGRES_BACKUP_ON_START: \"true\"" "POSTGRES_BACKUP_DIR: /backups" \
            "condition: service_healthy" "pg_isready" "PG_MAJOR: '16'" "POSTGRES_HOST: postgres" \
            "stop_grace_period: 30s"; do
  if has "$config" "$want"; then ok; else bad "compose config lacks: $want"; fi
done
if docker-compose -f docker-compose.prod.yml config >/dev/null 2>&1; then
  bad "compose config must fail without POSTGRES_PASSWORD"
else
  ok
fi
overridden=$(POSTGRES_PASSWORD=x POSTGRES_BACKUP_RETENTION_COUNT=3 POSTGRES_MAJOR=17 \
  docker-compose -f docker-compose.prod.yml config 2>&1)
if has "$overridden" "POSTGRES_BACKUP_RETENTION_COUNT: '3'" && has "$overridden" "PG_MAJOR: '17'" &&
   has "$overridden" "image: postgres:17"; then ok; else bad "compose variables do not override"; fi

# Dockerfile: the instructions the issue asks for.
dockerfile=$(cat Dockerfile)
for want in "ARG PG_MAJOR=16" "FROM postgres:\${PG_MAJOR} AS build" "PGWARD_DEPS_PROFILE=build scripts/install-deps.sh" \
            "PGWARD_DEPS_PROFILE=runtime" "USER pgward" "STOPSIGNAL SIGTERM" \
            'HEALTHCHECK --interval=60s --timeout=10s --start-period=120s CMD ["pgward", "healthcheck"]' \
            'ENTRYPOINT ["pgward"]' 'CMD ["run"]' "VOLUME /backups"; do
  if has "$dockerfile" "$want"; then ok; else bad "Dockerfile lacks: $want"; fi
done

# The image's install steps, run for real with the same script and profiles.
check "install-deps build profile" env PGWARD_DEPS_PROFILE=build scripts/install-deps.sh
check "install-deps runtime profile" env PGWARD_DEPS_PROFILE=runtime scripts/install-deps.sh
if env PGWARD_DEPS_PROFILE=nonsense scripts/install-deps.sh >/dev/null 2>&1; then bad "unknown profile accepted"; else ok; fi

# Every library the binary links comes from a runtime-profile package.
runtime_packages=$(sed -n '/^runtime=(/,/^)/p' scripts/install-deps.sh | tr -s ' \n' '\n' | grep -v '[()=]')
while read -r lib; do
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64/ {print $NF; exit}')
  # dpkg knows a library under the path it installed (/lib or /usr/lib).
  pkg=$( (dpkg -S "$path" || dpkg -S "$(realpath "$path")") 2>/dev/null | head -n1 | cut -d: -f1)
  case $pkg in
    libc6|libstdc++6|libgcc-s1) ok ;;
    *) if grep -qx -- "$pkg" <<< "$runtime_packages"; then ok; else bad "$lib ($pkg) is not in the runtime profile"; fi ;;
  esac
done < <(readelf -d "$pgward" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')

# systemd units (with ExecStart pointed at the built binary so it exists).
units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
for unit in deploy/systemd/*.service deploy/systemd/*.timer; do
  sed "s|/usr/local/bin/pgward|$(realpath "$pgward")|" "$unit" > "$units/$(basename "$unit")"
done
verify=$(cd "$units" && systemd-analyze verify ./*.service ./*.timer 2>&1)
if [[ -z $verify ]]; then ok; else bad "systemd-analyze verify: $verify"; fi
for want in "KillSignal=SIGTERM" "NoNewPrivileges=yes" "EnvironmentFile=/etc/pgward/pgward.env" "User=pgward"; do
  if grep -qF "$want" deploy/systemd/pgward-backup.service; then ok; else bad "service unit lacks $want"; fi
done

# Shell scripts parse; the wrapper runs pgward run (seen by its usage error).
for script in scripts/*.sh scripts/lib/*.sh bench/*.sh tests/deploy/*.sh; do
  check "bash -n $script" bash -n "$script"
done
out=$(PATH="$(dirname "$(realpath "$pgward")"):/usr/bin:/bin" POSTGRES_BACKUP_INTERVAL_SECONDS=0 \
  scripts/postgres_backup.sh 2>&1); rc=$?
if [[ $rc == 2 ]] && has "$out" "POSTGRES_BACKUP_INTERVAL_SECONDS"; then ok; else bad "postgres_backup.sh did not run pgward run: $rc $out"; fi

echo "deploy: $passed passed, $failed failed"
((failed == 0))
