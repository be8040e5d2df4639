//! The query API as a user meets it: a real pipeline (the ECB replay through
//! Enrich, CrossRate and Alert into a real store) with an `Api` stage, asked
//! over real HTTP — every endpoint, every kind of bad input with its exact
//! status, rules created, fired, streamed and deleted — on SQLite and on
//! PostgreSQL alike.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fxflow_engine::testkit::free_port;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const KEY: &str = "test-key-0123456789abcdef";
const OTHER_KEY: &str = "other-key-0123456789abcdef";

/// The pipeline under test: `store` is the `resources` entry of the history store.
fn pipeline(store: &str, port: u16, out: &std::path::Path) -> String {
    format!(
        r#"Pipeline(
    name: "api-test",
    resources: {{ "history": {store} }},
    stages: {{
        "ecb": Replay(path: "{csv}", from: "2024-01-01", speed: PerDay("25ms")),
        "validate": Enrich(inputs: ["ecb"]),
        "crosses": CrossRate(inputs: ["validate"]),
        "api": Api(
            inputs: ["crosses", "alerts"],
            listen: "127.0.0.1:{port}",
            store: "history",
            keys: "{KEY},{OTHER_KEY}",
            limits: (per_key: (per_second: 2, burst: 30), per_ip: None, max_page: 500),
        ),
        "alerts": Alert(inputs: ["crosses", "api"], rules: [
            (id: "eurusd-above-1.15", pair: "EUR/USD", condition: Above(1.15)),
        ]),
        "candles": Candles(inputs: ["crosses"], intervals: ["1d"]),
        "volatility": Volatility(inputs: ["crosses"], window: "30d", annualise: ReturnsPerYear(252)),
        "history": {sink}(inputs: ["crosses", "alerts", "candles", "volatility"], resource: "history"),
        "dead-letters": JsonlFile(inputs: ["ecb.errors", "validate.errors", "crosses.errors", "alerts.errors", "history.errors"],
            path: "{dead}"),
    }},
)"#,
        csv = support::CSV,
        sink = if store.starts_with("Sqlite") {
            "Sqlite"
        } else {
            "Postgres"
        },
        dead = out.join("dead.jsonl").display(),
    )
}

