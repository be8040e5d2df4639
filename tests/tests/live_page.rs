//! A user's story: "I run the embedded default, open /live, see rates move,
//! create an alert and watch it fire, without reading any docs."
//!
//! A real browser: Debian's headless Chromium (/usr/bin/chromium, or
//! FXFLOW_CHROMIUM) driven by playwright-core (tests/browser/live.mjs) against
//! `fxflow run pipelines/local.ron`. Needs Node 18+ and Chromium (scripts/test.sh
//! installs both); runs `npm ci` in tests/browser when its node_modules are
//! missing.
//! Screenshots and the measured numbers land in target/browser-artifacts/.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fxflow_tests::{free_port, fxflow, http_get, tail, wait_for, workspace};

/// The API key the pipeline is given (at least 16 characters).
const KEY: &str = "live-page-test-key-0123456789";

/// The pipeline, killed if the test panics before it is stopped.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// `npm ci` in tests/browser unless playwright-core is already installed.
fn ensure_node_modules(dir: &Path) {
    if dir.join("node_modules/playwright-core/package.json").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm runs (Node 18+ with npm; scripts/test.sh installs them)");
    assert!(status.success(), "`npm ci` in {} failed", dir.display());
}

#[test]
fn the_live_page_shows_rates_moving_and_an_alert_firing_in_a_real_browser() {
    let chromium = std::env::var("FXFLOW_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install -y chromium` (scripts/test.sh does it)"
    );
    let browser_dir = workspace().join("tests/browser");
    ensure_node_modules(&browser_dir);

    let out = tempfile::tempdir().unwrap();
    let artifacts = target_dir().join("browser-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let api_port = free_port();
    let log_path = out.path().join("fxflow.log");
    // From 2010 at 10 ms a day: about 40 s of replay at ~2,800 rate updates a
    // second, so the page is under a real burst while the browser checks run.
    let child = fxflow(&["run", "pipelines/local.ron"])
        .env("FXFLOW_API", format!("127.0.0.1:{api_port}"))
        .env("FXFLOW_TELEMETRY", format!("127.0.0.1:{}", free_port()))
        .env("FXFLOW_OUT", out.path())
        .env("FXFLOW_API_KEYS", KEY)
        .env("FXFLOW_FROM", "2010-01-01")
        .env("FXFLOW_DAY", "10ms")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(File::create(&log_path).unwrap())
        .spawn()
        .expect("fxflow runs");
    let pid = child.id();
    let mut pipeline = Running(Some(child));
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // The API answers, and every pair has a price.
    wait_for("the API's /health", Duration::from_secs(60), || {
        http_get(api_port, "/health").ok().filter(|(status, _)| *status == 200)
    });
    wait_for("a price for every pair on /rates", Duration::from_secs(60), || {
        let (status, body) = http_get(api_port, "/rates").ok()?;
        (status == 200 && body.matches("\"pair\":").count() >= 28).then_some(())
    });

    // The browser test, with a watchdog: it stops by itself, but never hangs the suite.
    let node_out = out.path().join("live.out");
    let node = std::env::var("FXFLOW_NODE").unwrap_or_else(|_| "node".into());
    let mut browser = Command::new(&node)
        .arg(browser_dir.join("live.mjs"))
        .args([
            "--base",
            &format!("http://127.0.0.1:{api_port}"),
            "--key",
            KEY,
            "--chromium",
            &chromium,
        ])
        .arg("--out")
        .arg(&artifacts)
        .current_dir(workspace())
        .stdout(File::create(&node_out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (Node 18+; scripts/test.sh installs it)");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = browser.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = browser.kill();
            let _ = browser.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(&node_out).unwrap_or_default();
    println!("{printed}");

    // Ctrl-C: the pipeline drains and exits.
    let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
    let child = pipeline.0.as_mut().unwrap();
    let exit = wait_for("fxflow to exit after SIGINT", Duration::from_secs(30), || {
        child.try_wait().unwrap()
    });
    pipeline.0 = None;

    let status = status.unwrap_or_else(|| panic!("the browser test did not finish within 240 s:\n{printed}"));
    assert!(
        status.success(),
        "the browser test failed ({status}); screenshots in {}:\n{printed}\nfxflow log (tail):\n{}",
        artifacts.display(),
        tail(&log(), 40)
    );
    assert!(printed.contains(" passed, 0 failed"), "no summary line:\n{printed}");
    for file in ["board.png", "chart.png"] {
        assert!(artifacts.join(file).exists(), "no {file} in {}", artifacts.display());
    }
    assert!(exit.success(), "fxflow exited {exit:?}:\n{}", tail(&log(), 40));
}
