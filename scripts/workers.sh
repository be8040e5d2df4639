#!/usr/bin/env bash
# The worker set in one terminal: an Apache Kafka broker (scripts/broker.sh),
# PostgreSQL and Redis (scripts/services.sh), the topics, and the ingest,
# process, alerts, analytics, store and api workers as separate processes. Fired alerts
# are printed by the alerts worker. Ctrl-C stops the workers (they drain and
# commit), then the broker.
#
#   scripts/workers.sh                    # replays the ECB history from 2024 at 20 ms/day
#   FXFLOW_FROM=2025-01-01 PROCESS_WORKERS=3 scripts/workers.sh
#
# Try: `kill -9` a process worker (its PID is printed) and start it again with
# the printed command: each grouped worker is a static member (FXFLOW_INSTANCE),
# so the restarted one takes its partitions back at once, with no rebalance;
# one that stays down has them moved after the session timeout; a worker stopped
# with SIGTERM leaves the group at once. Nothing is lost. The API:
# http://127.0.0.1:8000/live.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${KAFKA_PORT:-9092}
DIR=${FXFLOW_WORKERS_DIR:-data/workers}
PROCESS_WORKERS=${PROCESS_WORKERS:-1}
mkdir -p "$DIR"
cargo build --release -q -p fxflow-stages --bin fxflow
FXFLOW=target/release/fxflow
export KAFKA_BROKERS=127.0.0.1:$PORT
export KAFKA_DATA=${KAFKA_DATA:-$PWD/$DIR/kafka}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/fxflow}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
if [ -z "${FXFLOW_API_KEYS:-}" ]; then
    FXFLOW_API_KEYS=fxk_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "API key for this run (set FXFLOW_API_KEYS to choose your own): $FXFLOW_API_KEYS"
fi
export FXFLOW_API_KEYS

scripts/services.sh postgres redis
scripts/broker.sh start

pids=()
# Workers run in their own sessions (setsid), so Ctrl-C reaches only this script:
# workers first (they drain and commit on SIGTERM, which needs the broker), then the broker.
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    scripts/broker.sh stop || true
}
trap cleanup EXIT

"$FXFLOW" topics create --resource kafka pipelines/ingest.ron pipelines/process.ron pipelines/alerts.ron \
    pipelines/analytics.ron pipelines/store.ron pipelines/api.ron

start() { # name file telemetry-port [VAR=value ...]
    local name=$1 file=$2 port=$3
    shift 3
    env FXFLOW_TELEMETRY="127.0.0.1:$port" "$@" setsid "$FXFLOW" run "pipelines/$file" >>"$DIR/$name.log" 2>&1 &
    pids+=($!)
    echo "$name: pid $!, metrics http://127.0.0.1:$port/metrics, log $DIR/$name.log"
    echo "    restart: KAFKA_BROKERS=$KAFKA_BROKERS FXFLOW_TELEMETRY=127.0.0.1:$port $* $FXFLOW run pipelines/$file"
}
for i in $(seq 1 "$PROCESS_WORKERS"); do
    start "process-$i" process.ron $((9610 + i)) FXFLOW_INSTANCE="process-$i"
done
start alerts alerts.ron 9603 FXFLOW_INSTANCE=alerts-1
start analytics analytics.ron 9607 FXFLOW_INSTANCE=analytics-1
start store store.ron 9604 FXFLOW_INSTANCE=store-1
start api api.ron 9606 FXFLOW_API=127.0.0.1:8000
# One-shot (ends by itself, idempotent): the ECB's rates of every currency since 1999 for the
# Frankfurter-compatible routes (/v1, /v2), once the schema is there.
"$FXFLOW" migrate --resource history pipelines/store.ron >>"$DIR/backfill.log" 2>&1
start backfill backfill.ron 9608
echo "    history: psql $DATABASE_URL -c 'SELECT pair, count(*) FROM fx_rates GROUP BY pair'"
echo "    API: http://127.0.0.1:8000/ (live page /live); curl -H \"Authorization: Bearer \$FXFLOW_API_KEYS\" ..."
start ingest ingest.ron 9601 FXFLOW_DAY="${FXFLOW_DAY:-20ms}"
echo "alerts as they fire (tail of $DIR/alerts.log):"
tail -f "$DIR/alerts.log" | grep --line-buffered ALERT
