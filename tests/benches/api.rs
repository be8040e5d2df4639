//! The query API under load, with the real `fxflow` binary (release) and `wrk`.
//!
//! `FXFLOW_PROFILE=release cargo bench -p fxflow-tests --bench api -- [--phases=rates,history,rules,sse]`
//!
//! 1. `rates`: `GET /rates` (all 28 pairs, the board's cached body) at 64
//!    connections for 10 s: requests/s and latency percentiles (wrk, same box).
//! 2. `history`: `GET /rates/EURUSD/history` pages of 1,000 rows over 30-day
//!    windows of the 51.7 M-row table the `history` bench of fxflow-stages
//!    builds (schema `fxbench_history`; run that bench once first), the window
//!    moved by a minute per request (a wrk Lua script).
//! 3. `rules`: from `POST /alerts` (a rule that holds at once) to its firing on
//!    `/stream/alerts`, in one process, 50 times: p50/p99.
//! 4. `sse`: the in-process pipeline (synthetic snapshots as fast as it goes,
//!    crosses, alerts, the API watching) with 0 and with 1,000 clients on
//!    `/stream/rates`: crosses/s both ways.
//!
//! Across workers (API worker → broker → alerts worker) the rule latency is
//! measured by `--phases=rules-workers` (starts a Kafka broker).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fxflow_tests::{free_port, fxflow, http_get, wait_for, workspace, Broker, Worker};

const KEY: &str = "bench-key-0123456789abcdef";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let phases = args
        .iter()
        .find_map(|a| a.strip_prefix("--phases="))
        .unwrap_or("rates,history,rules,sse")
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "machine: {} cores; fxflow release binary; wrk on the same box",
        num_cpus()
    );
    if phases.split(',').any(|p| p == "rates") {
        rates(dir.path());
    }
    if phases.split(',').any(|p| p == "history") {
        history(dir.path());
    }
    if phases.split(',').any(|p| p == "rules") {
        rules_in_one_process(dir.path());
    }
    if phases.split(',').any(|p| p == "rules-workers") {
        rules_across_workers(dir.path());
    }
    if phases.split(',').any(|p| p == "sse") {
        sse_fan_out(dir.path());
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A pipeline file in `dir` with an API on `port` over `store`.
fn api_pipeline(dir: &Path, name: &str, port: u16, store: &str, source: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.ron"));
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(name: "{name}", telemetry: (address: "${{FXFLOW_TELEMETRY}}"),
                resources: {{ "history": {store} }},
                stages: {{
                    {source}
                    "crosses": CrossRate(inputs: ["src"]),
                    "api": Api(inputs: ["crosses", "alerts"], listen: "127.0.0.1:{port}", store: "history",
                        keys: "{KEY}", limits: (per_ip: None, per_key: None, stream_clients: 5000)),
                    "alerts": Alert(inputs: ["crosses", "api"]),
                    "null": Null(inputs: ["alerts"]),
                }})"#
        ),
    )
    .unwrap();
    file
}

