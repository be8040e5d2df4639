//! The `Kafka` resource: where the brokers are, client options every Kafka
//! stage of the pipeline shares, and the topics the pipeline expects (created
//! by `fxflow topics create` / `fxflow migrate`).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use serde::Deserialize;

use crate::registry::{ConfigProblem, ResourceConfig};
use crate::stage::StageError;

/// The name the resource kind is registered under by convention.
pub const KIND: &str = "Kafka";

/// A Kafka cluster.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaResourceConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// librdkafka client properties for every stage using this resource
    /// (`"security.protocol": "SASL_SSL"`, `"session.timeout.ms": "10000"`); a
    /// stage's own `options` win.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Topics the workers use, created by `fxflow topics create --resource NAME FILE...`.
    #[serde(default)]
    pub topics: BTreeMap<String, TopicSpec>,
}

/// How a topic is created.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Partitions: the most consumers of one group that can share the topic.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// Topic configs, e.g. `"cleanup.policy": "compact"`, `"retention.ms": "604800000"`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

fn default_partitions() -> i32 {
    4
}
fn default_replication() -> i32 {
    1
}

/// The opened resource: what stages need to make their clients.
#[derive(Debug, Clone)]
pub struct KafkaResource {
    pub brokers: String,
    pub options: BTreeMap<String, String>,
    pub topics: BTreeMap<String, TopicSpec>,
}

impl KafkaResource {
    /// A client config with the brokers, the resource's options, then `overrides`.
    pub fn client_config<'a>(&self, overrides: impl IntoIterator<Item = (&'a str, &'a str)>) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // Small requests (one message, one fetch) must not wait for the peer's
        // delayed ACK: Nagle's algorithm adds up to 40 ms to a hop.
        config.set("socket.nagle.disable", "true");
        for (k, v) in &self.options {
            config.set(k, v);
        }
        for (k, v) in overrides {
            config.set(k, v);
        }
        config
    }

    /// The declared topics the broker does not have yet, with their partition counts.
    pub async fn missing_topics(&self) -> Result<Vec<String>, StageError> {
        use rdkafka::consumer::Consumer as _;
        let consumer: rdkafka::consumer::BaseConsumer = self
            .client_config([])
            .create()
            .map_err(|e| StageError::new(format!("kafka client: {e}")))?;
        let brokers = self.brokers.clone();
        let metadata = tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, Duration::from_secs(10)))
            .await
            .map_err(|e| StageError::new(e.to_string()))?
            .map_err(|e| StageError::new(format!("reading the topics of {brokers}: {e}")))?;
        let present: std::collections::HashSet<&str> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name())
            .collect();
        Ok(self
            .topics
            .iter()
            .filter(|(name, _)| !present.contains(name.as_str()))
            .map(|(name, spec)| format!("topic `{name}` ({} partitions)", spec.partitions))
            .collect())
    }

    /// Create the declared topics that do not exist yet. Returns the names created.
    pub async fn create_topics(&self) -> Result<Vec<String>, StageError> {
        if self.topics.is_empty() {
            return Ok(Vec::new());
        }
        let admin: AdminClient<DefaultClientContext> = self
            .client_config([])
            .create()
            .map_err(|e| StageError::new(format!("kafka admin client: {e}")))?;
        let new_topics: Vec<NewTopic<'_>> = self
            .topics
            .iter()
            .map(|(name, spec)| {
                let mut topic = NewTopic::new(name, spec.partitions, TopicReplication::Fixed(spec.replication));
                for (k, v) in &spec.config {
                    topic = topic.set(k, v);
                }
                topic
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|e| StageError::new(format!("creating topics on {}: {e}", self.brokers)))?;
        let mut created = Vec::new();
        for result in results {
            match result {
                Ok(name) => created.push(name),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(StageError::new(format!("creating topic `{name}`: {code}"))),
            }
        }
        Ok(created)
    }
}

#[async_trait]
impl ResourceConfig for KafkaResourceConfig {
    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push(
                ConfigProblem::field("brokers", "no brokers given").with_hint("e.g. brokers: \"127.0.0.1:9092\""),
            );
        }
        for (name, spec) in &self.topics {
            if spec.partitions < 1 || spec.replication < 1 {
                problems.push(ConfigProblem::field(
                    "topics",
                    format!("topic `{name}`: partitions and replication must be at least 1"),
                ));
            }
        }
        problems
    }

    async fn build(&self) -> Result<Arc<dyn Any + Send + Sync>, StageError> {
        Ok(Arc::new(self.resource()))
    }

    /// Kafka's "schema" is its topics: create the declared ones.
    async fn migrate(&self) -> Result<bool, StageError> {
        let created = self.resource().create_topics().await?;
        tracing::info!(brokers = %self.brokers, created = ?created, declared = self.topics.len(), "Topics ready.");
        Ok(true)
    }

    async fn pending(&self) -> Result<Option<Vec<String>>, StageError> {
        Ok(Some(self.resource().missing_topics().await?))
    }
}

impl KafkaResourceConfig {
    fn resource(&self) -> KafkaResource {
        KafkaResource {
            brokers: self.brokers.clone(),
            options: self.options.clone(),
            topics: self.topics.clone(),
        }
    }
}
