//! `Redis`: the current rate per pair as a hash with a TTL, a pub/sub feed of
//! every update, and a cache of the alert rules of each pair.
//!
//! Per batch, one pipelined round trip: for each pair its newest update
//! (`HSET key bid ask mid ts source kind change` + `PEXPIRE`), and — when `channel` is set —
//! a `PUBLISH` of every update as JSON. Only the newest update of a pair in a
//! batch is written to the hash (older ones would be overwritten in the same
//! round trip anyway). The hash holds the latest *written* update: a redelivery
//! of an older event after a newer one (rare: only after a crash) shows the
//! older price until the next update or the TTL, which live feeds bound to
//! seconds.
//!
//! Rule changes (`AlertRuleChange`) keep one hash per pair, rule id → rule as
//! JSON (`fx:rules:EUR/USD`), for readers that need "the rules of this pair"
//! without a database query, plus an index hash rule id → pair
//! (`fx:rules:index`), so a deletion — which names only the id — and a rule
//! that moves to another pair remove it from the right hash. Each change is one
//! small Lua script, atomic on the server; no TTL (rules are state, not quotes).

use std::time::Duration;

use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Envelope, Kinds, ResourceUse, Shape, Sink, SinkError, Stage, StageConfig,
    StageError,
};
use redis::aio::ConnectionManager;
use serde::Deserialize;

use crate::backends::redis::{RedisHandle, KIND as REDIS};
use crate::fx::{kind, FxEvent, Pair, Price};
use crate::store::{last_rule_changes, rule_json, PriceKind};
use fxflow_engine::fast_hash::FastMap;
use rust_decimal::Decimal;

/// Keeps the current quote of each pair in Redis (a hash per pair with a TTL)
/// and, when `channel` is set, publishes every update on that pub/sub channel.
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
    /// Key prefix of the rule cache: `prefix + pair` holds the rules of a pair,
    /// `prefix + "index"` the pair of each rule id.
    #[serde(default = "default_rules_prefix")]
    pub rules_prefix: String,
}

fn default_rules_prefix() -> String {
    "fx:rules:".into()
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
        Kinds::only(&[kind::CROSS_RATE, kind::QUOTE, kind::ALERT_RULE_CHANGE])
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
            rules_prefix: self.rules_prefix.clone(),
            last_mid: FastMap::default(),
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
    rules_prefix: String,
    /// The mid last written per pair, for the `change` field.
    last_mid: FastMap<Pair, Decimal>,
}

/// One rule change, atomically: ARGV = prefix, id, pair ("" = delete), rule JSON.
const RULE_CHANGE: &str = r#"
local prefix, id, pair, rule = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local index = prefix .. 'index'
local old = redis.call('HGET', index, id)
if old and old ~= pair then redis.call('HDEL', prefix .. old, id) end
if pair == '' then
  redis.call('HDEL', index, id)
else
  redis.call('HSET', prefix .. pair, id, rule)
  redis.call('HSET', index, id, pair)
end
return 0
"#;

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
        // Per pair: the newest price of the batch, its kind, and the mid it follows.
        let mut newest: FastMap<Pair, (Price, PriceKind, Option<Decimal>)> = FastMap::default();
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
            let kind = PriceKind::of(&envelope.event);
            match newest.get_mut(&price.pair) {
                Some(entry) if price.ts >= entry.0.ts => *entry = (price, kind, Some(entry.0.mid())),
                Some(_) => {}
                None => {
                    let previous = self.last_mid.get(&price.pair).copied();
                    newest.insert(price.pair, (price, kind, previous));
                }
            }
            if let Some(channel) = &self.channel {
                let json = serde_json::to_string(&envelope.event).map_err(SinkError::fatal)?;
                next_pipe(&mut pipes, 1);
                pipes.last_mut().expect("one pipe").publish(channel, json).ignore();
            }
        }
        let changes: Vec<&FxEvent> = batch
            .iter()
            .map(|e| &e.event)
            .filter(|e| matches!(e, FxEvent::AlertRuleChange(_)))
            .collect();
        for (id, rule) in last_rule_changes(&changes) {
            let (pair, json) = match rule {
                Some(rule) => (rule.pair.to_string(), rule_json(id, rule).map_err(SinkError::fatal)?),
                None => (String::new(), String::new()),
            };
            next_pipe(&mut pipes, 1);
            let pipe = pipes.last_mut().expect("one pipe");
            pipe.cmd("EVAL")
                .arg(RULE_CHANGE)
                .arg(0)
                .arg(&self.rules_prefix)
                .arg(id)
                .arg(pair)
                .arg(json)
                .ignore();
        }
        let mut written = Vec::with_capacity(newest.len());
        for (pair, (p, kind, previous)) in newest {
            let key = format!("{}{pair}", self.key_prefix);
            let mid = p.mid();
            let change = previous.map(|prev| (mid - prev).to_string()).unwrap_or_default();
            let fields = [
                ("bid", p.bid.to_string()),
                ("ask", p.ask.to_string()),
                ("mid", mid.to_string()),
                ("ts", p.ts.to_rfc3339()),
                ("source", p.source.to_string()),
                ("kind", kind.as_str().to_owned()),
                // Mid minus the mid this sink wrote before for the pair ("" for the first).
                ("change", change),
            ];
            next_pipe(&mut pipes, 2);
            let pipe = pipes.last_mut().expect("one pipe");
            pipe.hset_multiple(&key, &fields).ignore();
            pipe.pexpire(&key, self.ttl_ms).ignore();
            written.push((pair, mid));
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
        if result.is_ok() {
            self.last_mid.extend(written);
        }
        result
    }
}
