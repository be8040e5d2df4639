//! What several end-to-end tests share (each test file is its own crate: `mod support;`).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

/// Run `queries` on the SQLite file a pipeline wrote, from a plain test.
pub fn on_sqlite<T>(
    db: &Path,
    queries: impl for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> Pin<Box<dyn Future<Output = T> + 'c>>,
) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        queries(&mut conn).await
    })
}

/// One integer (a count) from SQLite.
pub async fn count(conn: &mut sqlx::SqliteConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

/// Ctrl-C for a child `fxflow run`, and its exit once it drained.
pub fn interrupt(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    fxflow_tests::wait_for("exit after SIGINT", std::time::Duration::from_secs(30), || {
        child.try_wait().unwrap()
    })
}
