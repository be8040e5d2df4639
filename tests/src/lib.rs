//! Helpers for fxflow's end-to-end tests: the real `fxflow` binary, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root (pipelines/, examples/data/ are found from here).
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
}

/// The `fxflow` binary, built once for this test run (a no-op when it is up to date).
pub fn fxflow_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // FXFLOW_PROFILE=release (benchmarks) builds and uses the optimised binary.
        let release = std::env::var("FXFLOW_PROFILE").is_ok_and(|p| p == "release");
        let mut args = vec!["build", "--quiet", "-p", "fxflow-stages", "--bin", "fxflow"];
        if release {
            args.push("--release");
        }
        let status = Command::new(cargo)
            .args(&args)
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building fxflow failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"));
        target.join(if release { "release" } else { "debug" }).join("fxflow")
    })
}

/// `fxflow ARGS` in the workspace root.
pub fn fxflow(args: &[&str]) -> Command {
    let mut command = Command::new(fxflow_bin());
    command.args(args).current_dir(workspace()).env("RUST_LOG", "info");
    command
}

pub use fxflow_engine::testkit::free_port;

/// GET `path` from `127.0.0.1:port` with a bare HTTP/1.1 request; returns (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, &[], None)
}

/// One bare HTTP/1.1 request to `127.0.0.1:port` (`headers` as `Name: value`; a body is sent
/// as JSON); returns (status, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    json: Option<&str>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for header in headers {
        request += &format!("{header}\r\n");
    }
    if let Some(body) = json {
        request += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    request += "\r\n";
    request += json.unwrap_or("");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The last `lines` lines of a log, for failure messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Poll `check` every 50 ms until it returns `Some`, or panic after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// A real Apache Kafka broker (KRaft, one node: `scripts/broker.sh run`, the
/// Maven Central jars of deployments/kafka) on free ports with a data folder
/// of its own. This process owns the JVM: `kill` is a SIGKILL crash, `stop`
/// a clean shutdown, and dropping the broker kills it.
pub struct Broker {
    dir: PathBuf,
    pub port: u16,
    controller: u16,
    child: Option<std::process::Child>,
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        let mut broker = Broker {
            dir: dir.join("kafka"),
            port: free_port(),
            controller: free_port(),
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn script(&self, action: &str) -> Command {
        let mut command = Command::new(workspace().join("scripts/broker.sh"));
        command
            .arg(action)
            .env("KAFKA_BROKERS", self.address())
            .env("KAFKA_CONTROLLER_PORT", self.controller.to_string())
            .env("KAFKA_DATA", &self.dir);
        command
    }

    /// Start (again) on the same ports and data; returns once it answers a metadata request.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        std::fs::create_dir_all(&self.dir).expect("broker folder");
        let log = self.dir.join("run.log");
        let child = self
            .script("run")
            .stdout(log_file(&log))
            .stderr(log_file(&log))
            .spawn()
            .expect("scripts/broker.sh runs (Java 17 and Maven; scripts/test.sh fetches the jars)");
        self.child = Some(child);
        let ready = self.script("ready").output().expect("scripts/broker.sh ready");
        assert!(
            ready.status.success(),
            "the broker did not answer: {}\n{}",
            String::from_utf8_lossy(&ready.stderr),
            std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
        );
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: a clean shutdown.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An `fxflow run FILE` worker process, restartable, with its logs kept.
pub struct Worker {
    pub name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<std::process::Child>,
    pub starts: u32,
}

impl Worker {
    pub fn start(name: &str, file: &Path, env: &[(&str, String)], dir: &Path) -> Worker {
        let mut worker = Worker {
            name: name.to_owned(),
            args: vec![
                "--log-format".into(),
                "text".into(),
                "run".into(),
                file.display().to_string(),
            ],
            env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            log: dir.join(format!("{name}.log")),
            child: None,
            starts: 0,
        };
        worker.restart();
        worker
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "worker {} already running", self.name);
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut command = fxflow(&args);
        command
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let child = command
            .stdout(log_file(&self.log))
            .stderr(log_file(&self.log))
            .spawn()
            .expect("fxflow runs");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGHUP: apply the pipeline file's new version while running.
    pub fn hangup(&self) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: drain and exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        self.wait_child(&mut child, timeout)
    }

    /// Wait for the worker to end by itself (a finite source).
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        self.wait_child(&mut child, timeout)
    }

    fn wait_child(&self, child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                panic!(
                    "worker {} did not finish within {timeout:?}; log:\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("wait").is_none(),
            None => false,
        }
    }

    /// Everything every incarnation logged.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A child process killed when the test lets go of it, also when the test panics, so a
/// failed test leaves no server running. Derefs to the `Child`.
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A fresh PostgreSQL database named `PREFIX_<pid>_<micros>` on the test server (so a test's
/// writes, or its outage, touch no other test); returns its name.
pub fn create_database(prefix: &str) -> String {
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    postgres_admin(&format!("CREATE DATABASE {name}"));
    name
}

/// Run one statement on the test server's `postgres` database (test-made SQL only).
pub fn postgres_admin(sql: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it)");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut admin)
            .await
            .unwrap();
    });
}
