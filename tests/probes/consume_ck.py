#!/usr/bin/env python3
# Part of the broker probes (tests/probes/run.sh).
"""confluent-kafka assign() consumer, no group semantics. usage: consume_ck.py BOOTSTRAP [key=val ...] (extra librdkafka conf)"""
import sys, time, collections
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
def run(bootstrap, extra=None, topic="fx.rates", nparts=8, target=28000, idle=30.0, start=None):
    conf = {"bootstrap.servers": bootstrap, "group.id": "probe-assign", "enable.auto.commit": False,
            "auto.offset.reset": "earliest"}
    conf.update(extra or {})
    c = Consumer(conf)
    c.assign([TopicPartition(topic, p, (start or {}).get(p, OFFSET_BEGINNING)) for p in range(nparts)])
    per = collections.Counter(); last_off = {}; errors = collections.Counter()
    n = 0; t0 = time.time(); last_msg = time.time(); first = None
    while n < target and time.time() - last_msg < idle:
        msgs = c.consume(1000, 0.5)
        for m in msgs:
            if m.error(): errors[str(m.error())] += 1; continue
            if first is None: first = time.time()
            n += 1; per[m.partition()] += 1; last_off[m.partition()] = m.offset(); last_msg = time.time()
    dt = last_msg - t0
    wm = {}
    for p in range(nparts):
        try: wm[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
        except Exception as e: wm[p] = str(e)[:60]
    print(f"CK-ASSIGN extra={extra}: count={n} time_to_last_msg={dt:.2f}s rate={n/max(dt,1e-9):.0f} msg/s "
          f"stalled={'yes' if n < target else 'no'}", flush=True)
    print("  per-partition counts:", dict(sorted(per.items())), flush=True)
    print("  last offsets:", dict(sorted(last_off.items())), flush=True)
    print("  watermarks (low,high):", wm, " errors:", dict(errors), flush=True)
    c.close(); return n, per, last_off
if __name__ == "__main__":
    extra = dict(kv.split("=", 1) for kv in sys.argv[2:])
    run(sys.argv[1], extra)
