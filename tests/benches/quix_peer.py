#!/usr/bin/env python3
"""A peer of the Rust worker chain (tests/benches/workers.rs) in Quix Streams.

The same job as the `process` + `alerts` workers, written the way a Quix Streams
user would write it, on the same Apache Kafka broker, so the two can be measured
in one benchmark run:

    fx.snapshots (QuoteSnapshot, one JSON message per snapshot, keyed by source)
      -> the 28 cross rates of the 8 majors, exact decimals (Python `decimal`, 28 digits),
         each in market convention, one message per cross keyed by pair  -> --output
      -> a threshold check per cross (rule `PAIR>THRESHOLD`: bid above it)
         -> one AlertFired message per rule that holds, keyed by pair    -> --alerts

Wire format (what the Rust codec reads and writes, `{"v":1,"kind":...}`):

    {"v":1,"kind":"QuoteSnapshot","source":"alpha","ts":"2026-10-30T00:00:00.001234Z","base":"EUR",
     "quotes":[{"pair":"EUR/USD","bid":"1.08496","ask":"1.08504","ts":"...","source":"alpha"},...]}
    {"v":1,"kind":"CrossRate","pair":"GBP/JPY","bid":"...","ask":"...","ts":"...","source":"alpha","via":"EUR"}
    {"v":1,"kind":"AlertFired","rule_id":"eurusd-above-1.0850","pair":"EUR/USD",
     "condition":"above 1.0850","value":"1.08504","previous":null,"ts":"...","source":"alpha"}

The `Partition` framing of the Rust sinks (`{"v":1,"events":[...]}`) is read too.

Job (stops by itself after --count snapshots, prints one JSON line to stdout):

    python quix_peer.py --brokers 127.0.0.1:19092 --input fx.snapshots \
        --output peer.crosses --alerts peer.alerts --count 20000 --group quix-peer

Producer (N synthetic snapshots in the format above, 4 sources like the Rust bench's
ingest; --rate 0 = as fast as possible; the first snapshot is mid-only at the start
rates, e.g. EUR/GBP 0.86645 and EUR/JPY 155.68, so one cross can be checked by hand):

    python quix_peer.py --brokers 127.0.0.1:19092 --input fx.snapshots --produce 20000

Check (run after the job, on topics that held only this run's messages): 28 crosses per
snapshot keyed by pair, GBP/JPY of every snapshot against a hand computation, the alerts
against the rules:

    python quix_peer.py --brokers 127.0.0.1:19092 --input fx.snapshots \
        --output peer.crosses --alerts peer.alerts --verify

Latency: the wall clock when a cross (alert) has been handed to the producer minus the
input message's Kafka timestamp (CreateTime, set by the producer of the snapshot),
measured in this process. On a backlog (snapshots produced before the job started)
that is mostly queueing time; run the producer with --rate next to the job for a
latency figure. Note: Quix Streams stamps its output messages with the *input*
message's timestamp, so the output topics' timestamps can not be used for this.

Requirements: tests/benches/requirements-peer.txt (quixstreams, which brings
confluent-kafka and orjson).
"""

from __future__ import annotations

import argparse
import decimal
import json
import math
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal

FORMAT_VERSION = 1
# Market convention: the currency that comes first is the base of a pair (stages/src/fx/currency.rs).
PRIORITY = ("EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY")
RANK = {c: i for i, c in enumerate(PRIORITY)}
# The 28 pairs of the majors, each in market convention.
PAIRS = tuple((a, b) for i, a in enumerate(PRIORITY) for b in PRIORITY[i + 1 :])
# rust_decimal keeps 28 significant digits; so does this context (banker's rounding).
CTX = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)
ONE = Decimal(1)
# Producer/sink settings of the Rust KafkaSink (engine/src/kafka/sink.rs); the partitioner
# of librdkafka's default (CRC-32 of the key), which the Rust framing also follows, rather
# than Quix Streams' default murmur2, so a key lands on the same partition in both.
PRODUCER_CONFIG = {
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 5,
    "partitioner": "consistent_random",
}


