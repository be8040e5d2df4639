//! `HttpPoll` against a local HTTP server that answers with the providers' real response shapes,
//! scripted through success, conditional `304`, throttling, server errors and unusable bodies.
//!
//! Timing is asserted only as lower bounds the stage itself must wait (`Retry-After`, backoff),
//! which a slow machine can only lengthen, never shorten.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Response, Uri};
use fxflow_engine::testkit::counter_value;
use fxflow_stages::fx::{FxEvent, QuoteSnapshot};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// One scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    uri: String,
    if_none_match: Option<String>,
    authorization: Option<String>,
}

type After = Box<dyn Fn(&Uri, &HeaderMap) -> Option<Reply> + Send + Sync>;

/// Serves `script` in order, then whatever `after` answers (`None`: never answer).
struct Server {
    script: Mutex<VecDeque<Reply>>,
    after: After,
    seen: Mutex<Vec<Seen>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Wait (up to a minute) until the server has seen `n` requests.
    async fn wait_for(&self, n: usize) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "only {} of {n} requests arrived", seen.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(script: Vec<Reply>, after: After) -> (String, Arc<Server>) {
    let server = Arc::new(Server {
        script: Mutex::new(script.into()),
        after,
        seen: Mutex::new(Vec::new()),
    });
    let state = server.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let server = state.clone();
        async move {
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            server.seen.lock().unwrap().push(Seen {
                at: Instant::now(),
                uri: uri.to_string(),
                if_none_match: header("if-none-match"),
                authorization: header("authorization"),
            });
            let next = server.script.lock().unwrap().pop_front();
            let Some(reply) = next.or_else(|| (server.after)(&uri, &headers)) else {
                // Never answer: the client's timeout or shutdown has to end the wait.
                std::future::pending::<()>().await;
                unreachable!();
            };
            let mut response = Response::builder().status(reply.status);
            for (name, value) in &reply.headers {
                response = response.header(*name, value);
            }
            response.body(Body::from(reply.body)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, server)
}

/// Start `HttpPoll(<stage>)` with its events and dead letters written to JSON lines in `out`.
async fn start(name: &str, stage: &str, out: &Path) -> fxflow_engine::RunningPipeline<fxflow_stages::fx::FxEvent> {
    let ron = format!(
        r#"Pipeline(name: "{name}", stages: {{
            "poll": HttpPoll({stage}),
            "events": JsonlFile(inputs: ["poll"], path: "{events}"),
            "dead": JsonlFile(inputs: ["poll.errors"], path: "{dead}"),
        }})"#,
        events = out.join("events.jsonl").display(),
        dead = out.join("dead.jsonl").display(),
    );
    let spec = fxflow_engine::pipeline_file::load_str("test.ron", &ron, &fxflow_stages::registry(), |_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    fxflow_engine::start(spec).await.unwrap()
}

fn lines(path: &Path) -> Vec<FxEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn snapshots(out: &Path) -> Vec<QuoteSnapshot> {
    lines(&out.join("events.jsonl"))
        .into_iter()
        .map(|event| match event {
            FxEvent::QuoteSnapshot(s) => s,
            other => panic!("not a snapshot: {other:?}"),
        })
        .collect()
}

/// (reason, error, raw) of every dead letter.
fn dead_letters(out: &Path) -> Vec<(String, String, String)> {
    lines(&out.join("dead.jsonl"))
        .into_iter()
        .map(|event| match event {
            FxEvent::DeadLetter(d) => (d.reason, d.error, d.raw.unwrap_or_default()),
            other => panic!("not a dead letter: {other:?}"),
        })
        .collect()
}

fn price(s: &QuoteSnapshot, pair: &str) -> (Decimal, Decimal) {
    let q = s
        .quotes
        .iter()
        .find(|q| q.pair.to_string() == pair)
        .unwrap_or_else(|| panic!("no {pair}"));
    (q.bid, q.ask)
}

