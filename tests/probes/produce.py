#!/usr/bin/env python3
# Part of the broker probes (tests/probes/run.sh).
"""Produce N small JSON msgs keyed over 28 pairs. usage: produce.py BOOTSTRAP [compression] [linger_ms] [n]"""
import json, sys, time
from confluent_kafka import Producer
PAIRS = ["EUR/USD","GBP/USD","USD/JPY","USD/CHF","AUD/USD","USD/CAD","NZD/USD","EUR/GBP","EUR/JPY","EUR/CHF",
         "EUR/AUD","EUR/CAD","EUR/NZD","GBP/JPY","GBP/CHF","GBP/AUD","GBP/CAD","GBP/NZD","AUD/JPY","AUD/CHF",
         "AUD/CAD","AUD/NZD","CAD/JPY","CAD/CHF","CHF/JPY","NZD/JPY","NZD/CHF","NZD/CAD"]
assert len(PAIRS) == 28
def make_value(i, pair):
    base = {"pair": pair, "seq": i, "bid": 1.08123 + (i % 1000) * 1e-5, "ask": 1.08133 + (i % 1000) * 1e-5,
            "ts": "2026-11-25T19:00:00.000000Z", "src": "probe", "pad": ""}
    s = json.dumps(base)
    base["pad"] = "x" * max(0, 176 - len(s)); return json.dumps(base).encode()
def run(bootstrap, compression="lz4", linger=5, n=28000, topic="fx.rates", extra=None):
    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "compression.type": compression, "linger.ms": linger}
    conf.update(extra or {})
    p = Producer(conf)
    ok = err = 0; errs = {}
    def cb(e, m):
        nonlocal ok, err
        if e: err += 1; errs[str(e)] = errs.get(str(e), 0) + 1
        else: ok += 1
    t0 = time.time()
    for i in range(n):
        pair = PAIRS[i % 28]
        while True:
            try: p.produce(topic, key=pair.encode(), value=make_value(i, pair), on_delivery=cb); break
            except BufferError: p.poll(0.05)
        p.poll(0)
    left = p.flush(120)
    dt = time.time() - t0
    print(f"PRODUCE compression={compression} linger={linger}: delivered_ok={ok} errors={err} not_flushed={left} "
          f"time={dt:.2f}s rate={ok/dt:.0f} msg/s value_len={len(make_value(0, PAIRS[0]))} errs={errs}", flush=True)
    return p
if __name__ == "__main__":
    a = sys.argv
    run(a[1], a[2] if len(a) > 2 else "lz4", int(a[3]) if len(a) > 3 else 5, int(a[4]) if len(a) > 4 else 28000)
