//! `Redis` resource: one auto-reconnecting multiplexed connection, shared by every stage that names it.

use std::any::Any;
use std::sync::Arc;

use fxflow_engine::{async_trait, ConfigProblem, ResourceConfig, StageError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

/// A Redis server, e.g. `Redis(url: "redis://127.0.0.1:6379/0")`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisResourceConfig {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
}

/// What stages get from [`fxflow_engine::Resources::get`]: cheap to clone, reconnects by itself.
#[derive(Clone)]
pub struct RedisHandle {
    pub connection: ConnectionManager,
    pub url: String,
}

/// The resource kind name, as written in pipeline files and checked by stages that use it.
pub const KIND: &str = "Redis";

#[async_trait]
impl ResourceConfig for RedisResourceConfig {
    fn check(&self) -> Vec<ConfigProblem> {
        match redis::Client::open(self.url.as_str()) {
            Ok(_) => Vec::new(),
            Err(e) => {
                vec![ConfigProblem::field("url", format!("not a Redis URL: {e}")).with_hint("redis://127.0.0.1:6379/0")]
            }
        }
    }

    async fn build(&self) -> Result<Arc<dyn Any + Send + Sync>, StageError> {
        let client = redis::Client::open(self.url.as_str()).map_err(StageError::new)?;
        // Bounded retries while connecting at start; later drops reconnect on the next command.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(3)
            .set_connection_timeout(std::time::Duration::from_secs(5))
            .set_response_timeout(std::time::Duration::from_secs(10));
        tracing::info!(url = %redacted(&self.url), "Connecting to Redis.");
        let connection = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| {
            StageError::new(format!(
                "cannot connect to {}: no answer within 20 s",
                redacted(&self.url)
            ))
        })?
        .map_err(|e| StageError::new(format!("cannot connect to {}: {e}", redacted(&self.url))))?;
        Ok(Arc::new(RedisHandle {
            connection,
            url: self.url.clone(),
        }))
    }
}

/// The URL without its password, for logs and errors.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