fn frankfurter(date: &str, eur: &str, with_jpy: bool) -> String {
    let jpy = if with_jpy { r#","JPY":156.42"# } else { "" };
    format!(
        r#"{{"amount":1.0,"base":"USD","date":"{date}","rates":{{"AUD":1.5342,"CAD":1.4023,"CHF":0.8052,"EUR":{eur},"GBP":0.7608{jpy},"NZD":1.7716}}}}"#
    )
}

#[tokio::test]
async fn frankfurter_through_304_throttling_errors_and_bad_bodies() {
    let metrics = fxflow_engine::metrics::install_recorder();
    let day1 = frankfurter("2026-11-23", "0.86", true);
    let day2 = frankfurter("2026-11-24", "0.8601", true);
    let script = vec![
        reply(200, &day1).header("etag", "\"d1\""),                 // 0: snapshot 1
        reply(304, ""),                                             // 1: not modified
        reply(429, "Too Many Requests").header("retry-after", "1"), // 2: throttled
        reply(500, "<html>Internal Server Error</html>"),           // 3: server error
        reply(200, r#"{"message":"not found"}"#),                   // 4: 200, unusable body
        reply(200, &frankfurter("2026-11-24", "0.8601", false)),    // 5: JPY missing
        reply(200, &day2).header("etag", "\"d2\""),                 // 6: snapshot 2
        reply(200, &day2),                                          // 7: same day again
    ];
    let after_day2 = day2.clone();
    let (url, server) = serve(
        script,
        Box::new(move |_, headers| {
            Some(match headers.get("if-none-match") {
                Some(_) => reply(304, ""),
                None => reply(200, &after_day2).header("etag", "\"d2\""),
            })
        }),
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let pipeline = "http-poll-frankfurter";
    let running = start(
        pipeline,
        &format!(
            r#"provider: Frankfurter, url: "{url}", interval: "100ms", initial_backoff: "100ms", max_backoff: "10s", timeout: "5s""#
        ),
        out.path(),
    )
    .await;
    let seen = server.wait_for(11).await;
    running.stop(Duration::from_secs(10)).await.unwrap();

    // Every request asked for the majors against USD.
    for s in &seen {
        assert!(
            s.uri
                .starts_with("/latest?base=USD&symbols=EUR%2CGBP%2CAUD%2CNZD%2CCAD%2CCHF%2CJPY"),
            "{}",
            s.uri
        );
    }
    // Conditional requests: the ETag of the last good answer, and none after a failed poll.
    assert_eq!(seen[0].if_none_match, None);
    assert_eq!(seen[1].if_none_match.as_deref(), Some("\"d1\""));
    assert_eq!(seen[2].if_none_match.as_deref(), Some("\"d1\""));
    assert!(seen[3..=6].iter().all(|s| s.if_none_match.is_none()), "{seen:#?}");
    assert_eq!(seen[7].if_none_match.as_deref(), Some("\"d2\""));
    assert!(
        seen[8..].iter().any(|s| s.if_none_match.as_deref() == Some("\"d2\"")),
        "{seen:#?}"
    );

    // Backoff: Retry-After honoured, then doubling waits (100 ms interval, 100 ms initial backoff).
    let gap = |i: usize| seen[i + 1].at - seen[i].at;
    assert!(
        gap(2) >= Duration::from_secs(1),
        "Retry-After: 1 not honoured: {:?}",
        gap(2)
    );
    assert!(gap(3) >= Duration::from_millis(200), "2nd failure: {:?}", gap(3));
    assert!(gap(4) >= Duration::from_millis(400), "3rd failure: {:?}", gap(4));
    assert!(gap(5) >= Duration::from_millis(800), "4th failure: {:?}", gap(5));

    // Exactly the two days, complete and exact: no partial snapshot, no repeat of a day.
    let snapshots = snapshots(out.path());
    let days: Vec<String> = snapshots.iter().map(|s| s.ts.to_rfc3339()).collect();
    assert_eq!(days, ["2026-11-23T00:00:00+00:00", "2026-11-24T00:00:00+00:00"]);
    for s in &snapshots {
        assert_eq!(s.base.code(), "USD");
        assert_eq!(s.source.as_str(), "frankfurter");
        assert_eq!(s.quotes.len(), 7);
        assert!(s.quotes.iter().all(|q| q.pair.is_market_convention() && q.bid == q.ask));
    }
    assert_eq!(price(&snapshots[0], "EUR/USD").0, Decimal::ONE / dec!(0.86));
    assert_eq!(price(&snapshots[1], "EUR/USD").0, Decimal::ONE / dec!(0.8601));
    assert_eq!(price(&snapshots[1], "USD/JPY"), (dec!(156.42), dec!(156.42)));
    assert_eq!(price(&snapshots[1], "USD/CAD").0.to_string(), "1.4023");

    // The two unusable answers are dead letters with their bodies; the rest is only counted.
    let dead = dead_letters(out.path());
    let reasons: Vec<&str> = dead.iter().map(|(r, _, _)| r.as_str()).collect();
    assert_eq!(reasons, ["bad_response", "missing_symbols"]);
    assert!(dead[0].2.contains("not found"), "{:?}", dead[0]);
    assert!(dead[1].1.contains("JPY"), "{:?}", dead[1]);
    assert!(dead[1].2.contains("\"2026-11-24\""), "{:?}", dead[1]);

    let rendered = metrics.render();
    let count = |metric: &str, label: (&str, &str)| {
        counter_value(&rendered, metric, &[("pipeline", pipeline), ("stage", "poll"), label])
    };
    for reason in ["throttled", "server_error", "bad_response", "missing_symbols"] {
        assert_eq!(
            count("fxflow_stage_errors_total", ("error_type", reason)),
            1.0,
            "{reason}"
        );
    }
    assert_eq!(count("fxflow_http_poll_polls_total", ("outcome", "snapshot")), 2.0);
    assert_eq!(count("fxflow_http_poll_polls_total", ("outcome", "failed")), 4.0);
    assert!(count("fxflow_http_poll_polls_total", ("outcome", "not_modified")) >= 2.0);
    assert!(count("fxflow_http_poll_polls_total", ("outcome", "unchanged")) >= 1.0);
}

fn alpha_vantage(from: &str, to: &str, bid: &str, ask: &str) -> String {
    format!(
        r#"{{"Realtime Currency Exchange Rate": {{"1. From_Currency Code": "{from}", "2. From_Currency Name": "-", "3. To_Currency Code": "{to}", "4. To_Currency Name": "-", "5. Exchange Rate": "{bid}", "6. Last Refreshed": "2026-11-24 10:00:01", "7. Time Zone": "UTC", "8. Bid Price": "{bid}", "9. Ask Price": "{ask}"}}}}"#
    )
}

#[tokio::test]
async fn alpha_vantage_asks_per_pair_backs_off_on_a_200_note_and_never_leaks_the_key() {
    let key_var = "FXFLOW_TEST_HTTP_POLL_AV_KEY";
    std::env::set_var(key_var, "s3cret-av-key");
    let script = vec![
        reply(
            200,
            r#"{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day."}"#,
        ),
        reply(
            200,
            r#"{"Error Message": "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) for CURRENCY_EXCHANGE_RATE."}"#,
        ),
    ];
    let (url, server) = serve(
        script,
        Box::new(|uri, _| {
            let query = uri.query().unwrap_or("");
            Some(if query.contains("from_currency=EUR&to_currency=USD") {
                reply(200, &alpha_vantage("EUR", "USD", "1.16160000", "1.16180000"))
            } else if query.contains("from_currency=USD&to_currency=JPY") {
                reply(200, &alpha_vantage("USD", "JPY", "156.41000000", "156.43000000"))
            } else {
                reply(200, r#"{"Error Message": "unexpected pair"}"#)
            })
        }),
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let running = start(
        "http-poll-alphavantage",
        &format!(
            r#"provider: AlphaVantage, url: "{url}", symbols: ["EUR", "JPY"], api_key_env: "{key_var}", interval: "50ms", initial_backoff: "50ms", max_backoff: "300ms""#
        ),
        out.path(),
    )
    .await;
    // Note, Error Message, then three good polls of two requests each.
    let seen = server.wait_for(8).await;
    running.stop(Duration::from_secs(10)).await.unwrap();

    assert!(seen
        .iter()
        .all(|s| s.uri.contains("function=CURRENCY_EXCHANGE_RATE") && s.uri.contains("apikey=s3cret-av-key")));
    // A failed request ends its poll: the Note's poll made one request, not two.
    assert!(seen[0].uri.contains("to_currency=USD") && seen[1].uri.contains("to_currency=USD"));
    let snapshots = snapshots(out.path());
    assert_eq!(
        snapshots.len(),
        1,
        "later polls had the same Last Refreshed: {snapshots:?}"
    );
    let s = &snapshots[0];
    assert_eq!(s.ts.to_rfc3339(), "2026-11-24T10:00:01+00:00");
    assert_eq!(price(s, "EUR/USD"), (dec!(1.16160000), dec!(1.16180000)));
    assert_eq!(price(s, "USD/JPY").1.to_string(), "156.43000000");
    // The Note is throttling (counted, not dead-lettered); the Error Message is dead-lettered,
    // with the URL shown redacted.
    let dead = dead_letters(out.path());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, "provider_error");
    assert!(dead[0].1.contains("apikey=REDACTED"), "{:?}", dead[0]);
    let text = std::fs::read_to_string(out.path().join("dead.jsonl")).unwrap();
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn oanda_sends_its_bearer_token_and_dead_letters_a_401() {
    let key_var = "FXFLOW_TEST_HTTP_POLL_OANDA_TOKEN";
    std::env::set_var(key_var, "t0ken-oanda");
    let prices = r#"{"time":"2026-11-24T10:00:02.000000000Z","prices":[
        {"type":"PRICE","time":"2026-11-24T10:00:01.123456789Z","bids":[{"price":"1.16160","liquidity":1000000}],"asks":[{"price":"1.16180","liquidity":1000000}],"closeoutBid":"1.16150","closeoutAsk":"1.16190","status":"tradeable","tradeable":true,"instrument":"EUR_USD"},
        {"type":"PRICE","time":"2026-11-24T10:00:00.500000000Z","bids":[{"price":"156.410","liquidity":1000000}],"asks":[{"price":"156.430","liquidity":1000000}],"closeoutBid":"156.400","closeoutAsk":"156.440","status":"tradeable","tradeable":true,"instrument":"USD_JPY"}]}"#;
    let script = vec![reply(
        401,
        r#"{"errorMessage":"Insufficient authorization to perform request."}"#,
    )];
    let body = prices.to_owned();
    let (url, server) = serve(script, Box::new(move |_, _| Some(reply(200, &body)))).await;
    let out = tempfile::tempdir().unwrap();
    let running = start(
        "http-poll-oanda",
        &format!(
            r#"provider: Oanda, url: "{url}", account_id: "001-004-1234567-001", symbols: ["EUR", "JPY"], api_key_env: "{key_var}", interval: "50ms", initial_backoff: "50ms", max_backoff: "200ms""#
        ),
        out.path(),
    )
    .await;
    let seen = server.wait_for(3).await;
    running.stop(Duration::from_secs(10)).await.unwrap();

    assert_eq!(
        seen[0].uri,
        "/v3/accounts/001-004-1234567-001/pricing?instruments=EUR_USD%2CUSD_JPY"
    );
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer t0ken-oanda")));
    // A 401 waits max_backoff (200 ms), not the 50 ms interval.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(200));
    let dead = dead_letters(out.path());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, "unauthorized");
    assert!(dead[0].1.contains("Insufficient authorization"), "{:?}", dead[0]);
    let snapshots = snapshots(out.path());
    assert_eq!(snapshots.len(), 1);
    assert_eq!(price(&snapshots[0], "EUR/USD"), (dec!(1.16160), dec!(1.16180)));
    assert_eq!(snapshots[0].ts.to_rfc3339(), "2026-11-24T10:00:01.123456789+00:00");
}

#[tokio::test]
async fn shutdown_interrupts_a_request_in_flight_and_the_wait_between_polls() {
    // A server that never answers, and an hour-long timeout: only shutdown can end the request.
    let (url, server) = serve(Vec::new(), Box::new(|_, _| None)).await;
    let out = tempfile::tempdir().unwrap();
    let running = start(
        "http-poll-hang",
        &format!(r#"provider: Frankfurter, url: "{url}", timeout: "1h""#),
        out.path(),
    )
    .await;
    server.wait_for(1).await;
    running.stop(Duration::from_secs(20)).await.unwrap();
    assert!(snapshots(out.path()).is_empty());

    // A good answer, then an hour until the next poll: shutdown ends the wait.
    let body = frankfurter("2026-11-24", "0.86", true);
    let (url, server) = serve(Vec::new(), Box::new(move |_, _| Some(reply(200, &body)))).await;
    let out = tempfile::tempdir().unwrap();
    let running = start(
        "http-poll-idle",
        &format!(r#"provider: Frankfurter, url: "{url}", interval: "1h""#),
        out.path(),
    )
    .await;
    server.wait_for(1).await;
    // The snapshot is on its way to the sink once the request is seen; give it the time to land.
    let deadline = Instant::now() + Duration::from_secs(30);
    let written = || std::fs::read_to_string(out.path().join("events.jsonl")).is_ok_and(|t| t.contains('\n'));
    while !written() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.stop(Duration::from_secs(20)).await.unwrap();
    assert_eq!(snapshots(out.path()).len(), 1);
    assert_eq!(server.seen().len(), 1);
}
