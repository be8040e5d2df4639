#!/usr/bin/env python3
# Part of the broker probes (tests/probes/run.sh).
"""Like the process worker: 1000 ticks of 28 keyed msgs, a pause between ticks (small record batches).
usage: produce_ticks.py BOOTSTRAP pause_ms [ticks]"""
import sys, time
from confluent_kafka import Producer
from produce import PAIRS, make_value
b, pause = sys.argv[1], float(sys.argv[2]) / 1000
HEADERS = [("content-type", b"application/json")] if len(sys.argv) > 4 and sys.argv[4] == "headers" else None
ticks = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
p = Producer({"bootstrap.servers": b, "enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 5})
ok = 0
def cb(e, m):
    global ok
    if not e: ok += 1
t0 = time.time()
for t in range(ticks):
    for j, pair in enumerate(PAIRS):
        p.produce("fx.rates", key=pair.encode(), value=make_value(t * 28 + j, pair), on_delivery=cb, headers=HEADERS)
    p.poll(0)
    time.sleep(pause)
p.flush(120)
print(f"PRODUCE-TICKS pause={pause*1000}ms ticks={ticks}: ok={ok} time={time.time()-t0:.2f}s", flush=True)
