#!/usr/bin/env python3
# Part of the broker probes (tests/probes/run.sh).
"""One hop through the broker: produce timestamped msgs at RATE/s for SECONDS, consume, print p50/p99.
usage: hop_latency.py BOOTSTRAP RATE SECONDS FETCH_WAIT_MS"""
import sys, time, threading, json
from confluent_kafka import Producer, Consumer, TopicPartition, OFFSET_END
b, rate, secs, fw = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
c = Consumer({"bootstrap.servers": b, "group.id": "hop", "enable.auto.commit": False, "fetch.wait.max.ms": int(fw)})
c.assign([TopicPartition("hop", p, OFFSET_END) for p in range(8)])
for _ in range(30): c.poll(0.1)
lat = []; stop = False
def consume():
    while not stop:
        m = c.poll(0.05)
        if m is None or m.error(): continue
        lat.append(time.time() - float(m.value()))
t = threading.Thread(target=consume); t.start()
p = Producer({"bootstrap.servers": b, "enable.idempotence": True, "acks": "all", "linger.ms": 1, "compression.type": "lz4"})
t0 = time.time(); i = 0
while time.time() - t0 < secs:
    target = t0 + i / rate
    now = time.time()
    if target > now: time.sleep(target - now)
    p.produce("hop", key=str(i % 28).encode(), value=repr(time.time()).encode()); p.poll(0); i += 1
p.flush(30); time.sleep(2); stop = True; t.join()
lat.sort(); q = lambda x: lat[int(len(lat) * x)] * 1000 if lat else -1
print(f"HOP rate={rate}/s fetch.wait={fw}: n={len(lat)}/{i} p50={q(0.5):.1f}ms p99={q(0.99):.1f}ms max={lat[-1]*1000 if lat else -1:.1f}ms", flush=True)
