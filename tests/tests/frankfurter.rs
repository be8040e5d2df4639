//! A user's story: "I point my Frankfurter client at fxflow: the shipped backfill loads every
//! ECB currency since 1999 into PostgreSQL (twice: nothing doubles), and /v1 and /v2 answer
//! the requests Frankfurter answers, with its statuses, shapes and numbers" — recorded in
//! tests/fixtures/frankfurter.json (scripts/frankfurter_fixture.py writes it from
//! Frankfurter's code), plus its headers: caching, ETag and 304, open CORS.

use std::str::FromStr;
use std::time::Duration;

use fxflow_tests::{free_port, fxflow, wait_for, workspace, Worker};
use rust_decimal::Decimal;

/// Numbers equal as decimals (`0.84825` and `8.4825e-05` alike), except at the case's
/// `midpoints` (field path -> fxflow's exact half-to-even answer, where Frankfurter's binary
/// double rounds the other way); everything else equal, keys in the same order.
fn same(
    ours: &serde_json::Value,
    theirs: &serde_json::Value,
    at: &str,
    midpoints: &serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    let join = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let parse = |text: &str| {
                Decimal::from_str(text)
                    .or_else(|_| Decimal::from_scientific(text))
                    .unwrap()
            };
            let (a, b) = (parse(&a.to_string()), parse(&b.to_string()));
            let exact = midpoints.get(at).and_then(Value::as_str).map(parse);
            if a == b || exact == Some(a) {
                Ok(())
            } else {
                Err(format!("{at}: {a}, Frankfurter {b}"))
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in b {
                let mine = a.get(key).ok_or(format!("{at}: no `{key}`"))?;
                same(mine, value, &join(key), midpoints)?;
            }
            let keys = |o: &serde_json::Map<String, Value>| o.keys().cloned().collect::<Vec<_>>();
            if a.len() == b.len() && keys(a) != keys(b) {
                return Err(format!("{at}: keys in another order: {:?} vs {:?}", keys(a), keys(b)));
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .try_for_each(|(i, (x, y))| same(x, y, &format!("{at}[{i}]"), midpoints)),
        _ => (ours == theirs)
            .then_some(())
            .ok_or(format!("{at}: {ours} vs {theirs}")),
    }
}

/// GET with headers; returns (status, headers lower-cased, body).
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    request(port, "GET", path, headers)
}

fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn query(params: &serde_json::Map<String, serde_json::Value>) -> String {
    let pairs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

#[test]
fn the_frankfurter_routes_answer_as_frankfurter_over_the_backfilled_ecb_history() {
    let dir = tempfile::tempdir().unwrap();
    let database = fxflow_tests::create_database("fxtest_frankfurter");
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let migrated = fxflow(&["migrate", "--resource", "history", "pipelines/store.ron"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );

    // The shipped backfill, twice: it ends by itself, and the second run adds nothing.
    let count = || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM fx_rates WHERE source = 'ecb'")
                .fetch_one(&mut c)
                .await
                .unwrap()
        })
    };
    for run in 0..2 {
        let backfill = fxflow(&["run", "pipelines/backfill.ron"])
            .env("DATABASE_URL", &url)
            .env("FXFLOW_TELEMETRY", format!("127.0.0.1:{}", free_port()))
            .output()
            .unwrap();
        assert!(
            backfill.status.success(),
            "backfill run {run}: {}",
            String::from_utf8_lossy(&backfill.stderr)
        );
    }
    let cells: usize = std::fs::read_to_string(workspace().join("examples/data/ecb-eurofxref-hist.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .skip(1)
                .filter(|c| !c.trim().is_empty() && c.trim() != "N/A")
                .count()
        })
        .sum();
    assert_eq!(count() as usize, cells, "every ECB rate stored once");

    let port = free_port();
    let file = dir.path().join("api.ron");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(name: "api", resources: {{ "history": Postgres(url: "{url}") }},
                stages: {{ "api": Api(listen: "127.0.0.1:{port}", store: "history", replay_rules: false) }})"#
        ),
    )
    .unwrap();
    let mut api = Worker::start("api", &file, &[], dir.path());
    wait_for("the API", Duration::from_secs(60), || {
        fxflow_tests::http_get(port, "/v2/providers")
            .ok()
            .filter(|(status, _)| *status == 200)
    });

    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace().join("tests/fixtures/frankfurter.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    for case in fixture["cases"].as_array().unwrap() {
        let path = format!(
            "{}{}",
            case["path"].as_str().unwrap(),
            query(case["params"].as_object().unwrap())
        );
        let (status, headers, body) = get(port, &path, &[]);
        if status != case["status"].as_u64().unwrap() as u16 {
            failures.push(format!(
                "{path}: status {status}, Frankfurter {}: {body}",
                case["status"]
            ));
            continue;
        }
        let cache = header(&headers, "cache-control").unwrap_or_default();
        if status == 200 && !cache.starts_with("public, max-age=86400") || status != 200 && cache != "no-store" {
            failures.push(format!("{path}: cache-control {cache:?}"));
        }
        if case["body"].is_null() {
            continue;
        }
        let ours: serde_json::Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{path}: not JSON ({e}): {body}"));
                continue;
            }
        };
        if let Err(e) = same(&ours, &case["body"], "", &case["midpoints"]) {
            failures.push(format!("{path}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        fixture["cases"].as_array().unwrap().len(),
        failures.join("\n")
    );

    // Currencies: those of the newest day and EUR, named as RubyMoney (Frankfurter's source) names them.
    let (_, _, body) = get(port, "/v1/currencies", &[]);
    let names: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(names["USD"], "United States Dollar");
    assert_eq!(names["EUR"], "Euro");
    assert!(names.get("CYP").is_none(), "retired currencies are not listed: {body}");
    assert_eq!(names.as_object().unwrap().len(), 30, "{body}");
    let (_, _, all) = get(port, "/v2/currencies?scope=all", &[]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&all)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        42
    );

    // Caching: an ETag, and 304 for a client that has it; open CORS; CSV on request.
    let (status, headers, _) = get(port, "/v1/2024-01-02", &[("Origin", "https://example.org")]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    let tag = header(&headers, "etag").unwrap().to_owned();
    let (status, _, body) = get(port, "/v1/2024-01-02", &[("If-None-Match", &tag)]);
    assert_eq!((status, body.as_str()), (304, ""));
    let preflight = request(
        port,
        "OPTIONS",
        "/v2/rates",
        &[
            ("Origin", "https://example.org"),
            ("Access-Control-Request-Method", "GET"),
        ],
    );
    assert_eq!(preflight.0, 200, "a browser's preflight is answered");
    assert_eq!(header(&preflight.1, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(&preflight.1, "access-control-allow-methods"),
        Some("GET, OPTIONS")
    );
    let (status, headers, body) = get(
        port,
        "/v2/rates?quotes=USD,GBP&date=2024-01-02",
        &[("Accept", "text/csv")],
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/csv"));
    assert_eq!(
        body,
        "date,base,quote,rate\n2024-01-02,EUR,GBP,0.86645\n2024-01-02,EUR,USD,1.0956\n"
    );
    let (status, _, _) = get(port, "/v2/currencies.csv", &[]);
    assert_eq!(status, 406);
    assert!(api.terminate(Duration::from_secs(30)).success(), "{}", api.logs());
}
