//! Webhook notifications against a real local HTTP receiver: rules created
//! over the API with a webhook get each firing POSTed, signed; 5xx is retried
//! with backoff until it succeeds; a delivery that keeps failing — or is
//! refused for good — ends in the dead-letter output with the reason.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use fxflow_engine::testkit::free_port;
use serde_json::{json, Value};

const KEY: &str = "webhook-key-0123456789";

#[derive(Default)]
struct Received {
    /// (route, headers, body) of every attempt.
    attempts: Mutex<Vec<(String, HeaderMap, String)>>,
}

async fn receive(
    State(r): State<Arc<Received>>,
    Path(route): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let mut attempts = r.attempts.lock().unwrap();
    attempts.push((route.clone(), headers, body));
    let tries = attempts.iter().filter(|(r, _, _)| *r == route).count();
    match route.as_str() {
        "flaky" if tries <= 2 => StatusCode::INTERNAL_SERVER_ERROR,
        "flaky" => StatusCode::OK,
        "down" => StatusCode::SERVICE_UNAVAILABLE,
        "gone" => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firings_are_delivered_signed_retried_and_dead_lettered() {
    let received = Arc::new(Received::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hooks = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/{route}", post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let dead = dir.path().join("dead.jsonl");
    let text = format!(
        r#"Pipeline(name: "hooks", resources: {{ "history": Sqlite(path: "{db}") }}, stages: {{
            "ecb": Replay(path: "{csv}", from: "2024-01-01", speed: PerDay("50ms")),
            "crosses": CrossRate(inputs: ["ecb"]),
            "api": Api(inputs: ["crosses", "alerts"], listen: "127.0.0.1:{api}", store: "history",
                keys: "{KEY}", allow_private_webhooks: true),
            "alerts": Alert(inputs: ["crosses", "api"]),
            "history": Sqlite(inputs: ["alerts"], resource: "history"),
            "notify": Webhook(inputs: ["alerts"], store: "history", allow_private_targets: true,
                retry: (attempts: 3, initial_backoff: "20ms", max_backoff: "100ms"), timeout: "2s"),
            "dead-letters": JsonlFile(inputs: ["notify.errors"], path: "{dead}"),
        }})"#,
        db = dir.path().join("fx.db").display(),
        csv = support::CSV,
        dead = dead.display(),
    );
    let spec = fxflow_engine::pipeline_file::load_str("hooks.ron", &text, &fxflow_stages::registry(), |_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let running = fxflow_engine::start(spec).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api}");
    let start = Instant::now();
    while http
        .get(format!("{base}/rates/USDJPY"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(start.elapsed() < Duration::from_secs(20), "the API has rates");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Rules that hold at once: each fires immediately and notifies its webhook.
    let create = |pair: &str, route: &str, secret: Option<&str>, format: &str| {
        let mut webhook = json!({"url": format!("http://127.0.0.1:{hooks}/{route}"), "format": format});
        if let Some(secret) = secret {
            webhook["secret"] = json!(secret);
        }
        http.post(format!("{base}/alerts"))
            .bearer_auth(KEY)
            .json(&json!({"pair": pair, "condition": {"type": "above", "threshold": "0.01"}, "webhook": webhook}))
            .send()
    };
    for (pair, route, secret, format) in [
        ("USD/JPY", "flaky", Some("s3cret"), "json"),
        ("EUR/GBP", "down", None, "json"),
        ("AUD/USD", "gone", None, "json"),
        ("NZD/USD", "slack", None, "slack"),
        ("EUR/CHF", "teams", None, "teams"),
    ] {
        let created = create(pair, route, secret, format).await.unwrap();
        let status = created.status().as_u16();
        let body: Value = created.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body["webhook"],
            json!({"url": format!("http://127.0.0.1:{hooks}/…"), "signed": secret.is_some(), "format": format}),
            "the secret is never shown, nor the URL's path (chat webhooks carry their credential there)"
        );
    }

    // The flaky receiver: two 500s, then 200 — three attempts of one delivery, each signed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead_letters = loop {
        let text = std::fs::read_to_string(&dead).unwrap_or_default();
        let letters: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let flaky_done = received
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _, _)| r == "flaky")
            .count()
            >= 3;
        let chats = received
            .attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _, _)| r == "slack" || r == "teams")
            .count();
        if letters.len() >= 2 && flaky_done && chats >= 2 {
            break letters;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries settle; dead letters so far: {letters:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempts = received.attempts.lock().unwrap().clone();
    let flaky: Vec<_> = attempts.iter().filter(|(r, _, _)| r == "flaky").collect();
    assert_eq!(flaky.len(), 3, "retried on 500 until it succeeded, then no more");
    let delivery_ids: Vec<_> = flaky.iter().map(|(_, h, _)| h["x-fxflow-delivery"].clone()).collect();
    assert!(
        delivery_ids.windows(2).all(|w| w[0] == w[1]),
        "one delivery id across retries"
    );
    for (_, headers, body) in &flaky {
        let expected = fxflow_stages::sinks::webhook::signature("s3cret", body.as_bytes());
        assert_eq!(
            headers["x-fxflow-signature"].to_str().unwrap(),
            expected,
            "signed with the rule's secret"
        );
        let delivered: Value = serde_json::from_str(body).unwrap();
        assert_eq!(delivered["event"], "alert.fired");
        assert_eq!(delivered["pair"], "USD/JPY");
        assert_eq!(delivered["condition"], "above 0.01");
    }
    // Chat formats: what a Slack or Teams channel's incoming webhook shows.
    let chat = |route: &str| -> Value {
        let (_, _, body) = attempts.iter().find(|(r, _, _)| r == route).expect("delivered");
        serde_json::from_str(body).unwrap()
    };
    let slack = chat("slack");
    assert!(
        slack["text"].as_str().unwrap().starts_with("NZD/USD above 0.01: "),
        "{slack}"
    );
    assert_eq!(slack["blocks"][1]["fields"][0]["text"], "*Pair*\nNZD/USD", "{slack}");
    let teams = chat("teams");
    assert_eq!(teams["@type"], "MessageCard", "{teams}");
    assert!(
        teams["summary"].as_str().unwrap().starts_with("EUR/CHF above 0.01: "),
        "{teams}"
    );
    assert_eq!(
        teams["sections"][0]["facts"][0],
        json!({"name": "Pair", "value": "EUR/CHF"})
    );
    let down = attempts.iter().filter(|(r, _, _)| r == "down").count();
    assert_eq!(down, 4, "503: the first try and 3 retries");
    assert!(
        attempts
            .iter()
            .filter(|(r, _, _)| r == "down")
            .all(|(_, h, _)| !h.contains_key("x-fxflow-signature")),
        "unsigned without a secret"
    );
    assert_eq!(
        attempts.iter().filter(|(r, _, _)| r == "gone").count(),
        1,
        "404 is final: no retry"
    );

    // The two that failed for good are dead letters, with why.
    let reasons: Vec<(String, String)> = dead_letters
        .iter()
        .map(|l| {
            (
                l["event"]["pair"].as_str().unwrap_or_default().to_owned(),
                l["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(dead_letters.len(), 2, "{dead_letters:?}");
    assert!(
        dead_letters
            .iter()
            .all(|l| l["stage"] == "notify" && l["kind"] == "DeadLetter"),
        "{dead_letters:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(pair, e)| pair == "EUR/GBP" && e.contains("503") && e.contains("gave up after 4 attempts")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|(pair, e)| pair == "AUD/USD" && e.contains("404")),
        "{reasons:?}"
    );

    running.stop(Duration::from_secs(20)).await.unwrap();
}
