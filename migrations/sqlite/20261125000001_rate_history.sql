-- The embedded store of pipelines/local.ron: the same tables as migrations/postgres,
-- in SQLite's types. Decimals are TEXT, written exactly as rust_decimal prints them
-- (SQLite's NUMERIC affinity would round them through a double).
CREATE TABLE IF NOT EXISTS fx_rates (
    pair   TEXT NOT NULL,
    ts     TEXT NOT NULL,   -- RFC 3339, UTC: sorts in time order
    source TEXT NOT NULL,
    kind   TEXT NOT NULL CHECK (kind IN ('quote', 'cross')),
    bid    TEXT NOT NULL,
    ask    TEXT NOT NULL,
    mid    TEXT NOT NULL,
    -- Natural key (idempotent redelivery) and the index of the per-pair history query.
    PRIMARY KEY (pair, ts, source)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS fx_alert_rules (
    id         TEXT PRIMARY KEY,
    pair       TEXT NOT NULL,
    rule       TEXT NOT NULL,   -- JSON
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at TEXT
);
CREATE INDEX IF NOT EXISTS fx_alert_rules_pair ON fx_alert_rules (pair);

CREATE TABLE IF NOT EXISTS fx_alert_history (
    rule_id     TEXT NOT NULL,
    pair        TEXT NOT NULL,
    condition   TEXT NOT NULL,
    value       TEXT NOT NULL,
    previous    TEXT,
    fired_at    TEXT NOT NULL,
    source      TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (rule_id, fired_at, source)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fx_alert_history_fired_at ON fx_alert_history (fired_at);
