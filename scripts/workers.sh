#!/usr/bin/env bash
# The worker set in one terminal: a tansu broker (Kafka protocol, SQLite storage),
# the topics, and the ingest, process and alerts workers as separate processes.
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

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; kill -9 "$broker" 2>/dev/null || true; }
trap cleanup EXIT

(cd "$DIR" && exec "$TANSU" broker --listener-url "tcp://$KAFKA_BROKERS" \
    --advertised-listener-url "tcp://$KAFKA_BROKERS" --storage-engine sqlite://tansu.db) >"$DIR/broker.log" 2>&1 &
broker=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$FXFLOW" topics create --resource kafka pipelines/ingest.ron pipelines/process.ron pipelines/alerts.ron

start() { # name file
    FXFLOW_TELEMETRY=127.0.0.1:$3 "$FXFLOW" run "pipelines/$2" >>"$DIR/$1.log" 2>&1 &
    pids+=($!)
    echo "$1: pid $!, metrics http://127.0.0.1:$3/metrics, log $DIR/$1.log"
    echo "    restart: KAFKA_BROKERS=$KAFKA_BROKERS FXFLOW_TELEMETRY=127.0.0.1:$3 $FXFLOW run pipelines/$2"
}
start process process.ron 9602
start alerts alerts.ron 9603
FXFLOW_DAY=${FXFLOW_DAY:-20ms} start ingest ingest.ron 9601
echo "alerts as they fire (tail of $DIR/alerts.log):"
tail -f "$DIR/alerts.log" | grep --line-buffered ALERT