def text(d: Decimal) -> str:
    """A decimal as plain text (never exponent notation), as rust_decimal writes it."""
    return format(d, "f")


# ---------------------------------------------------------------------------------------
# Cross rates (the four triangulation cases of stages/src/fx/cross.rs)
# ---------------------------------------------------------------------------------------


class Side:
    """One currency's quote against the snapshot's base C: `X/C` (quoted_first) or `C/X`."""

    __slots__ = ("quoted_first", "bid", "ask", "mid_only")

    def __init__(self, quoted_first: bool, bid: str, ask: str):
        self.quoted_first = quoted_first
        self.bid = Decimal(bid)
        self.ask = Decimal(ask)
        # Same text on both sides: a mid-only provider (ECB); computed once.
        self.mid_only = bid == ask


def orient(side: Side, base_first: bool) -> tuple[Decimal, Decimal]:
    """C/X (base_first) or X/C from the quote of X against C: as is, or inverted."""
    if side.quoted_first != base_first:
        return side.bid, side.ask
    if side.mid_only:
        v = CTX.divide(ONE, side.bid)
        return v, v
    # bid(B/A) = 1/ask(A/B), ask(B/A) = 1/bid(A/B)
    return CTX.divide(ONE, side.ask), CTX.divide(ONE, side.bid)


def triangulate(x: Side, y: Side) -> tuple[Decimal, Decimal]:
    """X/Y from the sides of X and Y against the common currency C."""
    mid_only = x.mid_only and y.mid_only
    if x.quoted_first and not y.quoted_first:  # X/C and C/Y
        bid = CTX.multiply(x.bid, y.bid)
        return (bid, bid) if mid_only else (bid, CTX.multiply(x.ask, y.ask))
    if x.quoted_first and y.quoted_first:  # X/C and Y/C
        bid = CTX.divide(x.bid, y.ask)
        return (bid, bid) if mid_only else (bid, CTX.divide(x.ask, y.bid))
    if not x.quoted_first and not y.quoted_first:  # C/X and C/Y
        bid = CTX.divide(y.bid, x.ask)
        return (bid, bid) if mid_only else (bid, CTX.divide(y.ask, x.bid))
    # C/X and Y/C: X/Y = 1 / (C/X * Y/C)
    bid = CTX.divide(ONE, CTX.multiply(x.ask, y.ask))
    return (bid, bid) if mid_only else (bid, CTX.divide(ONE, CTX.multiply(x.bid, y.bid)))


def crosses_of(snapshot: dict) -> list[dict]:
    """The CrossRate messages of one QuoteSnapshot: every pair of the majors it covers."""
    base = snapshot["base"]
    ts = snapshot["ts"]
    source = snapshot["source"]
    sides: dict[str, Side] = {}
    for q in snapshot["quotes"]:
        a, _, b = q["pair"].partition("/")
        if a == base:
            sides[b] = Side(False, q["bid"], q["ask"])
        elif b == base:
            sides[a] = Side(True, q["bid"], q["ask"])
    out = []
    for a, b in PAIRS:
        if a == base:
            side = sides.get(b)
            if side is None:
                continue
            bid, ask = orient(side, True)
        elif b == base:
            side = sides.get(a)
            if side is None:
                continue
            bid, ask = orient(side, False)
        else:
            x, y = sides.get(a), sides.get(b)
            if x is None or y is None:
                continue
            bid, ask = triangulate(x, y)
        out.append(
            {
                "v": FORMAT_VERSION,
                "kind": "CrossRate",
                "pair": f"{a}/{b}",
                "bid": text(bid),
                "ask": text(ask),
                "ts": ts,
                "source": source,
                "via": base,
            }
        )
    return out


# ---------------------------------------------------------------------------------------
# Alert rules
# ---------------------------------------------------------------------------------------