/// Start the pipeline `text` (named `file` in errors) in this process.
async fn launch(file: &str, text: &str) -> fxflow_engine::RunningPipeline<fxflow_stages::fx::FxEvent> {
    let spec = fxflow_engine::pipeline_file::load_str(file, text, &fxflow_stages::registry(), |_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    fxflow_engine::start(spec).await.unwrap()
}

/// One field of every object in a JSON array, as text.
fn column(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect()
}

struct Client {
    http: reqwest::Client,
    base: String,
    /// Sent with every GET (the alert routes need one; the rest ignore it).
    key: Option<&'static str>,
    /// `X-Forwarded-For` of every GET: the client a trusted proxy names.
    forwarded_for: Option<&'static str>,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// The error code of a JSON error body, checking its shape.
    fn code(&self) -> String {
        let body = self.json();
        let error = &body["error"];
        assert!(
            error["message"].is_string() && error["details"].is_array(),
            "error shape: {body}"
        );
        error["code"].as_str().unwrap().to_owned()
    }
}

impl Client {
    /// A client of the API on `port`, sending `key`.
    fn on(port: u16, key: Option<&'static str>) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            key,
            forwarded_for: None,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the API answers");
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(key) = self.key {
            request = request.bearer_auth(key);
        }
        if let Some(ip) = self.forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        self.send(request).await
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        self.send(request).await
    }

    async fn delete(&self, path: &str, key: &str) -> Answer {
        self.send(self.http.delete(format!("{}{path}", self.base)).bearer_auth(key))
            .await
    }

    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Answer) -> bool,
        path: &str,
    ) -> Answer {
        let start = Instant::now();
        loop {
            let answer = self.get(path).await;
            if check(&answer) {
                return answer;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; last answer: {} {}",
                answer.status,
                answer.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

type SseEvent = (String, String, Value);

/// Read an SSE stream until `want` events arrived (or the timeout); returns (id, event, data).
async fn read_events(response: reqwest::Response, want: usize, timeout: Duration) -> Vec<SseEvent> {
    read_until(response, timeout, |events| events.len() >= want).await
}

/// Read an SSE stream until `done` says so (or the timeout).
async fn read_until(
    mut response: reqwest::Response,
    timeout: Duration,
    done: impl Fn(&[SseEvent]) -> bool,
) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(&events) {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            _ => break,
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut fields: HashMap<&str, String> = HashMap::new();
            for line in block.lines() {
                if let Some((k, v)) = line.split_once(':') {
                    fields.insert(k, v.trim_start().to_owned());
                }
            }
            if let (Some(id), Some(event), Some(data)) = (fields.get("id"), fields.get("event"), fields.get("data")) {
                events.push((id.clone(), event.clone(), serde_json::from_str(data).unwrap()));
            }
        }
    }
    events
}

async fn scenario(store: &str, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = pipeline(store, port, dir.path());
    let spec = fxflow_engine::pipeline_file::load_str("api-test.ron", &text, &fxflow_stages::registry(), |_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let readiness = fxflow_engine::Readiness::default();
    let running = fxflow_engine::start_with(spec, &readiness).await.unwrap();
    readiness.set(true);
    let c = Client::on(port, Some(KEY));

    // What runs.
    let index = c
        .wait_for("the API", Duration::from_secs(20), |a| a.status == 200, "/")
        .await
        .json();
    assert_eq!(index["pipeline"], "api-test", "{label}");
    assert!(
        index["stages"].as_array().unwrap().iter().any(|s| s["kind"] == "Api"),
        "{label}"
    );
    assert_eq!(c.get("/health").await.json()["status"], "ok");

    // Current rates: all 28 pairs, quotes and crosses told apart.
    let rates = c
        .wait_for(
            "28 rates",
            Duration::from_secs(30),
            |a| a.status == 200 && a.json()["rates"].as_array().is_some_and(|r| r.len() == 28),
            "/rates",
        )
        .await
        .json();
    let kinds: HashMap<String, String> = rates["rates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pair"].as_str().unwrap().to_owned(),
                r["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(kinds["EUR/USD"], "quote", "{label}: EUR/USD is the ECB's own quote");
    assert_eq!(kinds["USD/JPY"], "cross", "{label}");
    let filtered = c.get("/rates?pairs=EUR/USD,JPYUSD").await.json();
    let pairs = column(&filtered["rates"], "pair");
    assert_eq!(
        pairs,
        vec!["EUR/USD", "USD/JPY"],
        "{label}: filter in any spelling, answers in convention"
    );
    for path in ["/rates/EURUSD", "/rates/USD-EUR", "/rates/usd_eur", "/rates/EUR%2FUSD"] {
        let one = c.get(path).await;
        assert_eq!(
            (one.status, one.json()["pair"].as_str().unwrap()),
            (200, "EUR/USD"),
            "{label}: {path}"
        );
    }
    let jpy = c.get("/rates/USDJPY").await.json();
    assert_eq!(jpy["decimals"], 3);
    let unknown = c.get("/rates/EURXYZ").await;
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "unknown_currency"),
        "{label}: written as a pair, but no such currency"
    );
    let xxx = c.get("/convert?from=XXX&to=USD").await;
    assert_eq!(xxx.status, 404, "{label}");
    assert!(
        xxx.text.contains("no currency"),
        "{label}: XXX is named for what it is: {}",
        xxx.text
    );
    assert_eq!(
        c.get("/rates/EUR%20USD").await.code(),
        "invalid_parameter",
        "{label}: not written as a pair"
    );
    let sek = c.get("/rates/EURSEK").await;
    assert_eq!(
        (sek.status, sek.code().as_str()),
        (404, "unknown_pair"),
        "{label}: not monitored"
    );
    assert_eq!(
        c.get("/rates?pairs=EUR/NOPE").await.status,
        400,
        "{label}: NOPE is no currency code"
    );
    assert_eq!(
        c.get("/rates?pairs=EUR/USD,").await.status,
        400,
        "{label}: as the pattern says"
    );
    assert_eq!(c.get("/rates?bogus=1").await.status, 400, "{label}: unknown parameter");

    // Live rates, filtered.
    let stream = c
        .http
        .get(format!("{}/stream/rates?pairs=EURUSD", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stream.headers().get("x-accel-buffering").and_then(|v| v.to_str().ok()),
        Some("no"),
        "{label}: proxies are told not to buffer the stream"
    );
    let ticks = read_events(stream, 3, Duration::from_secs(10)).await;
    assert_eq!(ticks.len(), 3, "{label}: three EUR/USD ticks");
    assert!(ticks.iter().all(|(_, e, d)| e == "rate" && d["pair"] == "EUR/USD"));
    let last_id = ticks[0].0.clone();
    let (run, seq) = last_id.split_once('-').expect("ids are {run}-{seq}");
    let resumed = c
        .http
        .get(format!("{}/stream/rates?pairs=EURUSD", c.base))
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    let replayed = read_events(resumed, 1, Duration::from_secs(5)).await;
    assert_eq!(replayed[0].0, ticks[1].0, "{label}: Last-Event-ID resumes right after");
    // An id of another run (before a restart), numbered far ahead of this one, does not make
    // the stream skip this run's events: it starts from now.
    let foreign = format!(
        "{}-{}",
        run.parse::<u64>().unwrap() - 1,
        seq.parse::<u64>().unwrap() + 1_000_000_000
    );
    let restarted = c
        .http
        .get(format!("{}/stream/rates?pairs=EURUSD", c.base))
        .header("last-event-id", foreign)
        .send()
        .await
        .unwrap();
    let fresh = read_events(restarted, 1, Duration::from_secs(10)).await;
    assert_eq!(fresh.len(), 1, "{label}: an id from another run is ignored");
    assert!(fresh[0].0.starts_with(&format!("{run}-")), "{label}: {}", fresh[0].0);

    // Currencies and conversion (exact, with the side of the quote used).
    let currencies = c.get("/currencies").await.json();
    assert_eq!(currencies["currencies"].as_array().unwrap().len(), 8);
    assert_eq!(currencies["currencies"][0], json!({"code": "EUR", "name": "Euro"}));
    let conversion = c.get("/convert?from=USD&to=JPY&amount=1000").await.json();
    let rate: Decimal = conversion["rate"].as_str().unwrap().parse().unwrap();
    let result: Decimal = conversion["result"].as_str().unwrap().parse().unwrap();
    assert_eq!(result, (Decimal::from(1000) * rate).normalize(), "{label}: exact");
    assert_eq!(
        (conversion["pair"].as_str(), conversion["side"].as_str()),
        (Some("USD/JPY"), Some("mid"))
    );
    let back = c.get("/convert?from=JPY&to=USD&amount=150000").await.json();
    let back_rate: Decimal = back["rate"].as_str().unwrap().parse().unwrap();
    let back_result: Decimal = back["result"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        back_result,
        (Decimal::from(150_000) / back_rate).normalize(),
        "{label}: buying the base divides"
    );
    assert_eq!(
        c.get("/convert?from=USD&to=USD").await.code(),
        "same_currency",
        "{label}: a rule across fields"
    );
    assert_eq!(c.get("/convert?from=USD&to=SEK").await.code(), "unknown_currency");
    assert_eq!(c.get("/convert?from=USD&to=JPY&amount=abc").await.status, 400);
    assert_eq!(c.get("/convert?from=USD&to=JPY&amount=-5").await.status, 400);
    assert_eq!(c.get("/convert?to=JPY").await.status, 400, "{label}: missing parameter");

    // History: keyset pages, bounds, CSV (once the replay is past March 2024).
    c.wait_for(
        "the replay to pass March 2024",
        Duration::from_secs(30),
        |a| a.json()["ts"].as_str().is_some_and(|ts| ts > "2024-03-10"),
        "/rates/EURUSD",
    )
    .await;
    let first = c
        .get("/rates/EURUSD/history?from=2024-01-01T00:00:00Z&limit=5")
        .await
        .json();
    let rows = first["rates"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(
        rows[0]["ts"], "2024-01-02T00:00:00Z",
        "{label}: the first ECB day of 2024"
    );
    assert_eq!(rows[0]["mid"], "1.0956", "{label}: the ECB's own digits");

    // Fluctuation: each currency's move against a base, exact, from the stored history.
    let moved = c
        .get("/fluctuation?from=2024-01-02T00:00:00Z&to=2024-03-01T00:00:00Z&symbols=USD,JPY")
        .await
        .json();
    assert_eq!(moved["base"], "EUR", "{label}");
    let dec = |v: &Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    let usd = &moved["rates"]["USD"];
    assert_eq!(
        (dec(&usd["start"]), dec(&usd["end"]), dec(&usd["change"])),
        (Decimal::new(10956, 4), Decimal::new(10813, 4), Decimal::new(-143, 4)),
        "{label}: the ECB's EUR/USD on 2 January and 1 March 2024"
    );
    assert_eq!(
        dec(&usd["change_pct"]),
        (Decimal::new(-143, 4) / Decimal::new(10956, 4) * Decimal::ONE_HUNDRED).normalize(),
        "{label}"
    );
    assert_eq!(
        dec(&moved["rates"]["JPY"]["change"]),
        Decimal::new(714, 2),
        "{label}: 162.82 - 155.68"
    );
    let in_usd = c
        .get("/fluctuation?from=2024-01-02T00:00:00Z&to=2024-03-01T00:00:00Z&base=usd&symbols=EUR")
        .await
        .json();
    assert_eq!(
        dec(&in_usd["rates"]["EUR"]["start"]),
        (Decimal::ONE / Decimal::new(10956, 4)).normalize(),
        "{label}: against USD, the inverse of the EUR/USD mid"
    );
    assert_eq!(
        c.get("/fluctuation?from=2024-03-01T00:00:00Z&to=2024-01-01T00:00:00Z")
            .await
            .code(),
        "invalid_range"
    );
    assert_eq!(
        c.get("/fluctuation?from=2024-01-02T00:00:00Z&symbols=SEK").await.status,
        404
    );
    assert_eq!(
        c.get("/fluctuation?from=2024-01-02T00:00:00Z&symbols=USD,")
            .await
            .status,
        400
    );
    let next = first["next"].as_str().expect("a next page");
    let second = c.get(next).await.json();
    assert_eq!(
        second["rates"][0]["ts"], "2024-01-09T00:00:00Z",
        "{label}: continues after the 5th day"
    );
    let range = "from=2024-01-01T00:00:00Z&to=2024-03-01T00:00:00Z";
    let json_page = c.get(&format!("/rates/GBPJPY/history?{range}&limit=500")).await.json();
    let json_rows = json_page["rates"].as_array().unwrap().len();
    assert!(json_rows > 30, "{label}: two months of days");
    assert!(json_page["next"].is_null());
    let csv = c.get(&format!("/rates/GBPJPY/history?{range}&format=csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "pair,ts,source,kind,bid,ask,mid");
    assert_eq!(lines.len() - 1, json_rows, "{label}: CSV and JSON agree");
    assert!(
        lines[1].starts_with("GBP/JPY,2024-01-02T00:00:00Z,ecb,cross,"),
        "{}",
        lines[1]
    );
    let accept = c
        .send(
            c.http
                .get(format!("{}/rates/GBPJPY/history?{range}", c.base))
                .header("accept", "text/csv"),
        )
        .await;
    assert_eq!(accept.text, csv.text, "{label}: Accept: text/csv does the same");
    let bad = c
        .get("/rates/EURUSD/history?from=2024-02-01T00:00:00Z&to=2024-01-01T00:00:00Z")
        .await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "invalid_range"));
    let huge = c.get("/rates/EURUSD/history?limit=100000").await;
    assert_eq!(huge.status, 400);
    assert!(
        huge.text.contains("maximum of 500"),
        "{label}: says the maximum: {}",
        huge.text
    );
    assert_eq!(c.get("/rates/EURUSD/history?from=yesterday").await.status, 400);
    assert_eq!(c.get("/rates/EURUSD/history?after=garbage").await.status, 400);

    // Candles: from the candles table, paged, in CSV too; the history refers to them.
    let daily = c
        .get("/rates/EURUSD/candles?interval=1d&from=2024-01-01T00:00:00Z&limit=5")
        .await
        .json();
    let bars = daily["candles"].as_array().unwrap();
    assert_eq!(
        (daily["pair"].as_str(), daily["interval"].as_str()),
        (Some("EUR/USD"), Some("1d"))
    );
    assert_eq!(bars.len(), 5, "{label}: {daily}");
    assert_eq!(bars[0]["start"], "2024-01-02T00:00:00Z", "{label}");
    assert_eq!(bars[0]["end"], "2024-01-03T00:00:00Z", "{label}");
    for field in ["open", "high", "low", "close"] {
        assert_eq!(bars[0][field], "1.0956", "{label}: one ECB price a day: {}", bars[0]);
    }
    assert_eq!(
        (bars[0]["ticks"].as_i64(), bars[0]["closed"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(bars[0]["bid"].is_null(), "{label}: mid-only prices");
    let next = c.get(daily["next"].as_str().expect("a next page")).await.json();
    assert_eq!(next["candles"][0]["start"], "2024-01-09T00:00:00Z", "{label}");
    let bars = c
        .get(&format!("/rates/GBPJPY/candles?interval=24h&{range}&limit=500"))
        .await
        .json();
    let closes = column(&bars["candles"], "close");
    let mids = column(&json_page["rates"], "mid");
    assert_eq!(
        closes, mids,
        "{label}: each day's bar closes at that day's price (`24h` is `1d`)"
    );
    let csv = c
        .get(&format!("/rates/GBPJPY/candles?interval=1d&{range}&format=csv"))
        .await;
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.text.lines().collect();
    assert!(lines[0].starts_with("pair,interval,start,source,open,high,low,close,bid_open"));
    assert_eq!(lines.len() - 1, closes.len(), "{label}: CSV and JSON agree");
    assert!(
        lines[1].starts_with("GBP/JPY,1d,2024-01-02T00:00:00Z,ecb,") && lines[1].ends_with(",,,,,,,,1,true"),
        "{}",
        lines[1]
    );
    let missing = c.get("/rates/EURUSD/candles").await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.json()["error"]["details"][0]["field"],
        "query.interval",
        "{label}"
    );
    assert_eq!(c.get("/rates/EURUSD/candles?interval=hourly").await.status, 400);
    let refer = c.get("/rates/EURUSD/history?interval=1h").await;
    assert_eq!((refer.status, refer.code().as_str()), (400, "use_candles"), "{label}");
    assert!(
        refer.text.contains("/rates/EURUSD/candles?interval=1h"),
        "{}",
        refer.text
    );

    // Volatility: the newest 30-day reading of each pair, or a range.
    let volatility = c
        .wait_for(
            "a volatility reading",
            Duration::from_secs(30),
            |a| a.json()["volatility"].as_array().is_some_and(|v| v.len() == 2),
            "/analytics/volatility?pairs=EURUSD,USDJPY&window=30d",
        )
        .await
        .json();
    let eur_usd = &volatility["volatility"][0];
    assert_eq!(
        (eur_usd["pair"].as_str(), eur_usd["window"].as_str()),
        (Some("EUR/USD"), Some("30d"))
    );
    let sigma = eur_usd["volatility"].as_f64().unwrap();
    assert!(
        (0.01..0.3).contains(&sigma),
        "{label}: a plausible yearly volatility: {sigma}"
    );
    assert!(eur_usd["samples"].as_i64().unwrap() >= 15, "{label}: {eur_usd}");
    let series = c
        .get("/analytics/volatility?pairs=EURUSD&from=2024-02-01T00:00:00Z&to=2024-02-08T00:00:00Z")
        .await
        .json();
    let days = column(&series["volatility"], "ts");
    assert_eq!(
        days,
        (1..8).map(|d| format!("2024-02-0{d}T00:00:00Z")).collect::<Vec<_>>(),
        "{label}: a reading at the end of every day"
    );
    assert_eq!(c.get("/analytics/volatility?window=soon").await.status, 400);

    let at = c.get("/rates?at=2024-03-01T12:00:00Z&pairs=EURUSD,GBPJPY").await.json();
    assert_eq!(
        at["rates"][0]["ts"], "2024-03-01T00:00:00Z",
        "{label}: the rate in force then"
    );
    assert_eq!(at["at"], "2024-03-01T12:00:00Z");

    // Bad mutations: each with its status and a JSON error.
    let rule = json!({"pair": "EUR/USD", "condition": {"type": "crossing_up", "threshold": "1.10"},
        "trigger": {"type": "every", "cooldown": "1d", "rearm": 0.002}});
    assert_eq!(c.post("/alerts", None, &rule).await.status, 401, "{label}: no key");
    let wrong = c.post("/alerts", Some("wrong-key-0123456789"), &rule).await;
    assert_eq!(
        (wrong.status, wrong.code().as_str()),
        (403, "forbidden"),
        "{label}: wrong key"
    );
    let malformed = c
        .send(
            c.http
                .post(format!("{}/alerts", c.base))
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body("{\"pair\": "),
        )
        .await;
    assert_eq!((malformed.status, malformed.code().as_str()), (400, "malformed_json"));
    let unknown = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/USD", "condition": {"type": "above", "threshold": 1}, "colour": "red"}),
        )
        .await;
    assert_eq!(unknown.status, 422, "{label}: unknown field");
    assert_eq!(unknown.json()["error"]["details"][0]["field"], "colour");
    let invalid = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/XYZ", "condition": {"type": "pct_change", "percent": 0}}),
        )
        .await;
    assert_eq!(invalid.status, 422);
    let fields = column(&invalid.json()["error"]["details"], "field");
    assert_eq!(
        fields,
        vec!["pair", "condition.percent", "condition.window"],
        "{label}: every problem, by field"
    );
    let anomaly = json!({"pair": "EUR/USD", "condition": {"type": "zscore", "returns": 20, "k": "4"},
        "trigger": {"type": "every", "cooldown": "1d", "rearm": 1}});
    let created = c.post("/alerts", Some(KEY), &anomaly).await;
    assert_eq!(created.status, 201, "{label}: {}", created.text);
    assert_eq!(
        created.json()["condition"],
        json!({"type": "zscore", "returns": 20, "k": "4"}),
        "{label}"
    );
    assert_eq!(created.json()["condition_text"], "return z-score of 4 over 20 returns");
    let too_few = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/USD", "condition": {"type": "zscore", "returns": 1, "threshold": 2}}),
        )
        .await;
    let fields = column(&too_few.json()["error"]["details"], "field");
    assert_eq!(
        (too_few.status, fields),
        (
            422,
            vec![
                "condition.threshold".to_owned(),
                "condition.returns".to_owned(),
                "condition.k".to_owned()
            ]
        ),
        "{label}"
    );
    let inward = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/USD", "condition": {"type": "above", "threshold": 1},
                "webhook": {"url": "http://169.254.169.254/latest/meta-data"}}),
        )
        .await;
    assert_eq!(inward.status, 422, "{label}: SSRF: {}", inward.text);
    assert_eq!(inward.json()["error"]["details"][0]["field"], "webhook.url");
    let text_body = c
        .send(
            c.http
                .post(format!("{}/alerts", c.base))
                .bearer_auth(KEY)
                .body("pair=EUR/USD"),
        )
        .await;
    assert_eq!(text_body.status, 415);
    let oversized = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "x".repeat(20_000), "condition": {"type": "above", "threshold": 1}}),
        )
        .await;
    assert_eq!((oversized.status, oversized.code().as_str()), (413, "body_too_large"));
    // Written by hand: a client's JSON library would round the number itself.
    let exact = c
        .send(
            c.http
                .post(format!("{}/alerts", c.base))
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(r#"{"pair": "EUR/USD", "condition": {"type": "above", "threshold": 1.1000000000000000888}}"#),
        )
        .await;
    assert_eq!(exact.status, 201, "{label}: {}", exact.text);
    assert_eq!(
        exact.json()["condition"]["threshold"],
        "1.1000000000000000888",
        "{label}: never through f64"
    );
    let exact_id = exact.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(c.delete(&format!("/alerts/{exact_id}"), KEY).await.status, 204);

    // A rule created over HTTP fires on the next crossing: in the history and on the stream.
    let stream = c
        .http
        .get(format!("{}/stream/alerts", c.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let created = c.post("/alerts", Some(KEY), &rule).await;
    assert_eq!(created.status, 201, "{label}: {}", created.text);
    let location = created.headers["location"].to_str().unwrap().to_owned();
    let view = created.json();
    let id = view["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/alerts/{id}"));
    assert_eq!(view["condition"], json!({"type": "crossing_up", "threshold": "1.10"}));
    assert_eq!(
        view["trigger"],
        json!({"type": "every", "cooldown": "1d", "rearm": "0.002"})
    );
    assert_eq!(view["status"], "active");
    assert_eq!(c.get(&location).await.json()["id"], id.as_str());
    let events = read_until(stream, Duration::from_secs(60), |events| {
        events.iter().any(|(_, _, d)| d["rule_id"] == id.as_str())
    })
    .await;
    let mine: Vec<_> = events
        .iter()
        .filter(|(_, e, d)| e == "alert" && d["rule_id"] == id.as_str())
        .collect();
    assert!(
        !mine.is_empty(),
        "{label}: the new rule's firing arrived on /stream/alerts; saw {events:?}"
    );
    let fired = &mine[0].2;
    assert_eq!(fired["condition"], "crossing up 1.10");
    let value: Decimal = fired["value"].as_str().unwrap().parse().unwrap();
    let previous: Decimal = fired["previous"].as_str().unwrap().parse().unwrap();
    assert!(
        previous < Decimal::new(110, 2) && value >= Decimal::new(110, 2),
        "{label}: a crossing: {fired}"
    );
    let history = c
        .wait_for(
            "the firing in /alerts/history",
            Duration::from_secs(10),
            |a| a.json()["firings"].as_array().is_some_and(|f| !f.is_empty()),
            &format!("/alerts/history?rule={id}"),
        )
        .await
        .json();
    assert_eq!(history["firings"][0]["pair"], "EUR/USD");

    // A state rule that holds at creation fires at once; `once` then retires it.
    let holds = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "USD/JPY", "condition": {"type": "above", "threshold": "1"}}),
        )
        .await;
    assert_eq!(holds.status, 201);
    let holds_id = holds.json()["id"].as_str().unwrap().to_owned();
    c.wait_for(
        "the one-shot rule to be triggered",
        Duration::from_secs(10),
        |a| a.json()["status"] == "triggered" && a.json()["fired_count"] == 1,
        &format!("/alerts/{holds_id}"),
    )
    .await;
    let triggered = c.get("/alerts?status=triggered").await.json();
    assert!(triggered["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == holds_id.as_str()));
    assert!(!c.get("/alerts?status=active").await.text.contains(&holds_id));
    let usd_jpy = c.get("/alerts?pair=JPYUSD").await.json();
    assert_eq!(
        usd_jpy["alerts"].as_array().unwrap().len(),
        1,
        "{label}: by pair, any spelling"
    );
    let page = c.get("/alerts?limit=1").await.json();
    assert_eq!(page["alerts"].as_array().unwrap().len(), 1);
    let rest = c
        .get(page["next"].as_str().expect("two rules, pages of one"))
        .await
        .json();
    assert_ne!(rest["alerts"][0]["id"], page["alerts"][0]["id"]);
    assert_eq!(c.get("/alerts?status=sleeping").await.status, 400);
    let firings = c.get("/alerts/history?limit=1").await.json();
    let older = c
        .get(firings["next"].as_str().expect("more than one firing"))
        .await
        .json();
    assert!(older["firings"][0]["fired_at"].as_str() <= firings["firings"][0]["fired_at"].as_str());

    // Delete: 204, then 404; the rule stops firing.
    assert_eq!(c.delete(&location, KEY).await.status, 204);
    assert_eq!(c.delete(&location, KEY).await.status, 404, "{label}: already deleted");
    assert_eq!(c.get(&location).await.code(), "unknown_rule");
    assert_eq!(c.delete("/alerts/never-was", KEY).await.status, 404);
    let count = |a: &Answer| a.json()["firings"].as_array().unwrap().len();
    let before = count(&c.get(&format!("/alerts/history?rule={id}&limit=500")).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = count(&c.get(&format!("/alerts/history?rule={id}&limit=500")).await);
    assert_eq!(before, after, "{label}: a deleted rule fires no more");

    // Rate limit per key: 429 with Retry-After, other keys unaffected.
    let mut limited = None;
    for _ in 0..40 {
        let answer = c.post("/alerts", Some(OTHER_KEY), &json!({})).await;
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer.status, 422);
    }
    let limited = limited.expect("the per-key limit bites");
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        c.post("/alerts", Some(KEY), &json!({})).await.status,
        422,
        "{label}: the other key still works"
    );

    // Meta: readiness per dependency, metrics per route, stats, OpenAPI, docs, JSON 404/405.
    let ready = c
        .wait_for("ready", Duration::from_secs(15), |a| a.status == 200, "/ready")
        .await
        .json();
    assert_eq!(ready["components"]["api: store"]["ready"], true, "{label}: {ready}");
    let metrics = c.get("/metrics").await.text;
    assert!(metrics.contains("fxflow_api_requests_total{"), "{label}");
    assert!(
        metrics.contains("route=\"/rates/{pair}/history\""),
        "{label}: labelled by route template"
    );
    assert!(metrics.contains("fxflow_stage_sent_events_total{"));
    let stats = c.get("/stats").await.json();
    assert!(stats["stages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["stage"] == "crosses" && s["sent"].as_f64().unwrap() > 0.0));
    let openapi = c.get("/openapi.json").await.json();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(openapi["paths"]["/alerts/{id}"]["delete"].is_object());
    assert!(openapi["paths"]["/rates/{pair}/candles"]["get"].is_object());
    assert!(openapi["paths"]["/analytics/volatility"]["get"].is_object());
    assert_eq!(c.get("/docs").await.status, 200);
    let missing = c.get("/nope").await;
    assert_eq!((missing.status, missing.code().as_str()), (404, "no_such_endpoint"));
    let method = c.send(c.http.delete(format!("{}/rates", c.base))).await;
    assert_eq!((method.status, method.code().as_str()), (405, "method_not_allowed"));
    assert!(c.get("/").await.headers.contains_key("x-request-id"));

    tokio::time::timeout(Duration::from_secs(30), running.stop(Duration::from_secs(20)))
        .await
        .expect("the pipeline drains after shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("Sqlite(path: \"{}\")", dir.path().join("fx.db").display());
    scenario(&store, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_on_postgres() {
    let schema = support::fresh_schema("api").await;
    let store = format!("Postgres(url: \"{}\", schema: \"{schema}\")", support::POSTGRES);
    scenario(&store, "PostgreSQL").await;
}

/// A rule whose creation is not accepted downstream in time: 503, and no rule
/// left behind — not in the store, and not running either (its delete follows
/// the create, so a slow stage that takes the create later also takes the delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_not_accepted_in_time_is_undone_in_the_store_and_downstream() {
    use fxflow_engine::testkit::kafka::{recorded, RecordConfig};
    use fxflow_stages::fx::FxEvent;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!(
        r#"Pipeline(
    name: "api-slow",
    resources: {{ "history": Sqlite(path: "{db}") }},
    stages: {{
        "api": Api(listen: "127.0.0.1:{port}", store: "history", keys: "{KEY}", change_timeout: "200ms"),
        "slow": Record(inputs: ["api"], probe: "api-slow", delay_ms: 1000),
    }},
)"#,
        db = dir.path().join("fx.db").display()
    );
    let mut registry = fxflow_stages::registry();
    registry.stage::<RecordConfig>("Record");
    let spec = fxflow_engine::pipeline_file::load_str("api-slow.ron", &text, &registry, |_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let running = fxflow_engine::start(spec).await.unwrap();
    let c = Client::on(port, Some(KEY));
    c.wait_for("the API", Duration::from_secs(20), |a| a.status == 200, "/")
        .await;
    let answer = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/USD", "condition": {"type": "above", "threshold": "1.20"}}),
        )
        .await;
    assert_eq!(answer.status, 503, "{}", answer.text);
    assert_eq!(answer.code(), "pipeline_unavailable");
    assert_eq!(c.get("/alerts").await.json()["alerts"], json!([]), "not listed");

    let changes = recorded::<FxEvent>("api-slow");
    let deadline = Instant::now() + Duration::from_secs(10);
    while changes.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let changes: Vec<(String, bool)> = changes
        .lock()
        .unwrap()
        .iter()
        .map(|e| match e {
            FxEvent::AlertRuleChange(c) => (c.id.clone(), c.rule.is_some()),
            other => panic!("not a rule change: {other:?}"),
        })
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].0, changes[1].0, "one rule");
    assert_eq!(
        (changes[0].1, changes[1].1),
        (true, false),
        "the create, then its delete: nothing keeps running"
    );
    running.stop(Duration::from_secs(10)).await.unwrap();
}

const DESK_A_OLD: &str = "desk-a-key-0123456789abcdef";
const DESK_A_NEW: &str = "desk-a-key-rotated-0123456789";
const DESK_B: &str = "desk-b-key-0123456789abcdef";

/// Two tenants over real HTTP: each sees and changes only its own rules and
/// firings (plus the pipeline file's shared rule), webhook URLs never leave
/// the API whole, an anonymous caller gets 401, rotating a key in the key
/// file keeps the tenant's rules, a tenant's rule limit answers 409, and a
/// failed-auth flood from one client (named by a trusted proxy) gets 429
/// while another client behind the same proxy goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_and_change_only_their_own_rules() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let keys_file = dir.path().join("keys");
    // desk-b's key is kept as its digest only.
    let desk_b_digest = hex::encode(sha2::Sha256::digest(DESK_B.as_bytes()));
    std::fs::write(
        &keys_file,
        format!("# tenant:key\ndesk-a:{DESK_A_OLD}\ndesk-b:sha256:{desk_b_digest}\n"),
    )
    .unwrap();
    let text = format!(
        r#"Pipeline(
    name: "api-tenants",
    resources: {{ "history": Sqlite(path: "{db}") }},
    stages: {{
        "ecb": Replay(path: "{csv}", from: "2024-01-01", speed: PerDay("25ms")),
        "crosses": CrossRate(inputs: ["ecb"]),
        "api": Api(
            inputs: ["crosses", "alerts"],
            listen: "127.0.0.1:{port}",
            store: "history",
            keys_file: "{keys}",
            allow_private_webhooks: true,
            trusted_proxies: ["127.0.0.1"],
            limits: (per_ip: None, rules_per_tenant: 4, failed_auth: (per_minute: 6, burst: 5)),
        ),
        "alerts": Alert(inputs: ["crosses", "api"], rules: [
            (id: "shared-usdjpy-above-1", pair: "USD/JPY", condition: Above(1)),
        ]),
        "history": Sqlite(inputs: ["crosses", "alerts"], resource: "history"),
    }},
)"#,
        db = dir.path().join("fx.db").display(),
        csv = support::CSV,
        keys = keys_file.display(),
    );
    let running = launch("api-tenants.ron", &text).await;
    let client = |key, forwarded_for| Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
        key,
        forwarded_for,
    };
    let (anonymous, a, b) = (
        client(None, None),
        client(Some(DESK_A_OLD), None),
        client(Some(DESK_B), None),
    );
    anonymous
        .wait_for("the API", Duration::from_secs(20), |r| r.status == 200, "/")
        .await;

    // Anonymous: the rates are public, the alert routes are not.
    assert_eq!(anonymous.get("/rates").await.status, 200);
    for path in ["/alerts", "/alerts/history", "/alerts/some-id", "/stream/alerts"] {
        let answer = anonymous.get(path).await;
        assert_eq!((answer.status, answer.code().as_str()), (401, "unauthorized"), "{path}");
    }

    // Each desk creates a rule that holds at once (it fires on the next sample).
    let holds = |pair: &str| json!({"pair": pair, "condition": {"type": "above", "threshold": "0.0001"}});
    let streams = |key: &'static str| a.http.get(format!("{}/stream/alerts", a.base)).bearer_auth(key).send();
    let (stream_a, stream_b) = (streams(DESK_A_OLD).await.unwrap(), streams(DESK_B).await.unwrap());
    let mut with_hook = holds("EUR/USD");
    with_hook["webhook"] =
        json!({"url": "http://127.0.0.1:9/services/T000/B000/SECRETTOKEN", "secret": "s3cret-value"});
    let created_a = a.post("/alerts", Some(DESK_A_OLD), &with_hook).await;
    assert_eq!(created_a.status, 201, "{}", created_a.text);
    assert!(
        !created_a.text.contains("SECRETTOKEN") && !created_a.text.contains("s3cret"),
        "{}",
        created_a.text
    );
    assert_eq!(created_a.json()["webhook"]["url"], "http://127.0.0.1:9/…");
    assert_eq!(created_a.json()["shared"], false);
    let id_a = created_a.json()["id"].as_str().unwrap().to_owned();
    let created_b = b.post("/alerts", Some(DESK_B), &holds("GBP/USD")).await;
    assert_eq!(created_b.status, 201, "{}", created_b.text);
    let id_b = created_b.json()["id"].as_str().unwrap().to_owned();

    // Listing and reading: one's own, never the other's.
    assert_eq!(ids(&a).await, vec![id_a.clone()]);
    assert_eq!(ids(&b).await, vec![id_b.clone()]);
    assert!(!a.get("/alerts").await.text.contains("SECRETTOKEN"));
    assert_eq!(a.get(&format!("/alerts/{id_a}")).await.status, 200);
    let foreign = b.get(&format!("/alerts/{id_a}")).await;
    assert_eq!((foreign.status, foreign.code().as_str()), (404, "unknown_rule"));
    let foreign_delete = b.delete(&format!("/alerts/{id_a}"), DESK_B).await;
    assert_eq!(foreign_delete.status, 404, "not 403: no oracle for ids");
    assert_eq!(a.get(&format!("/alerts/{id_a}")).await.status, 200, "still there");

    // Firings: each desk's history and stream hold its own and the shared rule's.
    let fired_ids = |answer: &Answer| column(&answer.json()["firings"], "rule_id");
    let history_a = a
        .wait_for(
            "desk-a's and the shared firing",
            Duration::from_secs(30),
            |r| {
                let ids = column(&r.json()["firings"], "rule_id");
                ids.contains(&id_a) && ids.iter().any(|i| i == "shared-usdjpy-above-1")
            },
            "/alerts/history",
        )
        .await;
    assert!(
        !fired_ids(&history_a).contains(&id_b),
        "desk-b's firing is not desk-a's"
    );
    let history_b = b
        .wait_for(
            "desk-b's firing",
            Duration::from_secs(30),
            |r| column(&r.json()["firings"], "rule_id").contains(&id_b),
            "/alerts/history",
        )
        .await;
    assert!(!fired_ids(&history_b).contains(&id_a));
    let shared = history_b.json()["firings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule_id"] == "shared-usdjpy-above-1")
        .cloned()
        .expect("the shared rule's firing is everyone's");
    assert_eq!(shared["shared"], true);
    for (stream, mine, theirs) in [(stream_a, &id_a, &id_b), (stream_b, &id_b, &id_a)] {
        let events = read_until(stream, Duration::from_secs(30), |events| {
            events.iter().any(|(_, _, d)| d["rule_id"] == mine.as_str())
        })
        .await;
        let seen: Vec<&str> = events.iter().map(|(_, _, d)| d["rule_id"].as_str().unwrap()).collect();
        assert!(seen.contains(&mine.as_str()), "{seen:?}");
        assert!(
            !seen.contains(&theirs.as_str()),
            "another tenant's firing streamed: {seen:?}"
        );
    }

    // Rotation: add the new key, move to it, remove the old; the rules stay desk-a's.
    std::fs::write(
        &keys_file,
        format!("desk-a:{DESK_A_OLD}\ndesk-a:{DESK_A_NEW}\ndesk-b:sha256:{desk_b_digest}\n"),
    )
    .unwrap();
    // Polling with a key not loaded yet fails authentication: as its own client,
    // so the failures spend that client's budget only.
    let polling = client(Some(DESK_A_NEW), Some("198.51.100.1"));
    polling
        .wait_for("the new key", Duration::from_secs(15), |r| r.status == 200, "/alerts")
        .await;
    assert_eq!(
        ids(&polling).await,
        vec![id_a.clone()],
        "the tenant's rules, with its new key"
    );
    std::fs::write(
        &keys_file,
        format!("desk-a:{DESK_A_NEW}\ndesk-b:sha256:{desk_b_digest}\n"),
    )
    .unwrap();
    client(Some(DESK_A_OLD), Some("198.51.100.2"))
        .wait_for(
            "the old key to go",
            Duration::from_secs(15),
            |r| r.status == 403,
            "/alerts",
        )
        .await;
    let rotated = client(Some(DESK_A_NEW), None);
    // A bad file is refused whole: the keys in force stay.
    std::fs::write(&keys_file, format!("desk-a:{DESK_A_NEW}\ndesk-b:short\n")).unwrap();
    tokio::time::sleep(fxflow_stages::sources::api::auth::KEY_FILE_POLL * 2).await;
    assert_eq!(b.get("/alerts").await.status, 200, "desk-b's key still works");

    // A tenant's rule limit (4 here): 409 with its own code; the other tenant is not affected.
    for _ in 0..3 {
        assert_eq!(
            rotated
                .post("/alerts", Some(DESK_A_NEW), &holds("USD/CHF"))
                .await
                .status,
            201
        );
    }
    let full = rotated.post("/alerts", Some(DESK_A_NEW), &holds("USD/CHF")).await;
    assert_eq!(
        (full.status, full.code().as_str()),
        (409, "quota_exceeded"),
        "{}",
        full.text
    );
    assert_eq!(b.post("/alerts", Some(DESK_B), &holds("USD/CHF")).await.status, 201);
    assert_eq!(rotated.delete(&format!("/alerts/{id_a}"), DESK_A_NEW).await.status, 204);
    assert_eq!(
        rotated
            .post("/alerts", Some(DESK_A_NEW), &holds("USD/CHF"))
            .await
            .status,
        201
    );

    // A failed-auth flood from one client (named by the trusted proxy on
    // loopback): 429 after the burst of 5, while the general limit is off;
    // another client behind the same proxy is not affected.
    let as_client = |ip: &str, key: &str| {
        a.http
            .get(format!("{}/alerts", a.base))
            .header("x-forwarded-for", ip)
            .bearer_auth(key)
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(a.send(as_client("203.0.113.5", "guess-0123456789abcdef")).await.status);
    }
    assert_eq!(statuses, vec![403, 403, 403, 403, 403, 429, 429, 429]);
    let refused = a.send(as_client("203.0.113.5", DESK_A_NEW)).await;
    assert_eq!(refused.status, 429, "even a right key waits once the budget is spent");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(a.send(as_client("203.0.113.6", DESK_A_NEW)).await.status, 200);
    let metrics = anonymous.get("/metrics").await.text;
    assert!(metrics.contains("fxflow_api_auth_failures_total{"), "counted");
    assert!(metrics.contains("by=\"failed_auth\""), "refusals counted");

    running.stop(Duration::from_secs(20)).await.unwrap();
}

