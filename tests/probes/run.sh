#!/usr/bin/env bash
# Broker probes behind BENCHMARKS.md's Kafka section: plain clients (librdkafka via
# confluent-kafka, and kafka-python) against a fresh tansu, no fxflow code involved.
#   tests/probes/run.sh            # backlog with and without a header, then one-hop latency
# Needs tansu (scripts/test.sh installs it) and pip; makes a venv in target/probes.
set -euo pipefail
cd "$(dirname "$0")"
TANSU=${TANSU:-$HOME/.cargo/bin/tansu}
VENV=../../target/probes/venv
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q confluent-kafka kafka-python lz4; }
PY="$VENV/bin/python"
BS=127.0.0.1:${PROBE_PORT:-19092}
DIR=$(mktemp -d)
BROKER=
trap '[ -n "$BROKER" ] && kill -9 "$BROKER" 2>/dev/null; rm -rf "$DIR"' EXIT
broker() {
    (cd "$DIR" && rm -f tansu.db* && exec "$TANSU" broker --listener-url "tcp://$BS" --advertised-listener-url "tcp://$BS" \
        --storage-engine sqlite://tansu.db) >"$DIR/broker.log" 2>&1 &
    BROKER=$!
    sleep 3
    "$TANSU" topic create --broker "tcp://$BS" --partitions 8 "$1" >/dev/null
}
for headers in no headers; do
    echo "== backlog of 1,000 ticks × 28 keyed messages, content-type header: $headers"
    broker fx.rates
    "$PY" produce_ticks.py "$BS" 10 1000 "$headers"
    timeout 120 "$PY" consume_ck.py "$BS" | head -2 || true
    timeout 120 "$PY" consume_kp.py "$BS" 2>&1 | head -2 || true
    kill -9 "$BROKER"
done
echo "== one hop, producer → consumer"
broker hop
for rate in 200 5000; do "$PY" hop_latency.py "$BS" "$rate" 8 10; done
