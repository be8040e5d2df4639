//! The deployment files (deployments/, dashboards/) checked against each other, their schemas and
//! the running program, by `scripts/check_deployment.py`: one test per check on the repository's
//! files, and tests that break one reference in a copy and require the check to fail naming it.
//!
//! Needs the checker's Python packages (`pip install -r scripts/requirements-checks.txt`; a venv
//! at .cache/venv is used when present; FXFLOW_PYTHON, as scripts/test.sh sets it, or
//! FXFLOW_CHECK_PYTHON choose another) and Debian's `prometheus`
//! package (promtool and the server). The Grafana live test also starts a Kafka broker
//! (scripts/broker.sh, like tests/tests/workers.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fxflow_tests::{free_port, fxflow, fxflow_bin, http_get, tail, wait_for, workspace, Broker, Worker};

/// The Python that has the checker's packages.
fn python() -> PathBuf {
    // scripts/test.sh exports FXFLOW_PYTHON (its venv); FXFLOW_CHECK_PYTHON overrides.
    for var in ["FXFLOW_CHECK_PYTHON", "FXFLOW_PYTHON"] {
        if let Some(python) = std::env::var_os(var) {
            return PathBuf::from(python);
        }
    }
    let venv = workspace().join(".cache/venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// `scripts/check_deployment.py --root ROOT ARGS`, with the binary under test.
fn check(root: &Path, args: &[&str]) -> Output {
    Command::new(python())
        .arg(workspace().join("scripts/check_deployment.py"))
        .arg("--root")
        .arg(root)
        .arg("--fxflow")
        .arg(fxflow_bin())
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("python runs scripts/check_deployment.py (pip install -r scripts/requirements-checks.txt)")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The check passes on the repository's own files.
fn passes(args: &[&str]) -> String {
    let output = check(workspace(), args);
    let report = text(&output);
    assert!(
        output.status.success(),
        "check_deployment.py {} failed:\n{report}",
        args.join(" ")
    );
    report
}

/// The check fails (exit 1, not a usage error) on `root` and its report names every needle.
fn fails_naming(root: &Path, args: &[&str], needles: &[&str]) {
    let output = check(root, args);
    let report = text(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "check_deployment.py {} should fail on the broken copy:\n{report}",
        args.join(" ")
    );
    for needle in needles {
        assert!(
            report.contains(needle),
            "the failure does not name `{needle}`:\n{report}"
        );
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// A copy of everything the checks read: the deployment files, the pipelines, the sources that
/// define the metric names, and what the Dockerfile copies into the image.
fn copy_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    for sub in [
        "deployments",
        "dashboards",
        "pipelines",
        "engine/src",
        "stages/src",
        "migrations",
        "examples/data",
    ] {
        copy_dir(&workspace().join(sub), &dir.path().join(sub));
    }
    std::fs::copy(workspace().join(".dockerignore"), dir.path().join(".dockerignore")).expect("copy .dockerignore");
    dir
}

/// Replace the first `from` in `root/file` by `to` (which must change the file).
fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).expect("read the copy");
    assert!(text.contains(from), "{file} does not contain `{from}`");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write the copy");
}

fn wait_ready(port: u16, what: &str) {
    wait_for(what, Duration::from_secs(60), || {
        matches!(http_get(port, "/ready"), Ok((200, _))).then_some(())
    });
}

fn metrics_contain(port: u16, name: &str) -> bool {
    matches!(http_get(port, "/metrics"), Ok((200, body)) if body.lines().any(|l| l.starts_with(name)))
}

// ------------------------------------------------------------------------------------ compose

#[test]
fn compose_file_is_valid_and_consistent() {
    let report = passes(&["compose"]);
    assert!(report.contains("compose: ok"), "{report}");
}

#[test]
fn a_relative_fxflow_bin_works_from_the_repository_root() {
    // The k8s check runs the binary from a temporary folder; a relative path must still find it.
    let relative = fxflow_bin()
        .strip_prefix(workspace())
        .expect("the test binary is built under the workspace")
        .to_owned();
    let output = Command::new(python())
        .arg("scripts/check_deployment.py")
        .arg("k8s")
        .env("FXFLOW_BIN", &relative)
        .current_dir(workspace())
        .output()
        .expect("python runs scripts/check_deployment.py");
    let report = text(&output);
    assert!(output.status.success(), "FXFLOW_BIN={}:\n{report}", relative.display());
    assert!(report.contains("k8s: ok"), "{report}");
}

#[test]
fn compose_check_names_a_service_that_does_not_exist() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "deployments/compose.yaml",
        "ELASTICSEARCH_URL: http://elasticsearch:9200",
        "ELASTICSEARCH_URL: http://elastic:9200",
    );
    fails_naming(
        copy.path(),
        &["compose"],
        &["service `index`", "`elastic`", "not a service"],
    );
}