/// The ids of the rules a client lists.
async fn ids(c: &Client) -> Vec<String> {
    column(&c.get("/alerts").await.json()["alerts"], "id")
}

/// `private: true`: the data routes want a key too; the probes, the document and
/// the page's files do not, and the document says which operations need one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_api_answers_data_only_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!(
        r#"Pipeline(
    name: "api-private",
    resources: {{ "history": Sqlite(path: "{db}") }},
    stages: {{
        "api": Api(listen: "127.0.0.1:{port}", store: "history", keys: "{KEY}", private: true),
        "sink": Null(inputs: ["api"]),
    }},
)"#,
        db = dir.path().join("fx.db").display()
    );
    let running = launch("api-private.ron", &text).await;
    let client = |key| Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
        key,
        forwarded_for: None,
    };
    let (anonymous, keyed) = (client(None), client(Some(KEY)));
    anonymous
        .wait_for("the API", Duration::from_secs(20), |a| a.status == 200, "/health")
        .await;
    for path in [
        "/rates",
        "/rates/EURUSD",
        "/rates/EURUSD/history",
        "/rates/EURUSD/candles?interval=1d",
        "/currencies",
        "/convert?from=USD&to=JPY",
        "/analytics/volatility",
        "/stream/rates",
    ] {
        let refused = anonymous.get(path).await;
        assert_eq!(
            (refused.status, refused.code().as_str()),
            (401, "unauthorized"),
            "{path}"
        );
    }
    assert_eq!(keyed.get("/rates").await.status, 200);
    assert_eq!(keyed.get("/currencies").await.status, 200);
    for open in [
        "/",
        "/health",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/live",
        "/live/app.js",
    ] {
        assert_eq!(anonymous.get(open).await.status, 200, "{open} stays open");
    }
    let document = anonymous.get("/openapi.json").await.json();
    assert_eq!(
        document["paths"]["/rates"]["get"]["security"],
        json!([{"api_key": []}]),
        "the served document says the data routes need a key"
    );
    assert!(document["paths"]["/rates"]["get"]["responses"]["401"].is_object());
    assert!(document["paths"]["/health"]["get"]["security"].is_null());
    running.stop(Duration::from_secs(20)).await.unwrap();
}