def parse_rule(spec: str) -> tuple[str, str, Decimal]:
    """`EUR/USD>1.0850` or `EUR/USD above 1.0850` -> (pair, rule id, threshold)."""
    s = spec.replace(" above ", ">").replace(" ", "")
    pair, sep, value = s.partition(">")
    if not sep or "/" not in pair:
        raise argparse.ArgumentTypeError(f"rule {spec!r}: expected PAIR>THRESHOLD, e.g. EUR/USD>1.0850")
    a, _, b = pair.upper().partition("/")
    if a not in RANK or b not in RANK or a == b:
        raise argparse.ArgumentTypeError(f"rule {spec!r}: not a pair of {' '.join(PRIORITY)}")
    if RANK[a] > RANK[b]:
        raise argparse.ArgumentTypeError(f"rule {spec!r}: the market-convention pair is {b}/{a}")
    try:
        threshold = Decimal(value)
    except decimal.InvalidOperation:
        raise argparse.ArgumentTypeError(f"rule {spec!r}: {value!r} is not a number") from None
    rule_id = f"{a}{b}-above-{value}".lower()
    return f"{a}/{b}", rule_id, threshold


# ---------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    i = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return round(sorted_values[i], 3)


def reset_group(brokers: str, group: str) -> None:
    """Forget the group's committed offsets, so the run starts from the earliest offset."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.delete_consumer_groups([group], request_timeout=30).values():
        try:
            future.result()
        except KafkaException as e:
            err = e.args[0]
            if err.name() in ("GROUP_ID_NOT_FOUND", "_GROUP_ID_NOT_FOUND"):
                continue
            raise SystemExit(f"cannot reset consumer group {group!r}: {err.str()} (is another member running?)")


def run_job(args: argparse.Namespace) -> int:
    from quixstreams import Application
    from quixstreams.models import TopicConfig

    rules: dict[str, list[tuple[str, str, Decimal]]] = {}
    for pair, rule_id, threshold in args.rule:
        rules.setdefault(pair, []).append((rule_id, f"above {threshold}", threshold))

    if not args.keep_offsets:
        reset_group(args.brokers, args.group)

    # A stateless job: Quix Streams only makes an empty folder of the group's name there.
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="quix-peer-state-")
    app = Application(
        broker_address=args.brokers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        state_dir=state_dir,
        loglevel=args.loglevel,
        producer_extra_config=PRODUCER_CONFIG,
        use_changelog_topics=False,  # stateless: no changelog topics to look for
    )
    config = TopicConfig(num_partitions=args.partitions, replication_factor=1)
    snapshots_topic = app.topic(args.input, key_deserializer="str", value_deserializer="json", config=config)
    crosses_topic = app.topic(args.output, key_serializer="str", value_serializer="json", config=config)
    alerts_topic = app.topic(args.alerts, key_serializer="str", value_serializer="json", config=config)

    stats = {"snapshots": 0, "skipped": 0, "crosses": 0, "alerts": 0, "first": None, "last": None, "stop": None}
    cross_latency: list[float] = []
    alert_latency: list[float] = []
    count = args.count
    now = time.time

    def explode(value, key, timestamp, headers):
        """A snapshot message -> its cross rates (expand=True: one row each)."""
        if stats["first"] is None:
            stats["first"] = time.perf_counter()
        if not isinstance(value, dict) or value.get("v") != FORMAT_VERSION:
            stats["skipped"] += 1
            return []
        # One event per message, or a batch (the Rust sinks' `Partition` framing).
        events = value["events"] if "events" in value else (value,)
        out = []
        for event in events:
            if event.get("kind") != "QuoteSnapshot":
                stats["skipped"] += 1
                continue
            stats["snapshots"] += 1
            out.extend(crosses_of(event))
            stats["last"] = time.perf_counter()
            if stats["snapshots"] >= count:
                # Stops the poll loop once this message has gone through the whole dataframe.
                app.stop()
                stats["stop"] = time.perf_counter()
                break
        return out

    def on_cross(value, key, timestamp, headers):
        stats["crosses"] += 1
        cross_latency.append(now() * 1000.0 - timestamp)

    def above_threshold(cross) -> bool:
        pair_rules = rules.get(cross["pair"])
        if not pair_rules:
            return False
        bid = Decimal(cross["bid"])
        return any(bid > threshold for _, _, threshold in pair_rules)

    def alerts_of(cross) -> list[dict]:
        bid = Decimal(cross["bid"])
        return [
            {
                "v": FORMAT_VERSION,
                "kind": "AlertFired",
                "rule_id": rule_id,
                "pair": cross["pair"],
                "condition": condition,
                "value": cross["bid"],
                "previous": None,
                "ts": cross["ts"],
                "source": cross["source"],
            }
            for rule_id, condition, threshold in rules[cross["pair"]]
            if bid > threshold
        ]

    def on_alert(value, key, timestamp, headers):
        stats["alerts"] += 1
        alert_latency.append(now() * 1000.0 - timestamp)

    pair_key = lambda value: value["pair"]  # noqa: E731

    sdf = app.dataframe(snapshots_topic)
    sdf = sdf.apply(explode, expand=True, metadata=True)
    sdf = sdf.to_topic(crosses_topic, key=pair_key)
    sdf = sdf.update(on_cross, metadata=True)
    sdf = sdf.filter(above_threshold)
    sdf = sdf.apply(alerts_of, expand=True)
    sdf = sdf.to_topic(alerts_topic, key=pair_key)
    sdf = sdf.update(on_alert, metadata=True)

    # The job stops itself after --count snapshots (explode calls app.stop(): `count=` of
    # app.run() counts outputs, not inputs). `timeout`: a safety stop when the input runs
    # dry before --count snapshots.
    try:
        app.run(timeout=args.idle_timeout)
    finally:
        done = time.perf_counter()  # the producer has been flushed and the offsets committed
        if not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)

    n, m, k = stats["snapshots"], stats["crosses"], stats["alerts"]
    first = stats["first"]
    # Input ran dry (idle timeout): up to the last snapshot, not the idle wait.
    end = done if stats["stop"] is not None else stats["last"]
    seconds = (end - first) if first is not None else 0.0
    cross_latency.sort()
    alert_latency.sort()
    result = {
        "snapshots": n,
        "crosses": m,
        "alerts": k,
        "seconds": round(seconds, 3),
        "quotes_per_s": round(m / seconds, 1) if seconds else None,
        "crosses_per_s": round(m / seconds, 1) if seconds else None,
        "snapshots_per_s": round(n / seconds, 1) if seconds else None,
        "latency_p50_ms": percentile(cross_latency, 0.50),
        "latency_p99_ms": percentile(cross_latency, 0.99),
        "latency_max_ms": round(cross_latency[-1], 3) if cross_latency else None,
        "alert_latency_p50_ms": percentile(alert_latency, 0.50),
        "alert_latency_p99_ms": percentile(alert_latency, 0.99),
        # Of `seconds`: from the last snapshot to the end (flush the producer, commit, close).
        "shutdown_s": round(done - stats["stop"], 3) if stats["stop"] else None,
        "skipped": stats["skipped"],
        "quixstreams": _quix_version(),
    }
    print(json.dumps(result), flush=True)
    return 0 if n >= count else 1


def _quix_version() -> str:
    try:
        from importlib.metadata import version

        return version("quixstreams")
    except Exception:  # pragma: no cover
        return "unknown"


# ---------------------------------------------------------------------------------------
# The producer
# ---------------------------------------------------------------------------------------

# Start mids of EUR against the other majors, and the decimals they are quoted to.
START = {
    "USD": "1.0850",
    "GBP": "0.86645",
    "AUD": "1.6480",
    "NZD": "1.8150",
    "CAD": "1.4920",
    "CHF": "0.9410",
    "JPY": "155.68",
}
SOURCES = ("alpha", "bravo", "charlie", "delta")


def iso_us(us: int) -> str:
    """RFC 3339 UTC with microseconds, as chrono writes a DateTime<Utc>."""
    return datetime.fromtimestamp(us / 1_000_000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_producer(args: argparse.Namespace) -> int:
    import orjson
    from quixstreams import Application

    app = Application(broker_address=args.brokers, loglevel=args.loglevel, producer_extra_config=PRODUCER_CONFIG)
    rng = random.Random(args.seed)
    # One walk per source; quantum: one digit past the display precision (pip 0.01 for JPY).
    walks = {s: {c: Decimal(v) for c, v in START.items()} for s in SOURCES}
    quantum = {c: Decimal("0.001") if c == "JPY" else Decimal("0.00001") for c in START}
    half_spread = {c: Decimal("0.004") if c == "JPY" else Decimal("0.00004") for c in START}  # 0.8 pip
    sigma = Decimal(args.volatility_bp) / Decimal(10000)
    n = args.produce
    last_us = {s: 0 for s in SOURCES}
    started = time.perf_counter()
    with app.get_producer() as producer:
        for i in range(n):
            source = SOURCES[i % len(SOURCES)]
            # The wall clock, strictly increasing per source: (source, ts) names one snapshot.
            us = last_us[source] = max(time.time_ns() // 1000, last_us[source] + 1)
            ts = iso_us(us)
            quotes = []
            mids = walks[source]
            for c in START:
                if i == 0:
                    # The reference snapshot: mid-only at the start rates (checkable by hand).
                    bid = ask = START[c]
                else:
                    shock = Decimal(int(rng.gauss(0.0, 1.0) * 1_000_000)) / Decimal(1_000_000)
                    mid = (mids[c] * (ONE + sigma * shock)).quantize(quantum[c])
                    mids[c] = mid
                    bid, ask = text(mid - half_spread[c]), text(mid + half_spread[c])
                quotes.append({"pair": f"EUR/{c}", "bid": bid, "ask": ask, "ts": ts, "source": source})
            snapshot = {"v": FORMAT_VERSION, "kind": "QuoteSnapshot", "source": source, "ts": ts, "base": "EUR", "quotes": quotes}
            producer.produce(topic=args.input, key=source, value=orjson.dumps(snapshot))
            if i == 0:
                # Wait for the first delivery: librdkafka connects and gets its idempotent
                # producer id first (~0.5 s on a fresh broker), and snapshots stamped
                # meanwhile would show that wait as the job's latency.
                producer.flush()
                paced_from = time.perf_counter()
            if args.rate:
                ahead = paced_from + i / args.rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
    seconds = time.perf_counter() - started
    print(json.dumps({"produced": n, "seconds": round(seconds, 3), "snapshots_per_s": round(n / seconds, 1)}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------


def read_topic(brokers: str, topic: str) -> list[tuple[bytes, int, dict]]:
    """Every message of `topic` as (key, partition, JSON value), without a consumer group."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "quix-peer-verify", "enable.auto.commit": False})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        end = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[tuple[bytes, int, dict]] = []
        while len(out) < end:
            batch = consumer.consume(10000, timeout=10)
            if not batch:
                raise SystemExit(f"{topic}: read {len(out)} of {end} messages, then nothing")
            for m in batch:
                if m.error():
                    raise SystemExit(f"{topic}: {m.error()}")
                out.append((m.key(), m.partition(), json.loads(m.value())))
        return out
    finally:
        consumer.close()


