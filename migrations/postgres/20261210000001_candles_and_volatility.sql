-- Candles: OHLC bars of the mid (and of bid and ask when the prices were two-sided),
-- one row per (pair, interval, bucket, source), written by the Candles stage through
-- the store sinks. A bar emitted again (an update while its interval is still open,
-- a re-delivery after a crash) replaces the stored one — a final bar only by another
-- final one, an open bar only by one with at least as many ticks — so any order of
-- the same emissions ends with the same row.
--
-- Size: 28 pairs of 1-minute bars are ~40,000 rows a day (14.7 M a year); the primary
-- key is the index of the API's query (pair, interval, bucket range), which reads one
-- row per bar however many ticks made it.
CREATE TABLE IF NOT EXISTS fx_candles (
    pair          text        NOT NULL,
    interval_name text        NOT NULL,   -- "1m", "5m", "1h", "1d" (the shortest exact unit)
    bucket        timestamptz NOT NULL,   -- the bar's first instant
    source        text        NOT NULL,
    open          numeric     NOT NULL,
    high          numeric     NOT NULL,
    low           numeric     NOT NULL,
    close         numeric     NOT NULL,
    bid_open      numeric,
    bid_high      numeric,
    bid_low       numeric,
    bid_close     numeric,
    ask_open      numeric,
    ask_high      numeric,
    ask_low       numeric,
    ask_close     numeric,
    ticks         bigint      NOT NULL,
    closed        boolean     NOT NULL,   -- false: the interval was still open
    PRIMARY KEY (pair, interval_name, bucket, source)
);

-- Volatility: the annualised standard deviation of log returns over a window, one row per
-- (pair, window, end of the window, source), from the Volatility stage. A statistic, so a
-- double; prices stay numeric everywhere else.
CREATE TABLE IF NOT EXISTS fx_volatility (
    pair        text             NOT NULL,
    window_name text             NOT NULL,   -- "30d"
    ts          timestamptz      NOT NULL,   -- the window's end
    source      text             NOT NULL,
    volatility  double precision NOT NULL,
    samples     bigint           NOT NULL,   -- returns in the window
    PRIMARY KEY (pair, window_name, ts, source)
);
