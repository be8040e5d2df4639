-- Rate history: every quote and cross rate, one row per (pair, ts, source).
--
-- Growth: 28 pairs every second is ~900M rows a year. The table is range-
-- partitioned by month on ts: each month's primary-key index stays a few GB,
-- a 30-day history query for one pair touches one or two partitions through
-- the (pair, ts, source) index, and retention is DROP TABLE of old months.
-- The sink creates each month's partition before it inserts into it; the
-- DEFAULT partition only catches rows written by other tools.
CREATE TABLE IF NOT EXISTS fx_rates (
    pair   text        NOT NULL,
    ts     timestamptz NOT NULL,
    source text        NOT NULL,
    kind   text        NOT NULL CHECK (kind IN ('quote', 'cross')),
    bid    numeric     NOT NULL,
    ask    numeric     NOT NULL,
    mid    numeric     NOT NULL,
    -- The natural key: redelivery after a crash inserts nothing new.
    -- Also the index of the history query (pair = $1 AND ts BETWEEN $2 AND $3).
    PRIMARY KEY (pair, ts, source)
) PARTITION BY RANGE (ts);

CREATE TABLE IF NOT EXISTS fx_rates_default PARTITION OF fx_rates DEFAULT;

-- Alert rules (written by the API stage; one row per rule, the rule itself as JSON).
CREATE TABLE IF NOT EXISTS fx_alert_rules (
    id         text        PRIMARY KEY,
    pair       text        NOT NULL,
    rule       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
-- Rules of one pair, for the API's per-pair listing and the alert workers' cache.
CREATE INDEX IF NOT EXISTS fx_alert_rules_pair ON fx_alert_rules (pair);

-- Every firing: the rule, the value, the previous value and the sample's time.
CREATE TABLE IF NOT EXISTS fx_alert_history (
    rule_id     text        NOT NULL,
    pair        text        NOT NULL,
    condition   text        NOT NULL,
    value       numeric     NOT NULL,
    previous    numeric,
    fired_at    timestamptz NOT NULL,
    source      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- Natural key (idempotent redelivery); its rule_id prefix serves "history of a rule".
    PRIMARY KEY (rule_id, fired_at, source)
);
-- "Latest alerts" and time-range listings across rules.
CREATE INDEX IF NOT EXISTS fx_alert_history_fired_at ON fx_alert_history (fired_at);