def run_verify(args: argparse.Namespace) -> int:
    """Check the job's output topics against its input topic (which it read whole)."""
    import zlib
    from collections import Counter

    snapshots = {(v["source"], v["ts"]): v for _, _, v in read_topic(args.brokers, args.input)}
    crosses = read_topic(args.brokers, args.output)
    alerts = read_topic(args.brokers, args.alerts)
    problems = []
    per_snapshot = Counter((v["source"], v["ts"]) for _, _, v in crosses)
    shape = Counter(per_snapshot.values())
    if shape != Counter({28: len(snapshots)}):
        problems.append(f"crosses per snapshot {dict(shape)}, {len(snapshots)} snapshots")
    partitions = 1 + max((p for _, p, _ in crosses), default=0)
    misplaced = sum(k is None or k.decode() != v["pair"] or zlib.crc32(k) % partitions != p for k, p, v in crosses)
    if misplaced:
        problems.append(f"{misplaced} crosses not keyed by pair or not on the partition of CRC-32(key)")
    # GBP/JPY by hand from each snapshot: bid = bid(EUR/JPY)/ask(EUR/GBP), ask = ask(EUR/JPY)/bid(EUR/GBP).
    wrong = reference = 0
    for _, _, v in crosses:
        if v["pair"] != "GBP/JPY":
            continue
        q = {x["pair"]: x for x in snapshots[(v["source"], v["ts"])]["quotes"]}
        gbp, jpy = q["EUR/GBP"], q["EUR/JPY"]
        bid = CTX.divide(Decimal(jpy["bid"]), Decimal(gbp["ask"]))
        ask = CTX.divide(Decimal(jpy["ask"]), Decimal(gbp["bid"]))
        wrong += Decimal(v["bid"]) != bid or Decimal(v["ask"]) != ask
        if gbp["bid"] == gbp["ask"] == "0.86645" and jpy["bid"] == jpy["ask"] == "155.68":
            reference += 1
            if v["bid"] != "179.6756881528074326273876161" or v["ask"] != v["bid"]:
                problems.append(f"reference GBP/JPY {v['bid']}/{v['ask']}, expected 179.6756881528074326273876161")
    if wrong:
        problems.append(f"{wrong} GBP/JPY crosses differ from the hand computation")
    rules: dict[str, list[tuple[str, Decimal]]] = {}
    for pair, rule_id, threshold in args.rule:
        rules.setdefault(pair, []).append((rule_id, threshold))
    expected = Counter(
        rule_id
        for _, _, v in crosses
        for rule_id, threshold in rules.get(v["pair"], ())
        if Decimal(v["bid"]) > threshold
    )
    fired = Counter(v["rule_id"] for _, _, v in alerts)
    if fired != expected:
        problems.append(f"alerts {dict(fired)}, expected {dict(expected)}")
    print(
        json.dumps(
            {
                "snapshots": len(snapshots),
                "crosses": len(crosses),
                "alerts": len(alerts),
                "alerts_by_rule": dict(fired),
                "reference_snapshots": reference,
                "problems": problems,
            }
        ),
        flush=True,
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brokers", default="127.0.0.1:9092")
    p.add_argument("--input", default="fx.snapshots", help="the QuoteSnapshot topic")
    p.add_argument("--output", default="peer.crosses", help="the cross-rate topic")
    p.add_argument("--alerts", default="peer.alerts", help="the alert topic")
    p.add_argument("--count", type=int, default=20000, help="stop after this many snapshots")
    p.add_argument("--group", default="quix-peer", help="the consumer group")
    p.add_argument(
        "--rule",
        type=parse_rule,
        action="append",
        help="alert rule PAIR>THRESHOLD (bid above it); repeatable. Default: EUR/USD>1.0850 GBP/JPY>179.70",
    )
    p.add_argument("--keep-offsets", action="store_true", help="resume from the group's offsets (default: earliest)")
    p.add_argument("--commit-interval", type=float, default=5.0, help="seconds between checkpoints (Quix default 5)")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="stop when no message came for this long (s)")
    p.add_argument("--partitions", type=int, default=8, help="partitions of topics Quix Streams has to create")
    p.add_argument("--state-dir", help="Quix Streams' state folder (default: a new one under /tmp)")
    p.add_argument("--loglevel", default="WARNING")
    p.add_argument("--produce", type=int, metavar="N", help="instead: write N synthetic snapshots to --input")
    p.add_argument("--verify", action="store_true", help="instead: check --output and --alerts against --input")
    p.add_argument("--rate", type=float, default=0.0, help="with --produce: snapshots per second (0: as fast as possible)")
    p.add_argument("--seed", type=int, default=0, help="with --produce: the random walk's seed")
    p.add_argument("--volatility-bp", default="0.5", help="with --produce: σ of one step in basis points")
    args = p.parse_args(argv)
    if args.rule is None:
        args.rule = [parse_rule("EUR/USD>1.0850"), parse_rule("GBP/JPY>179.70")]
    if args.produce is not None:
        return run_producer(args)
    if args.verify:
        return run_verify(args)
    if args.count <= 0:
        p.error("--count must be positive")
    return run_job(args)


if __name__ == "__main__":
    sys.exit(main())
