#!/usr/bin/env bash
# The backtest's speed figures (BENCHMARKS.md, "Backtests"), measured from the command's start
# to its last line, as a user runs it:
#   1. 20 rules over the whole ECB file (27 years × the rules' pairs, crosses computed);
#   2. 100 rules over 30 days of 1-second EUR/USD ticks (2,592,000 rows) in PostgreSQL,
#      reading included.
# Needs PostgreSQL on 127.0.0.1:5432 (scripts/services.sh); the ticks are generated once into
# database fxbench_backtest (about 400 MB) and kept.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p fxflow-stages --bin fxflow
bin=target/release/fxflow
work=target/bench-backtest
mkdir -p "$work"

# 20 rules on ten pairs: every kind of condition and trigger.
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
levels = {"EUR/USD": 1.2, "GBP/USD": 1.5, "USD/JPY": 110, "EUR/GBP": 0.8, "EUR/JPY": 130,
          "AUD/USD": 0.75, "USD/CHF": 1.0, "USD/CAD": 1.3, "EUR/CHF": 1.2, "GBP/JPY": 150}
def rule(i, pair, level):
    lo, hi = f"{level * 0.97:.4f}", f"{level * 1.03:.4f}"
    cond, trig = [
        (f"Above({level})", "Every(rearm: 0.01)"),
        (f"Crossing({level})", "Every()"),
        (f"EnteringChannel(low: {lo}, high: {hi})", "Once"),
        ("MovingDownPercent(percent: 2, over: Bars(5))", 'OncePerBar("30d")'),
        (f"OutsideChannel(low: {lo}, high: {hi})", 'OnBarClose("7d")'),
    ][i % 5]
    return f'    (id: "r{i}", pair: "{pair}", condition: {cond}, trigger: {trig}),'
pairs = list(levels)
with open(f"{work}/ecb20.ron", "w") as f:
    f.write("[\n" + "\n".join(rule(i, pairs[i % 10], levels[pairs[i % 10]]) for i in range(20)) + "\n]\n")
with open(f"{work}/ticks100.ron", "w") as f:
    f.write("[\n" + "\n".join(rule(i, "EUR/USD", round(1.05 + i * 0.001, 4)) for i in range(100)) + "\n]\n")
PY

cat > "$work/store.ron" <<'RON'
Pipeline(name: "bench-backtest",
    resources: { "history": Postgres(url: "postgres://postgres@127.0.0.1:5432/fxbench_backtest") },
    stages: {
        "ecb": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "2026-01-01"),
        "cross": CrossRate(inputs: ["ecb"]),
        "history": Postgres(inputs: ["cross"], resource: "history"),
    })
RON
if ! psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'fxbench_backtest'" | grep -q 1; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE fxbench_backtest"
fi
"$bin" migrate --resource history "$work/store.ron" > /dev/null
rows=$(psql -h 127.0.0.1 -U postgres -d fxbench_backtest -Atc "SELECT count(*) FROM fx_rates")
if [ "$rows" != 2592000 ]; then
    echo "generating 2,592,000 one-second EUR/USD ticks (a random walk) ..."
    psql -h 127.0.0.1 -U postgres -d fxbench_backtest -q <<'SQL'
TRUNCATE fx_rates;
CREATE TABLE IF NOT EXISTS fx_rates_y2026m10 PARTITION OF fx_rates FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
SELECT setseed(0.42) \gset
INSERT INTO fx_rates (pair, ts, source, kind, bid, ask, mid)
SELECT 'EUR/USD', ts, 'desk', 'quote', round(mid - 0.00005, 5), round(mid + 0.00005, 5), round(mid, 5)
FROM (SELECT timestamptz '2026-10-01 00:00:00+00' + s * interval '1 second' AS ts,
             (1.1 + sum((random() - 0.5) * 0.0002) OVER (ORDER BY s))::numeric AS mid
      FROM generate_series(0, 2591999) AS s) walk;
ANALYZE fx_rates;
SQL
fi

echo "== 20 rules over the whole ECB file (5 runs)"
for _ in 1 2 3 4 5; do
    /usr/bin/time -f "   wall %e s, max RSS %M KB" "$bin" backtest "$work/ecb20.ron" --csv examples/data/ecb-eurofxref-hist.csv --format jsonl > /dev/null
done
echo "== 100 rules over 30 days of 1-second EUR/USD ticks in PostgreSQL (3 runs)"
for _ in 1 2 3; do
    /usr/bin/time -f "   wall %e s, max RSS %M KB" "$bin" backtest "$work/ticks100.ron" --pipeline "$work/store.ron" --format jsonl > /dev/null
done