/// Every currency column of the ECB's file.
fn ecb_currencies() -> Vec<String> {
    let csv = std::fs::read_to_string(fxflow_tests::workspace().join("examples/data/ecb-eurofxref-hist.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    header
        .split(',')
        .skip(1)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn sqlite(dir: &Path) -> String {
    format!("Sqlite(path: \"{}\")", dir.join("bench.db").display())
}

fn start(dir: &Path, name: &str, file: &Path) -> (Worker, u16) {
    let telemetry = free_port();
    let worker = Worker::start(
        name,
        file,
        &[("FXFLOW_TELEMETRY", format!("127.0.0.1:{telemetry}"))],
        dir,
    );
    (worker, telemetry)
}

fn wait_for_rates(port: u16) {
    wait_for("the API to have rates", Duration::from_secs(120), || {
        http_get(port, "/rates")
            .ok()
            .filter(|(s, b)| *s == 200 && b.matches("\"pair\"").count() == 28)
    });
}

/// `wrk` with `args`; prints and returns its report.
fn wrk(args: &[&str]) -> String {
    let output = Command::new("wrk")
        .args(args)
        .output()
        .expect("wrk (apt-get install wrk)");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{report}");
    report
}

fn rates(dir: &Path) {
    let port = free_port();
    let file = api_pipeline(
        dir,
        "bench-rates",
        port,
        &sqlite(dir),
        &format!(
            r#""src": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "2024-01-01", speed: PerDay("100ms")),
               "ref": Replay(path: "examples/data/ecb-eurofxref-hist.csv", currencies: {ECB}, emit: Quotes),
               "reference": Sqlite(inputs: ["ref"], resource: "history", batch: (max_events: 5000)),"#,
            ECB = format!("{:?}", ecb_currencies()),
        ),
    );
    let (mut worker, _) = start(dir, "bench-rates", &file);
    wait_for_rates(port);
    // The Frankfurter routes once the ECB history (every currency since 1999) is in memory.
    wait_for("the ECB history", Duration::from_secs(120), || {
        http_get(port, "/v1/latest")
            .ok()
            .filter(|(s, b)| *s == 200 && b.contains("\"ZAR\"") && b.contains("2026-10-30"))
    });
    for (path, what) in [
        ("/rates", "GET /rates (28 pairs, the board's cached body)"),
        (
            "/v1/latest",
            "GET /v1/latest (Frankfurter v1: 29 ECB rates against EUR)",
        ),
        ("/v2/rates", "GET /v2/rates (Frankfurter v2: 30 rows of the newest day)"),
        (
            "/v1/latest?base=USD",
            "GET /v1/latest?base=USD (derived, rounded twice)",
        ),
    ] {
        let url = format!("http://127.0.0.1:{port}{path}");
        let _ = wrk(&["-t1", "-c8", "-d3s", &url]); // warm-up
        println!("== {what}, 64 connections, 10 s (the replay ticking every 100 ms meanwhile)");
        wrk(&["-t2", "-c64", "-d10s", "--latency", &url]);
    }
    worker.terminate(Duration::from_secs(30));
}

fn history(dir: &Path) {
    let port = free_port();
    let store = "Postgres(url: \"postgres://postgres@127.0.0.1:5432/test\", schema: \"fxbench_history\")";
    let file = api_pipeline(dir, "bench-history", port, store, r#""src": Synthetic(count: 1),"#);
    let (mut worker, _) = start(dir, "bench-history", &file);
    wait_for("the API", Duration::from_secs(60), || {
        http_get(port, "/health").ok().filter(|(s, _)| *s == 200)
    });
    let probe = http_get(
        port,
        "/rates/EURUSD/history?from=2026-10-01T00:00:00Z&to=2026-10-31T00:00:00Z&limit=1000",
    )
    .unwrap();
    assert_eq!(probe.0, 200, "{}", probe.1);
    assert_eq!(
        probe.1.matches("\"ts\"").count(),
        1000,
        "the 51.7 M-row history is there (run `cargo bench -p fxflow-stages --bench history` once)"
    );
    // Each request a different 30-day window (start moved by one minute), one page of 1,000 rows
    // (wrk's transfer figure shows the pages are full: ~100 KB each).
    let script = dir.join("history.lua");
    std::fs::write(
        &script,
        r#"
counter = 0
request = function()
  counter = counter + 1
  -- 2026-09-15T00:00:00Z plus up to a day: every window inside EUR/USD's 31 days of seconds.
  local start = 1789430400 + (counter % 1440) * 60
  local from = os.date("!%Y-%m-%dT%H:%M:%SZ", start)
  local to = os.date("!%Y-%m-%dT%H:%M:%SZ", start + 30 * 86400)
  return wrk.format("GET", "/rates/EURUSD/history?from=" .. from .. "&to=" .. to .. "&limit=1000")
end
"#,
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    println!("== GET /rates/EURUSD/history, 30-day windows, pages of 1,000 rows, 1 connection, 20 s");
    wrk(&["-t1", "-c1", "-d20s", "--latency", "-s", script.to_str().unwrap(), &url]);
    println!("== the same, 8 connections (API, PostgreSQL and wrk share the 2 cores)");
    wrk(&["-t2", "-c8", "-d20s", "--latency", "-s", script.to_str().unwrap(), &url]);
    worker.terminate(Duration::from_secs(30));
}

/// POST a rule that holds at once; the time until its firing is read from an open SSE stream.
fn rule_latency(port: u16, pair: &str, runs: usize) -> Vec<Duration> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /stream/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // Headers.
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut took = Vec::new();
    for i in 0..runs {
        let body = format!(
            r#"{{"pair": "{pair}", "condition": {{"type": "above", "threshold": "0.0{}1"}}}}"#,
            i + 1
        );
        let started = Instant::now();
        let (status, answer) = post(port, "/alerts", &body);
        assert_eq!(status, 201, "{answer}");
        let id = answer
            .split("\"id\":\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("the firing arrives on the stream");
            if line.starts_with("data:") && line.contains(&id) {
                took.push(started.elapsed());
                break;
            }
        }
    }
    took
}

fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
    )
}

fn percentiles(what: &str, mut took: Vec<Duration>) {
    took.sort();
    let at = |q: f64| took[((took.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what}: {} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        took.len(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        took.last().unwrap().as_secs_f64() * 1000.0
    );
}

fn rules_in_one_process(dir: &Path) {
    let port = free_port();
    let file = api_pipeline(
        dir,
        "bench-rules",
        port,
        &sqlite(dir),
        r#""src": Replay(path: "examples/data/ecb-eurofxref-hist.csv", from: "2024-01-01", speed: PerDay("50ms")),"#,
    );
    let (mut worker, _) = start(dir, "bench-rules", &file);
    wait_for_rates(port);
    let _ = rule_latency(port, "EUR/USD", 5); // warm-up
    percentiles(
        "POST /alerts → its firing on /stream/alerts, one process",
        rule_latency(port, "USD/JPY", 50),
    );
    worker.terminate(Duration::from_secs(30));
}

fn rules_across_workers(dir: &Path) {
    let broker = Broker::start(dir);
    let pipelines = workspace().join("pipelines");
    let out = fxflow(&["topics", "create", "--resource", "kafka"])
        .args(["ingest.ron", "process.ron", "alerts.ron", "store.ron", "api.ron"].map(|f| pipelines.join(f)))
        .env("KAFKA_BROKERS", broker.address())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let database = "postgres://postgres@127.0.0.1:5432/fxflow";
    let env = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("KAFKA_BROKERS", broker.address()),
            ("FXFLOW_TELEMETRY", format!("127.0.0.1:{}", free_port())),
            ("DATABASE_URL", database.to_owned()),
            ("REDIS_URL", "redis://127.0.0.1:6379/6".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let api_port = free_port();
    let mut workers = vec![
        Worker::start("store", &pipelines.join("store.ron"), &env(&[]), dir),
        Worker::start("process", &pipelines.join("process.ron"), &env(&[]), dir),
        Worker::start("alerts", &pipelines.join("alerts.ron"), &env(&[]), dir),
        Worker::start(
            "api",
            &pipelines.join("api.ron"),
            &env(&[
                ("FXFLOW_API", format!("127.0.0.1:{api_port}")),
                ("FXFLOW_API_KEYS", KEY.into()),
            ]),
            dir,
        ),
    ];
    std::thread::sleep(Duration::from_secs(5));
    workers.push(Worker::start(
        "ingest",
        &pipelines.join("ingest.ron"),
        &env(&[("FXFLOW_DAY", "50ms".into())]),
        dir,
    ));
    wait_for_rates(api_port);
    let _ = rule_latency(api_port, "EUR/USD", 3);
    percentiles(
        "POST /alerts → its firing on /stream/alerts, api → fx.alert-rules → alerts → fx.alerts → api",
        rule_latency(api_port, "USD/JPY", 30),
    );
    for worker in &mut workers {
        worker.kill9();
    }
}

/// Crosses/s of the in-process pipeline while `clients` read `/stream/rates`.
fn pipeline_rate(dir: &Path, clients: usize) -> f64 {
    let port = free_port();
    let snapshots = 2_000_000;
    let file = api_pipeline(
        dir,
        &format!("bench-sse-{clients}"),
        port,
        &sqlite(dir),
        &format!(r#""src": Synthetic(count: {snapshots}, rate: 0, seed: 1),"#),
    );
    // The source starts at once; the rate is measured from when the clients are connected
    // (the counter then) to the last cross, so it covers only the time with clients.
    let (mut worker, telemetry) = start(dir, &format!("bench-sse-{clients}"), &file);
    wait_for("the API", Duration::from_secs(60), || {
        http_get(port, "/health").ok().filter(|(s, _)| *s == 200)
    });
    let mut readers = Vec::new();
    for _ in 0..clients {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(stream, "GET /stream/rates HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        readers.push(stream);
    }
    // Drain every client on a few threads, as fast clients would.
    let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut threads = Vec::new();
    for chunk in readers
        .chunks(250)
        .map(|c| c.iter().map(|s| s.try_clone().unwrap()).collect::<Vec<_>>())
    {
        let bytes = bytes.clone();
        threads.push(std::thread::spawn(move || {
            let mut buffer = [0u8; 65536];
            for stream in &chunk {
                stream.set_nonblocking(true).unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut streams = chunk;
            while Instant::now() < deadline && !streams.is_empty() {
                let mut idle = true;
                streams.retain_mut(|s| match s.read(&mut buffer) {
                    Ok(0) => false,
                    Ok(n) => {
                        idle = false;
                        bytes.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        true
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                    Err(_) => false,
                });
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }));
    }
    let crosses = snapshots as f64 * 28.0;
    let started = Instant::now();
    let counted = || {
        let (_, body) = http_get(telemetry, "/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with("fxflow_stage_sent_events_total{") && l.contains("stage=\"crosses\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let at_start = counted();
    wait_for("every cross", Duration::from_secs(300), || {
        (counted() >= crosses).then_some(())
    });
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (crosses - at_start) / elapsed;
    println!(
        "pipeline with {clients} SSE clients: {rate:.0} crosses/s ({:.1} MB streamed to the clients)",
        bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
    );
    worker.terminate(Duration::from_secs(60));
    drop(readers);
    for thread in threads {
        let _ = thread.join();
    }
    rate
}

fn sse_fan_out(dir: &Path) {
    let without = pipeline_rate(dir, 0);
    let with = pipeline_rate(dir, 1000);
    println!(
        "SSE fan-out: 1,000 clients keep {:.0}% of the pipeline's throughput",
        100.0 * with / without
    );
}
