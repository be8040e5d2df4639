//! Shared helpers of the store tests: real services, isolated per test.

#![allow(dead_code)]

use std::collections::HashMap;

use sqlx::Connection;

/// The local PostgreSQL (trust auth; scripts/test.sh starts it).
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A name no other test or run uses.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("fxtest_{tag}_{}_{nanos}", std::process::id())
}

/// A new empty schema, so tests can run in parallel without seeing each other's rows.
pub async fn fresh_schema(tag: &str) -> String {
    let schema = unique(tag);
    let mut admin = sqlx::PgConnection::connect(POSTGRES)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (scripts/test.sh starts it)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .unwrap();
    schema
}

/// A pool whose `search_path` is `schema`.
pub async fn pool(schema: &str) -> sqlx::PgPool {
    let config = fxflow_stages::backends::postgres::PostgresResourceConfig {
        url: POSTGRES.into(),
        schema: Some(schema.into()),
        pool: Default::default(),
    };
    config.connect().await.unwrap()
}

/// Run a pipeline to the end with `${VAR}` taken from `vars`.
pub async fn run(ron: &str, vars: &[(&str, String)]) {
    let vars: HashMap<&str, String> = vars.iter().cloned().collect();
    let spec = fxflow_engine::pipeline_file::load_str("test.ron", ron, &fxflow_stages::registry(), |name| {
        vars.get(name).cloned()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    fxflow_engine::start(spec).await.unwrap().wait().await.unwrap();
}

pub const CSV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/ecb-eurofxref-hist.csv");
