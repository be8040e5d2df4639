#!/usr/bin/env bash
# Installs (from Debian's packages, when missing) and starts the local services
# fxflow's tests and the worker set use: PostgreSQL (loopback trust for the
# `postgres` user; databases `test` and `fxflow`) and Redis. Idempotent: a
# service already answering is left alone.
#
# Usage: scripts/services.sh [postgres] [redis]     (no argument: both)
# Environment: PGPORT (5432), REDIS_PORT (6379).
set -euo pipefail
cd "$(dirname "$0")/.."

PGPORT=${PGPORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}

say() { printf '==> %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Run as root on our machines; elsewhere through sudo when it is there.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else "$@"; fi
}

APT_UPDATED=
apt_install() {
    say "Installing $* (Debian packages)"
    if [ -z "$APT_UPDATED" ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The newest installed PostgreSQL server version (the client alone ships
# pg_ctlcluster too, so look for the server binary itself).
pg_version() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sort -V | tail -n1)
    [ -n "$bin" ] && basename "$(dirname "$(dirname "$bin")")"
}

ensure_postgres() {
    if pg_isready -h 127.0.0.1 -p "$PGPORT" -q 2>/dev/null &&
        psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
        ensure_databases
        return
    fi
    [ -n "$(pg_version)" ] || apt_install postgresql
    local version; version=$(pg_version)
    [ -n "$version" ] || die "PostgreSQL is not installed and could not be installed"
    # The package creates a cluster `main`; a machine that dropped it gets a new one.
    if [ ! -f "/etc/postgresql/$version/main/postgresql.conf" ]; then
        say "Creating PostgreSQL cluster $version/main"
        as_root pg_createcluster "$version" main --port "$PGPORT" >/dev/null
    fi
    # Tests connect as `postgres` over loopback without a password: trust on
    # 127.0.0.1 and ::1 only (the socket keeps peer authentication).
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! as_root grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
        say "Setting loopback trust in $hba"
        as_root sed -i -E \
            -e 's|^(host\s+all\s+all\s+127\.0\.0\.1/32\s+)\S+$|\1trust|' \
            -e 's|^(host\s+all\s+all\s+::1/128\s+)\S+$|\1trust|' "$hba"
        as_root grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba" ||
            echo "host all all 127.0.0.1/32 trust" | as_root tee -a "$hba" >/dev/null
    fi
    as_root sed -i -E "s|^#?port\s*=.*|port = $PGPORT|" "/etc/postgresql/$version/main/postgresql.conf"
    say "Starting PostgreSQL $version on 127.0.0.1:$PGPORT"
    # `restart` also picks up the trust lines when the cluster was already running.
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main restart ||
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 100); do
        pg_isready -h 127.0.0.1 -p "$PGPORT" -q && break
        sleep 0.2
    done
    pg_isready -h 127.0.0.1 -p "$PGPORT" -q || die "PostgreSQL did not come up (see /var/log/postgresql/)"
    ensure_databases
}

ensure_databases() {
    local db
    for db in test fxflow; do
        if ! psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
            say "Creating database $db"
            psql -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -qc "CREATE DATABASE $db" >/dev/null
        fi
    done
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then return; fi
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools
    say "Starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --logfile "${TMPDIR:-/tmp}/fxflow-redis-$REDIS_PORT.log" >/dev/null
    for _ in $(seq 1 50); do
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && return
        sleep 0.2
    done
    die "Redis did not come up"
}

services=("$@")
[ ${#services[@]} -gt 0 ] || services=(postgres redis)
for service in "${services[@]}"; do
    case "$service" in
        postgres) ensure_postgres ;;
        redis) ensure_redis ;;
        *) die "unknown service $service (postgres, redis)" ;;
    esac
done
