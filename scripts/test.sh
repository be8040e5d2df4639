#!/usr/bin/env bash
# Runs every fxflow test on a fresh machine of our kind: starts the services the
# tests talk to (PostgreSQL, Redis) when they are not running, then `cargo test`.
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

if command -v pg_ctlcluster >/dev/null 2>&1; then ensure_postgres; else say "PostgreSQL is not installed (no test needs it yet)"; fi
if command -v redis-server >/dev/null 2>&1; then ensure_redis; else say "Redis is not installed (no test needs it yet)"; fi

say "cargo test --workspace"
cargo test --workspace --locked "$@"
