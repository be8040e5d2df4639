//! Email notifications against a real SMTP server (aiosmtpd from PyPI, started
//! here on loopback with STARTTLS and authentication required; the test
//! command installs it): rules created over the API with an `email` target get
//! their firings mailed — pair, condition, value and time — five firings
//! inside the batch window arrive as one message, and an SMTP server that
//! never answers ends, after the shared retries, in the dead-letter output.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fxflow_engine::testkit::free_port;
use serde_json::{json, Value};

const KEY: &str = "email-key-0123456789";
const USER: &str = "fxflow";
const PASSWORD: &str = "smtp-pass-0123";

fn python() -> PathBuf {
    std::env::var_os("FXFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/venv/bin/python"))
}

/// The SMTP server, killed when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn smtp_server(dir: &Path, maildir: &Path) -> SmtpServer {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        // The name the client checks (an unknown issuer is what `accept_invalid_certs` lets pass).
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl makes the test server's certificate");
    assert!(status.success());
    let port = free_port();
    let mut child = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp/smtp_server.py"))
        .arg(port.to_string())
        .arg(maildir)
        .arg(&cert)
        .arg(&key)
        .args([USER, PASSWORD])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the SMTP test server starts (scripts/test.sh installs aiosmtpd into .cache/venv)");
    let mut ready = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    SmtpServer { child, port }
}

/// The messages delivered so far: (recipients, message text).
fn delivered(maildir: &Path) -> Vec<(String, String)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(maildir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|eml| {
            (
                std::fs::read_to_string(eml.with_extension("rcpt")).unwrap_or_default(),
                std::fs::read_to_string(eml).unwrap(),
            )
        })
        .collect()
}

async fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firings_are_mailed_batched_and_dead_lettered_when_smtp_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    std::fs::create_dir(&maildir).unwrap();
    let smtp = smtp_server(dir.path(), &maildir);
    let api = free_port();
    let closed = free_port(); // nothing listens here: an SMTP outage
    let dead = dir.path().join("dead.jsonl");
    let text = format!(
        r#"Pipeline(name: "mail", resources: {{ "history": Sqlite(path: "{db}") }}, stages: {{
            "ecb": Replay(path: "{csv}", from: "2024-01-01", speed: PerDay("50ms")),
            "crosses": CrossRate(inputs: ["ecb"]),
            "api": Api(inputs: ["crosses", "alerts"], listen: "127.0.0.1:{api}", store: "history", keys: "{KEY}"),
            "alerts": Alert(inputs: ["crosses", "api"]),
            "history": Sqlite(inputs: ["alerts"], resource: "history"),
            "mail": Email(inputs: ["alerts"], store: "history", host: "127.0.0.1", port: {port},
                accept_invalid_certs: true, username: "{USER}", password: "{PASSWORD}",
                from: "fxflow alerts <alerts@fxflow.test>", batch: (max_wait: "3s")),
            "mail-down": Email(inputs: ["alerts"], store: "history", host: "127.0.0.1", port: {closed},
                from: "alerts@fxflow.test", timeout: "2s",
                retry: (attempts: 2, initial_backoff: "20ms", max_backoff: "50ms")),
            "dead-letters": JsonlFile(inputs: ["mail.errors", "mail-down.errors"], path: "{dead}"),
        }})"#,
        db = dir.path().join("fx.db").display(),
        csv = support::CSV,
        port = smtp.port,
        dead = dead.display(),
    );
    let spec = fxflow_engine::pipeline_file::load_str("mail.ron", &text, &fxflow_stages::registry(), |_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    let running = fxflow_engine::start(spec).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api}");
    let start = Instant::now();
    while http
        .get(format!("{base}/rates/EURUSD"))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(start.elapsed() < Duration::from_secs(20), "the API has rates");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Rules that hold at once: each fires on the next sample.
    let create = |pair: &str, to: &[&str]| {
        http.post(format!("{base}/alerts"))
            .bearer_auth(KEY)
            .json(&json!({"pair": pair, "condition": {"type": "above", "threshold": "0.01"}, "email": {"to": to}}))
            .send()
    };

    // Five rules of one desk, created together: their firings come within the batch window.
    // (A create is answered once its change is through the pipeline, firing included, so
    // one after the other they would be a window apart.)
    let pairs = ["EUR/USD", "USD/JPY", "GBP/USD", "EUR/GBP", "AUD/USD"];
    let creates = pairs.map(|pair| create(pair, &["desk@fxflow.test"]));
    let mut ids = Vec::new();
    for created in futures_util::future::join_all(creates).await {
        let created = created.unwrap();
        assert_eq!(created.status().as_u16(), 201);
        let body: Value = created.json().await.unwrap();
        assert_eq!(body["email"], json!({"to": ["desk@fxflow.test"]}), "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let first = wait_until("the desk's email", Duration::from_secs(30), || {
        let mail = delivered(&maildir);
        (!mail.is_empty()).then_some(mail)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await; // past the window: nothing more comes
    let mail = delivered(&maildir);
    assert_eq!(
        mail.len(),
        1,
        "five firings inside the window are one message: {first:?}"
    );
    let (to, message) = &mail[0];
    assert_eq!(to.trim(), "desk@fxflow.test");
    assert!(message.contains("Subject: [fxflow] 5 alerts: "), "{message}");
    assert!(
        message.contains("From: \"fxflow alerts\" <alerts@fxflow.test>"),
        "{message}"
    );
    for id in &ids {
        assert!(message.contains(&format!("Rule: {id}")), "{id} in {message}");
    }
    for pair in pairs {
        assert!(message.contains(&format!("Pair: {pair}")), "{pair} in {message}");
    }
    assert!(
        message.contains("Condition: above 0.01") && message.contains("Value: ") && message.contains("Time: 2024-")
    );

    // One firing alone: a message of its own, the headline in the subject.
    let created = create("USD/CHF", &["solo@fxflow.test", "copy@fxflow.test"])
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let mail = wait_until("the second email", Duration::from_secs(30), || {
        let mail = delivered(&maildir);
        (mail.len() == 2).then_some(mail)
    })
    .await;
    let (to, message) = &mail[1];
    let mut recipients: Vec<&str> = to.lines().collect();
    recipients.sort();
    assert_eq!(recipients, vec!["copy@fxflow.test", "solo@fxflow.test"]);
    assert!(message.contains("Subject: [fxflow] USD/CHF above 0.01: "), "{message}");

    // The outage: every firing, after the first try and 2 retries, is a dead letter with why.
    let letters: Vec<Value> = wait_until("the dead letters", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&dead).unwrap_or_default();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (lines.len() >= 6).then_some(lines)
    })
    .await;
    assert!(letters.iter().all(|l| l["stage"] == "mail-down"), "{letters:?}");
    let error = letters[0]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("SMTP 127.0.0.1:{closed}")) && error.contains("gave up after 3 attempts"),
        "{error}"
    );
    assert!(letters.iter().all(|l| l["event"]["rule_id"].is_string()));
    running.stop(Duration::from_secs(20)).await.unwrap();
}
