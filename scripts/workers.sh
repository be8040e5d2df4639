#!/usr/bin/env bash
# The worker set in one terminal: a tansu broker (Kafka protocol, SQLite storage),
# the topics, and the ingest, process and alerts workers as separate processes, plus the
# store worker when PostgreSQL and Redis run locally.
# Fired alerts are printed by the alerts worker. Ctrl-C stops everything.
#
#   scripts/workers.sh                    # replays the ECB history from 2024 at 20 ms/day
#   FXFLOW_FROM=2025-01-01 scripts/workers.sh
#
# Try: in another terminal, `kill -9` the process worker (its PID is printed) and
# start it again with the printed command: nothing is lost (see its log in $DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${KAFKA_PORT:-9092}
DIR=${FXFLOW_WORKERS_DIR:-data/workers}
TANSU=${TANSU:-$HOME/.cargo/bin/tansu}
mkdir -p "$DIR"
[ -x "$TANSU" ] || { echo "tansu is missing: cargo install tansu --version 0.6.0 --locked --features dynostore,libsql,postgres" >&2; exit 1; }
cargo build --release -q -p fxflow-stages --bin fxflow
FXFLOW=target/release/fxflow
export KAFKA_BROKERS=127.0.0.1:$PORT
# One worker per group here, so each takes all its partitions without the group protocol: a
# `kill -9`ed worker restarted by hand resumes at once. (tansu 0.6's coordinator waits for a dead
# member until max.poll.interval.ms, minutes; see ARCHITECTURE.md §10.) To add workers to a
# group instead, run this with FXFLOW_ASSIGNMENT=Subscribe.
export FXFLOW_ASSIGNMENT=${FXFLOW_ASSIGNMENT:-AllPartitions}

pids=()
# Workers and broker run in their own sessions (setsid), so Ctrl-C reaches only this script:
# workers first (they drain and commit on SIGTERM, which needs the broker), then the broker.
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    kill -9 "$broker" 2>/dev/null || true
}
trap cleanup EXIT

(cd "$DIR" && exec setsid "$TANSU" broker --listener-url "tcp://$KAFKA_BROKERS" \
    --advertised-listener-url "tcp://$KAFKA_BROKERS" --storage-engine sqlite://tansu.db) >"$DIR/broker.log" 2>&1 &
broker=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$FXFLOW" topics create --resource kafka pipelines/ingest.ron pipelines/process.ron pipelines/alerts.ron pipelines/store.ron

start() { # name file
    FXFLOW_TELEMETRY=127.0.0.1:$3 setsid "$FXFLOW" run "pipelines/$2" >>"$DIR/$1.log" 2>&1 &
    pids+=($!)
    echo "$1: pid $!, metrics http://127.0.0.1:$3/metrics, log $DIR/$1.log"
    echo "    restart: KAFKA_BROKERS=$KAFKA_BROKERS FXFLOW_ASSIGNMENT=$FXFLOW_ASSIGNMENT FXFLOW_TELEMETRY=127.0.0.1:$3 $FXFLOW run pipelines/$2"
}
start process process.ron 9602
start alerts alerts.ron 9603
# The store worker (history in PostgreSQL, current rates and rules in Redis) when both run here.
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/fxflow}
if pg_isready -q -d "$DATABASE_URL" 2>/dev/null && redis-cli ping >/dev/null 2>&1; then
    psql -q "${DATABASE_URL%/*}/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '${DATABASE_URL##*/}'" | grep -q 1 \
        || psql -q "${DATABASE_URL%/*}/postgres" -c "CREATE DATABASE \"${DATABASE_URL##*/}\""
    start store store.ron 9604
    echo "    history: psql $DATABASE_URL -c 'SELECT pair, count(*) FROM fx_rates GROUP BY pair'"
else
    echo "store: skipped (needs PostgreSQL and Redis on this machine; see pipelines/store.ron)"
fi
FXFLOW_DAY=${FXFLOW_DAY:-20ms} start ingest ingest.ron 9601
echo "alerts as they fire (tail of $DIR/alerts.log):"
tail -f "$DIR/alerts.log" | grep --line-buffered ALERT