#[test]
fn compose_check_names_a_pipeline_variable_the_environment_lacks() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "pipelines/store.ron",
        "\"${REDIS_URL:-redis://127.0.0.1:6379}\"",
        "\"${REDIS_ADDRESS}\"",
    );
    fails_naming(
        copy.path(),
        &["compose"],
        &["service `store`", "REDIS_ADDRESS", "is not set"],
    );
}

#[test]
fn compose_check_names_an_undeclared_volume() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "deployments/compose.yaml",
        "- redis-data:/data",
        "- redis-state:/data",
    );
    fails_naming(copy.path(), &["compose"], &["`redis-state`", "does not declare"]);
}

#[test]
fn compose_check_applies_the_compose_specification_schema() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "deployments/compose.yaml",
        "    image: redis:7.4\n",
        "    image: redis:7.4\n    restart_policy: always\n",
    );
    fails_naming(
        copy.path(),
        &["compose"],
        &["services.redis", "schema", "restart_policy"],
    );
}

#[test]
fn compose_check_refuses_a_host_port_on_a_scaled_worker() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "deployments/compose.yaml",
        "    command: [\"run\", \"pipelines/process.ron\"]\n",
        "    command: [\"run\", \"pipelines/process.ron\"]\n    ports: [\"9598:9598\"]\n",
    );
    fails_naming(copy.path(), &["compose"], &["service `process`", "--scale"]);
}

#[test]
fn compose_check_names_a_broken_dockerfile_reference() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "deployments/Dockerfile",
        "COPY --from=build /src/target/release/fxflow",
        "COPY --from=builder /src/target/release/fxflow",
    );
    fails_naming(copy.path(), &["compose"], &["deployments/Dockerfile", "--from=builder"]);
}

// ------------------------------------------------------------------------------------ k8s

#[test]
fn kubernetes_base_is_valid_against_the_schemas() {
    let report = passes(&["k8s"]);
    assert!(report.contains("k8s: ok"), "{report}");
}

#[test]
fn kubernetes_check_names_a_pipeline_file_missing_from_the_config_map() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "deployments/k8s/process.yaml",
        "/etc/fxflow/pipelines/process.ron",
        "/etc/fxflow/pipelines/proces.ron",
    );
    fails_naming(
        copy.path(),
        &["k8s"],
        &["Deployment/process", "proces.ron", "has no key"],
    );
}

#[test]
fn kubernetes_check_names_a_missing_secret_key_and_a_schema_error() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "deployments/k8s/store.yaml",
        "key: database-url",
        "key: database_url",
    );
    edit(
        copy.path(),
        "deployments/k8s/api.yaml",
        "periodSeconds: 5",
        "periodSeconds: '5'",
    );
    fails_naming(
        copy.path(),
        &["k8s"],
        &["Deployment/store", "database_url", "Deployment/api", "periodSeconds"],
    );
}

#[test]
fn the_keda_overlay_is_valid_against_keda_s_schema_and_the_pipelines() {
    let report = passes(&["k8s", "--dir", "deployments/k8s/keda"]);
    assert!(report.contains("k8s: ok"), "{report}");
    assert!(report.contains("4 against KEDA's schema"), "{report}");
    assert!(
        report.contains("3 Jobs"),
        "the topics, migrate and backfill Jobs: {report}"
    );
}

#[test]
fn the_keda_check_names_a_schema_error_a_wrong_group_and_more_replicas_than_partitions() {
    let copy = copy_tree();
    let file = "deployments/k8s/keda/scaledobjects.yaml";
    edit(copy.path(), file, "maxReplicaCount: 4", "maxReplicaCount: \"4\"");
    edit(
        copy.path(),
        file,
        "consumerGroup: fxflow-alerts",
        "consumerGroup: fxflow-alert",
    );
    edit(copy.path(), file, "maxReplicaCount: 8", "maxReplicaCount: 9");
    fails_naming(
        copy.path(),
        &["k8s", "--dir", "deployments/k8s/keda"],
        &[
            "ScaledObject/process",
            "KEDA schema: /spec/maxReplicaCount",
            "ScaledObject/alerts",
            "no KafkaSource in group `fxflow-alert`",
            "maxReplicaCount 9 is more than the 8 partitions",
        ],
    );
}

#[test]
fn the_keda_check_names_a_grouped_worker_left_without_a_scaled_object() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "deployments/k8s/keda/scaledobjects.yaml",
        "    name: index\n",
        "    name: api\n",
    );
    fails_naming(
        copy.path(),
        &["k8s", "--dir", "deployments/k8s/keda"],
        &["Deployment/index", "without a ScaledObject", "ScaledObject/index"],
    );
}