/// The data-quality conditions over the API: created and read back in their JSON shape, and
/// their cross-field rules answered with 422 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_quality_rules_are_created_and_checked_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = format!(
        r#"Pipeline(
    name: "api-quality",
    resources: {{ "history": Sqlite(path: "{db}") }},
    stages: {{
        "api": Api(listen: "127.0.0.1:{port}", store: "history", keys: "{KEY}"),
        "alerts": Alert(inputs: ["api"]),
    }},
)"#,
        db = dir.path().join("fx.db").display()
    );
    let running = launch("api-quality.ron", &text).await;
    let c = Client::on(port, Some(KEY));
    c.wait_for("the API", Duration::from_secs(20), |a| a.status == 200, "/")
        .await;
    let stale = json!({"type": "stale", "max_age": "26h", "source": "ecb"});
    let created = c
        .post("/alerts", Some(KEY), &json!({"pair": "EUR/USD", "condition": stale}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        created.json()["condition"],
        json!({"type": "stale", "max_age": "26h", "calendar": "target", "source": "ecb"})
    );
    let divergence = json!({"type": "divergence", "bps": "25", "sources": ["ecb", "oanda"]});
    let created = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/USD", "condition": divergence, "trigger": {"type": "once_per_bar", "interval": "1h"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json()["condition"]["sources"], json!(["ecb", "oanda"]));

    let refused = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/USD", "condition": {"type": "stale", "max_age": "367d", "source": null}}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let body = refused.json();
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["condition.max_age", "condition.source"], "{}", refused.text);
    let refused = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/USD", "condition": {"type": "divergence", "bps": "25", "sources": ["ecb", "ecb"]}}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("condition.sources"), "{}", refused.text);
    let refused = c
        .post(
            "/alerts",
            Some(KEY),
            &json!({"pair": "EUR/USD", "condition": {"type": "stale", "max_age": "26h", "bps": "3"}}),
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("`stale` takes no bps"), "{}", refused.text);
    running.stop(Duration::from_secs(10)).await.unwrap();
}
