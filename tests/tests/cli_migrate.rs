//! A user's story: "I point fxflow at my database and run its migrations."

use std::process::Command;

use fxflow_tests::fxflow;

fn psql(sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tAc", sql])
        .output()
        .expect("psql runs (scripts/test.sh ensures PostgreSQL)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn migrate_creates_the_tables_once_checks_without_applying_and_names_unknown_resources() {
    let schema = format!("fxtest_cli_migrate_{}", std::process::id());
    psql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("store.ron");
    std::fs::write(
        &file,
        format!(
            r#"Pipeline(name: "store",
    resources: {{ "db": Postgres(url: "postgres://postgres@127.0.0.1:5432/test", schema: "{schema}") }},
    stages: {{
        "walk": Synthetic(count: 1),
        "cross": CrossRate(inputs: ["walk"]),
        "db": Postgres(inputs: ["cross"], resource: "db"),
    }})"#
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    // `--check` on the empty schema: every migration pending, nothing applied.
    let check = fxflow(&["migrate", "--check", "--resource", "db", path])
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let pending = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(pending.contains("not up to date: migration "), "{pending}");
    assert!(pending.contains("(tenants)"), "names each migration: {pending}");
    assert_eq!(
        psql(&format!(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}'"
        )),
        "0",
        "--check applies nothing"
    );
    // `--check --wait` while another process migrates: it returns once the schema is there.
    let mut waiter = fxflow(&["migrate", "--check", "--wait", "60s", "--resource", "db", path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(waiter.try_wait().unwrap().is_none(), "still waiting for the migrations");
    for _ in 0..2 {
        let output = fxflow(&["migrate", "--resource", "db", path]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("resource `db` (Postgres) is up to date"));
    }
    let waited = waiter.wait_with_output().unwrap();
    assert!(waited.status.success(), "{}", String::from_utf8_lossy(&waited.stderr));
    assert!(String::from_utf8_lossy(&waited.stdout).contains("is up to date"));
    let check = fxflow(&["migrate", "--check", "--resource", "db", path])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let tables = psql(&format!(
        "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables \
         WHERE table_schema = '{schema}' AND table_name LIKE 'fx_%' AND table_name <> 'fx_rates_default'"
    ));
    assert_eq!(
        tables,
        "fx_alert_history,fx_alert_rules,fx_candles,fx_rates,fx_volatility"
    );

    let output = fxflow(&["migrate", "--resource", "nope", path]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("declares no resource `nope` (it has: db)"));
    psql(&format!("DROP SCHEMA {schema} CASCADE"));
}
