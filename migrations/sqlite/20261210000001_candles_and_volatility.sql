-- The same tables as migrations/postgres/20261210000001_candles_and_volatility.sql, in
-- SQLite's types: decimals as exact TEXT, timestamps as fixed-width RFC 3339 UTC text
-- (text order is time order), booleans as 0/1.
CREATE TABLE IF NOT EXISTS fx_candles (
    pair          TEXT    NOT NULL,
    interval_name TEXT    NOT NULL,
    bucket        TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    open          TEXT    NOT NULL,
    high          TEXT    NOT NULL,
    low           TEXT    NOT NULL,
    close         TEXT    NOT NULL,
    bid_open      TEXT,
    bid_high      TEXT,
    bid_low       TEXT,
    bid_close     TEXT,
    ask_open      TEXT,
    ask_high      TEXT,
    ask_low       TEXT,
    ask_close     TEXT,
    ticks         INTEGER NOT NULL,
    closed        INTEGER NOT NULL CHECK (closed IN (0, 1)),
    PRIMARY KEY (pair, interval_name, bucket, source)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS fx_volatility (
    pair        TEXT    NOT NULL,
    window_name TEXT    NOT NULL,
    ts          TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    volatility  REAL    NOT NULL,
    samples     INTEGER NOT NULL,
    PRIMARY KEY (pair, window_name, ts, source)
) WITHOUT ROWID;
