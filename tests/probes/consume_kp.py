#!/usr/bin/env python3
# Part of the broker probes (tests/probes/run.sh).
"""kafka-python assign() consumer, no group. usage: consume_kp.py BOOTSTRAP"""
import sys, time, collections
from kafka import KafkaConsumer, TopicPartition
def run(bootstrap, topic="fx.rates", nparts=8, target=28000, idle=30.0, **kw):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **kw)
    tps = [TopicPartition(topic, p) for p in range(nparts)]
    c.assign(tps); c.seek_to_beginning(*tps)
    per = collections.Counter(); last_off = {}
    n = 0; t0 = time.time(); last_msg = time.time()
    while n < target and time.time() - last_msg < idle:
        recs = c.poll(timeout_ms=500, max_records=2000)
        for tp, ms in recs.items():
            for m in ms:
                n += 1; per[tp.partition] += 1; last_off[tp.partition] = m.offset; last_msg = time.time()
    dt = last_msg - t0
    end = c.end_offsets(tps)
    print(f"KP-ASSIGN kw={kw}: count={n} time_to_last_msg={dt:.2f}s rate={n/max(dt,1e-9):.0f} msg/s "
          f"stalled={'yes' if n < target else 'no'}", flush=True)
    print("  per-partition counts:", dict(sorted(per.items())), flush=True)
    print("  last offsets:", dict(sorted(last_off.items())), flush=True)
    print("  end offsets:", {tp.partition: o for tp, o in end.items()}, flush=True)
    c.close(); return n
if __name__ == "__main__":
    try:
        run(sys.argv[1])
    except Exception as e:  # e.g. the broker too busy to answer ListOffsets
        print(f"KP-ASSIGN failed: {type(e).__name__}: {e}", flush=True)
