//! A user's story: "my workers' init containers wait until the set-up Job has created the topics"
//! (`fxflow topics check [--wait]`, on a real Apache Kafka broker).

use std::process::Stdio;
use std::time::{Duration, Instant};

use fxflow_tests::{fxflow, Broker};

#[test]
fn topics_check_names_missing_topics_and_waits_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let brokers = broker.address();
    let files = ["pipelines/process.ron", "pipelines/alerts.ron"];
    let check = |extra: &[&str]| {
        let mut command = fxflow(&["topics", "check", "--resource", "kafka"]);
        command.args(extra).args(files).env("KAFKA_BROKERS", &brokers);
        command
    };

    let missing = check(&[]).output().unwrap();
    assert_eq!(
        missing.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    let said = String::from_utf8_lossy(&missing.stderr).into_owned();
    assert!(
        said.contains("not up to date") && said.contains("topic `fx.rates` (8 partitions)"),
        "{said}"
    );

    // An init container's wait, started before the set-up Job.
    let started = Instant::now();
    let waiter = check(&["--wait", "90s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let create = fxflow(&["topics", "create", "--resource", "kafka"])
        .args(files)
        .env("KAFKA_BROKERS", &brokers)
        .output()
        .unwrap();
    assert!(create.status.success(), "{}", String::from_utf8_lossy(&create.stderr));
    let waited = waiter.wait_with_output().unwrap();
    assert!(waited.status.success(), "{}", String::from_utf8_lossy(&waited.stderr));
    assert!(started.elapsed() >= Duration::from_secs(3), "it waited for the topics");
    let out = String::from_utf8_lossy(&waited.stdout);
    assert!(
        out.contains("process.ron: resource `kafka` (Kafka) is up to date"),
        "{out}"
    );
    assert!(
        out.contains("alerts.ron: resource `kafka` (Kafka) is up to date"),
        "{out}"
    );
    assert!(String::from_utf8_lossy(&waited.stderr).contains("waiting: not up to date"));

    // A broker that is not there: a wait that runs out says why, a plain check too.
    let unreachable = fxflow(&["topics", "check", "--wait", "3s", "--resource", "kafka", files[0]])
        .env("KAFKA_BROKERS", "127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot be checked"),
        "{}",
        String::from_utf8_lossy(&unreachable.stderr)
    );
}
