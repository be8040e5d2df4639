//! `Redis`: the current rate per pair as a hash with a TTL, plus a pub/sub feed of every update.
//!
//! Per batch, one pipelined round trip: for each pair its newest update
//! (`HSET key bid ask mid ts source` + `PEXPIRE`), and — when `channel` is set —
//! a `PUBLISH` of every update as JSON. Only the newest update of a pair in a
//! batch is written to the hash (older ones would be overwritten in the same
//! round trip anyway). The hash holds the latest *written* update: a redelivery
//! of an older event after a newer one (rare: only after a crash) shows the
//! older price until the next update or the TTL, which live feeds bound to
//! seconds.

use std::time::Duration;

use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Envelope, Kinds, ResourceUse, Shape, Sink, SinkError, Stage, StageConfig,
    StageError,
};
use redis::aio::ConnectionManager;
use serde::Deserialize;

use crate::fx::fast_hash::FastMap;
use crate::fx::{kind, FxEvent, Pair, Price};
use crate::resources::redis::{RedisHandle, KIND as REDIS};

/// Keeps the current quote of each pair in Redis (a hash per pair with a TTL)
/// and publishes every update on a pub/sub channel.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// Name of a `Redis` resource.
    pub resource: String,
    /// Hash key of a pair: prefix + pair, e.g. `fx:rate:EUR/USD`.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// How long a pair's hash lives without an update.
    #[serde(default = "default_ttl", with = "fxflow_engine::duration")]
    #[schemars(schema_with = "fxflow_engine::duration::schema")]
    pub ttl: Duration,
    /// Pub/sub channel that receives every update as JSON (unset: no publishing).
    #[serde(default)]
    pub channel: Option<String>,
}

fn default_prefix() -> String {
    "fx:rate:".into()
}

fn default_ttl() -> Duration {
    Duration::from_secs(60)
}

#[async_trait]
impl StageConfig<FxEvent> for RedisConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(&[kind::CROSS_RATE, kind::QUOTE])
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::new("resource", &self.resource, REDIS)]
    }

    fn check(&self) -> Vec<ConfigProblem> {
        if self.ttl < Duration::from_millis(1) {
            return vec![ConfigProblem::field("ttl", "must be at least 1ms")];
        }
        Vec::new()
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let handle = cx.resources.get::<RedisHandle>(&self.resource)?;
        Ok(Stage::Sink(Box::new(RedisSink {
            connection: handle.connection.clone(),
            key_prefix: self.key_prefix.clone(),
            ttl_ms: self.ttl.as_millis().min(i64::MAX as u128) as i64,
            channel: self.channel.clone(),
        })))
    }
}

/// Commands per pipeline; a batch larger than this is sent as several pipelines at once.
const COMMANDS_PER_PIPELINE: usize = 512;

struct RedisSink {
    connection: ConnectionManager,
    key_prefix: String,
    ttl_ms: i64,
    channel: Option<String>,
}

/// Connection trouble is worth retrying; a command the server rejects is not.
fn classify(error: redis::RedisError) -> SinkError {
    if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() || error.is_timeout() {
        SinkError::retryable(error)
    } else {
        SinkError::fatal(error)
    }
}

#[async_trait]
impl Sink<FxEvent> for RedisSink {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        let mut newest: FastMap<Pair, Price> = FastMap::default();
        let mut pipes = vec![redis::pipe()];
        let mut in_pipe = 0;
        // Several pipelines in flight on the multiplexed connection let the client
        // encode one while Redis executes another.
        let mut next_pipe = |pipes: &mut Vec<redis::Pipeline>, commands: usize| {
            in_pipe += commands;
            if in_pipe > COMMANDS_PER_PIPELINE {
                pipes.push(redis::pipe());
                in_pipe = commands;
            }
        };
        for envelope in batch {
            let Some(price) = envelope.event.price() else { continue };
            let entry = newest.entry(price.pair).or_insert(price);
            if price.ts >= entry.ts {
                *entry = price;
            }
            if let Some(channel) = &self.channel {
                let json = serde_json::to_string(&envelope.event).map_err(SinkError::fatal)?;
                next_pipe(&mut pipes, 1);
                pipes.last_mut().expect("one pipe").publish(channel, json).ignore();
            }
        }
        for (pair, p) in newest {
            let key = format!("{}{pair}", self.key_prefix);
            let fields = [
                ("bid", p.bid.to_string()),
                ("ask", p.ask.to_string()),
                ("mid", p.mid().to_string()),
                ("ts", p.ts.to_rfc3339()),
                ("source", p.source.to_string()),
            ];
            next_pipe(&mut pipes, 2);
            let pipe = pipes.last_mut().expect("one pipe");
            pipe.hset_multiple(&key, &fields).ignore();
            pipe.pexpire(&key, self.ttl_ms).ignore();
        }
        let mut in_flight = tokio::task::JoinSet::new();
        for pipe in pipes {
            let mut connection = self.connection.clone();
            in_flight.spawn(async move { pipe.query_async::<()>(&mut connection).await });
        }
        let mut result = Ok(());
        while let Some(done) = in_flight.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(classify(e)),
                Err(e) => result = Err(SinkError::retryable(e)),
            }
        }
        result
    }
}