// ------------------------------------------------------------------------------------ kibana

#[test]
fn kibana_objects_use_only_fields_the_sink_maps() {
    let report = passes(&["kibana"]);
    assert!(report.contains("kibana: ok"), "{report}");
    // The volatility panel's index exists now (the analytics worker's readings, indexed).
    assert!(!report.contains("PENDING"), "no panel is pending: {report}");
    assert!(
        report.contains("fxflow-fx-volatility"),
        "the volatility panel is checked against its template: {report}"
    );
}

#[test]
fn kibana_check_names_a_field_the_index_template_lacks() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "dashboards/kibana/fx.ndjson",
        "\"sourceField\":\"mid\"",
        "\"sourceField\":\"mid_price\"",
    );
    fails_naming(copy.path(), &["kibana"], &["mid_price", "does not map"]);
}

#[test]
fn kibana_check_names_a_dangling_reference() {
    let copy = copy_tree();
    let file = copy.path().join("dashboards/kibana/fx.ndjson");
    let text = std::fs::read_to_string(&file).unwrap();
    // Only the dashboard's reference changes: the Lens object keeps its id.
    let dashboard = text.lines().find(|l| l.contains("\"type\":\"dashboard\"")).unwrap();
    let broken = dashboard.replacen(
        "\"id\":\"fxflow-lens-alerts-timeline\"",
        "\"id\":\"fxflow-lens-alerts-time\"",
        1,
    );
    assert_ne!(dashboard, broken);
    std::fs::write(&file, text.replacen(dashboard, &broken, 1)).unwrap();
    fails_naming(
        copy.path(),
        &["kibana"],
        &["fxflow-lens-alerts-time", "not in the file"],
    );
}

// ------------------------------------------------------------------------------------ prometheus

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let report = passes(&["prometheus"]);
    assert!(report.contains("prometheus: ok"), "{report}");
}

#[test]
fn prometheus_check_names_a_rule_metric_the_code_does_not_export() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "dashboards/prometheus/fxflow-rules.yml",
        "max by (pipeline, stage) (fxflow_channel_utilization)",
        "max by (pipeline, stage) (fxflow_channel_utilisation)",
    );
    fails_naming(
        copy.path(),
        &["prometheus"],
        &["FxflowBufferFull", "fxflow_channel_utilisation"],
    );
}

#[test]
fn prometheus_check_names_a_rule_promtool_refuses() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "dashboards/prometheus/fxflow-rules.yml",
        "expr: up{job=~\"fxflow.*\"} == 0",
        "expr: up{job=~\"fxflow.*\" == 0",
    );
    fails_naming(
        copy.path(),
        &["prometheus"],
        &["fxflow-rules.yml", "promtool check rules"],
    );
}

/// A real Prometheus scrapes a running `fxflow run pipelines/local.ron`, answers a query on
/// fxflow_stage_received_events_total, and evaluates every rule expression.
#[test]
fn a_real_prometheus_scrapes_a_worker_and_evaluates_every_rule() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = free_port();
    let env = [
        ("FXFLOW_TELEMETRY", format!("127.0.0.1:{telemetry}")),
        ("FXFLOW_API", format!("127.0.0.1:{}", free_port())),
        ("FXFLOW_OUT", dir.path().display().to_string()),
        ("FXFLOW_DAY", "20ms".to_string()),
    ];
    let mut worker = Worker::start("local", &workspace().join("pipelines/local.ron"), &env, dir.path());
    wait_ready(telemetry, "the local pipeline's /ready");
    let target = format!("127.0.0.1:{telemetry}");
    let output = check(workspace(), &["prometheus", "--live-target", target.as_str()]);
    let report = text(&output);
    assert!(worker.is_running(), "the worker stopped:\n{}", worker.logs());
    assert!(output.status.success(), "live Prometheus check failed:\n{report}");
    assert!(report.contains("fxflow_stage_received_events_total has"), "{report}");
    assert!(
        report.contains("rule expressions evaluated by a live Prometheus"),
        "{report}"
    );
    let _ = worker.terminate(Duration::from_secs(30));
}

// ------------------------------------------------------------------------------------ grafana

#[test]
fn grafana_dashboard_names_only_exported_metrics() {
    let report = passes(&["grafana"]);
    assert!(report.contains("grafana: ok"), "{report}");
}

