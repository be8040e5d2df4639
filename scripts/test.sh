#!/usr/bin/env bash
# Runs every fxflow test on a fresh machine of our kind: starts the services the
# tests talk to (PostgreSQL with database `test`, Redis, the noida-db Elasticsearch
# stand-in, the tansu Kafka-protocol broker), installing them if missing,
# then `cargo test`.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '==> %s\n' "$*" >&2; }

ensure_postgres() {
    if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return; fi
    say "Starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && return; sleep 0.2; done
    say "PostgreSQL did not come up"; exit 1
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return; fi
    say "Starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 0.2; done
    say "Redis did not come up"; exit 1
}

install_missing() {
    # Fresh machines of our kind ship both services; elsewhere, install them from Debian's packages.
    local missing=()
    command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    [ ${#missing[@]} -eq 0 ] && return
    say "Installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        # Tests connect as postgres over loopback without a password, to the database `test`.
        local hba; hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -n1)
        sed -i 's/^\(host.*127.0.0.1\/32\s*\)\S*$/\1trust/; s/^\(host.*::1\/128\s*\)\S*$/\1trust/' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main restart || true
    fi
}

ensure_test_database() {
    if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
        say "Creating database test"
        psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test" >/dev/null
    fi
}

ensure_noida() {
    # The Elasticsearch stand-in of the sink's tests (real Elasticsearch cannot run here).
    export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
    if command -v noida-db >/dev/null 2>&1; then return; fi
    say "Installing noida-db (Elasticsearch stand-in for tests)"
    python3 -m pip install --quiet --disable-pip-version-check noida-db==0.2.3
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    command -v noida-db >/dev/null 2>&1 || { say "noida-db is not on PATH after installing it"; exit 1; }
}

ensure_tansu() {
    # The Kafka-protocol broker of the multi-process tests (no Docker here, so no Apache Kafka).
    # The stock build has no storage engine; this feature set is the one verified with fxflow.
    if [ -x "${TANSU:-$HOME/.cargo/bin/tansu}" ] && "${TANSU:-$HOME/.cargo/bin/tansu}" --version 2>/dev/null | grep -q "0.6.0"; then
        export TANSU="${TANSU:-$HOME/.cargo/bin/tansu}"
        return
    fi
    say "Installing tansu 0.6.0 (Kafka-protocol broker for tests; ~10-30 min on 2 cores, once)"
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql,postgres
    export TANSU="$HOME/.cargo/bin/tansu"
}

install_missing
ensure_noida
ensure_tansu
ensure_postgres
ensure_test_database
ensure_redis

say "cargo test --workspace"
cargo test --workspace --locked "$@"