#[test]
fn grafana_check_names_a_metric_the_code_does_not_export() {
    let copy = copy_tree();
    edit(
        copy.path(),
        "dashboards/grafana/fxflow.json",
        "fxflow_stage_errors_total{",
        "fxflow_stage_error_total{",
    );
    fails_naming(
        copy.path(),
        &["grafana"],
        &["fxflow_stage_error_total", "does not export"],
    );
}

/// Every metric in every Grafana expression is on a live /metrics: local.ron (stages, alerts,
/// API after a request), tests/pipelines/metrics-probe.ron (errors, dead letters, discards) and
/// a Kafka worker (consumer lag).
#[test]
fn grafana_dashboard_metrics_exist_on_live_workers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let topics = fxflow(&["topics", "create", "--resource", "kafka", "pipelines/process.ron"])
        .env("KAFKA_BROKERS", broker.address())
        .output()
        .unwrap();
    assert!(
        topics.status.success(),
        "topics create failed: {}",
        String::from_utf8_lossy(&topics.stderr)
    );

    let (local_port, api_port, probe_port, process_port) = (free_port(), free_port(), free_port(), free_port());
    let local_env = [
        ("FXFLOW_TELEMETRY", format!("127.0.0.1:{local_port}")),
        ("FXFLOW_API", format!("127.0.0.1:{api_port}")),
        ("FXFLOW_OUT", dir.path().join("local").display().to_string()),
        ("FXFLOW_DAY", "20ms".to_string()),
    ];
    std::fs::create_dir_all(dir.path().join("local")).unwrap();
    let csv = dir.path().join("probe.csv");
    std::fs::write(
        &csv,
        "Date,USD,JPY,GBP,\n2024-01-03,1.0919,155.12,0.8635,\nnot-a-date,1.1,x,0.9,\n2024-01-02,1.0956,155.56,0.8651,\n",
    )
    .unwrap();
    let probe_env = [
        ("FXFLOW_TELEMETRY", format!("127.0.0.1:{probe_port}")),
        ("FXFLOW_OUT", dir.path().display().to_string()),
        ("PROBE_CSV", csv.display().to_string()),
    ];
    let process_env = [
        ("FXFLOW_TELEMETRY", format!("127.0.0.1:{process_port}")),
        ("KAFKA_BROKERS", broker.address()),
    ];
    let mut local = Worker::start(
        "local",
        &workspace().join("pipelines/local.ron"),
        &local_env,
        dir.path(),
    );
    let mut probe = Worker::start(
        "probe",
        &workspace().join("tests/pipelines/metrics-probe.ron"),
        &probe_env,
        dir.path(),
    );
    let mut process = Worker::start(
        "process",
        &workspace().join("pipelines/process.ron"),
        &process_env,
        dir.path(),
    );
    wait_ready(local_port, "local.ron /ready");
    wait_ready(api_port, "the API's /ready");
    let _ = http_get(api_port, "/rates"); // the API's request metrics appear with the first request
    wait_for("the API request metrics", Duration::from_secs(30), || {
        metrics_contain(local_port, "fxflow_api_request_duration_seconds_bucket").then_some(())
    });
    // The firing counter, like every counter, appears with its first firing (the replay's
    // first is a few simulated weeks in).
    wait_for("local.ron's first alert", Duration::from_secs(60), || {
        metrics_contain(local_port, "fxflow_alerts_fired_total").then_some(())
    });
    wait_for("the probe's errors and discards", Duration::from_secs(30), || {
        (metrics_contain(probe_port, "fxflow_stage_errors_total")
            && metrics_contain(probe_port, "fxflow_stage_discarded_events_total"))
        .then_some(())
    });
    wait_for("the process worker's consumer lag", Duration::from_secs(90), || {
        metrics_contain(process_port, "fxflow_kafka_consumer_lag").then_some(())
    });
    let urls: Vec<String> = [local_port, probe_port, process_port]
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}/metrics"))
        .collect();
    let mut args = vec!["grafana"];
    for url in &urls {
        args.extend(["--metrics-url", url.as_str()]);
    }
    let output = check(workspace(), &args);
    let report = text(&output);
    assert!(
        output.status.success(),
        "Grafana expressions name metrics no live worker shows:\n{report}\nlocal.ron's log (tail):\n{}",
        tail(&local.logs(), 25)
    );
    assert!(report.contains("all seen live"), "{report}");

    // The same check fails when a panel names a real metric that the scraped workers do not show.
    let only_local = format!("http://127.0.0.1:{local_port}/metrics");
    let output = check(workspace(), &["grafana", "--metrics-url", only_local.as_str()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("fxflow_kafka_consumer_lag"), "{}", text(&output));

    for worker in [&mut local, &mut probe, &mut process] {
        let _ = worker.terminate(Duration::from_secs(30));
    }
    drop(broker);
}
