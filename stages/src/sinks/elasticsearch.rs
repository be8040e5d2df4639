//! `Elasticsearch`: rates, alert firings, candles and volatility indexed for Kibana.
//!
//! On start the stage installs index templates (pair/source keywords, `ts`
//! date, prices as `double`, alert, candle and volatility fields). Each batch
//! goes out as `_bulk` requests bounded by event count and bytes; every
//! document's `_id` is its natural key (pair|ts|source, rule|ts|source,
//! pair|interval|start|source, pair|window|ts|source), so a redelivered batch
//! — or a later emission of the same candle — overwrites instead of duplicating. The bulk response is read item by item:
//! an item refused with 429 or 5xx is retried, any other refusal (a mapping
//! conflict) goes to the error output with Elasticsearch's reason; nothing is
//! acknowledged before its own item succeeded. Prices are written as JSON
//! numbers with their exact decimal digits (never via a float on our side).

use std::fmt::Write;

use elasticsearch::indices::IndicesPutIndexTemplateParts;
use elasticsearch::{BulkParts, Elasticsearch};
use fxflow_engine::{
    async_trait, BuildContext, ConfigProblem, Envelope, ItemError, Kinds, ResourceUse, Shape, Sink, SinkError, Stage,
    StageConfig, StageError,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backends::elasticsearch::KIND as ELASTICSEARCH;
use crate::fx::{kind, FxEvent};

/// Indexes quotes and cross rates into `index`, alert firings into
/// `alerts_index`, candles into `candles_index` and volatility readings into
/// `volatility_index`, with idempotent document ids and index templates
/// installed on start.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Name of an `Elasticsearch` resource.
    pub resource: String,
    /// Index of quotes and cross rates.
    #[serde(default = "default_index")]
    pub index: String,
    /// Index of alert firings.
    #[serde(default = "default_alerts_index")]
    pub alerts_index: String,
    /// Index of candles (one document per bar, replaced by later emissions of it).
    #[serde(default = "default_candles_index")]
    pub candles_index: String,
    /// Index of volatility readings.
    #[serde(default = "default_volatility_index")]
    pub volatility_index: String,
    /// Install the index templates on start.
    #[serde(default = "yes")]
    pub install_templates: bool,
    /// Most events in one `_bulk` request.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes in one `_bulk` request.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_index() -> String {
    "fx-rates".into()
}
fn default_alerts_index() -> String {
    "fx-alerts".into()
}
fn default_candles_index() -> String {
    "fx-candles".into()
}
fn default_volatility_index() -> String {
    "fx-volatility".into()
}

/// The indices one sink writes, by what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indices {
    pub rates: String,
    pub alerts: String,
    pub candles: String,
    pub volatility: String,
}

impl Default for Indices {
    fn default() -> Self {
        Indices {
            rates: default_index(),
            alerts: default_alerts_index(),
            candles: default_candles_index(),
            volatility: default_volatility_index(),
        }
    }
}

impl ElasticsearchConfig {
    pub fn indices(&self) -> Indices {
        Indices {
            rates: self.index.clone(),
            alerts: self.alerts_index.clone(),
            candles: self.candles_index.clone(),
            volatility: self.volatility_index.clone(),
        }
    }
}
fn yes() -> bool {
    true
}
fn default_max_events() -> usize {
    2000
}
fn default_max_bytes() -> usize {
    5 * 1024 * 1024
}

#[async_trait]
impl StageConfig<FxEvent> for ElasticsearchConfig {
    fn shape(&self) -> Shape {
        Shape::Sink
    }

    fn accepts(&self) -> Kinds {
        Kinds::only(kind::HISTORY)
    }

    fn resources(&self) -> Vec<ResourceUse> {
        vec![ResourceUse::new("resource", &self.resource, ELASTICSEARCH)]
    }

    fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.max_events == 0 {
            problems.push(ConfigProblem::field("max_events", "must be at least 1"));
        }
        if self.max_bytes < 1024 {
            problems.push(ConfigProblem::field("max_bytes", "must be at least 1024"));
        }
        let fields = [
            ("index", &self.index),
            ("alerts_index", &self.alerts_index),
            ("candles_index", &self.candles_index),
            ("volatility_index", &self.volatility_index),
        ];
        for (i, (field, index)) in fields.iter().enumerate() {
            if let Some((other, _)) = fields[..i].iter().find(|(_, earlier)| earlier == index) {
                problems.push(ConfigProblem::field(field, format!("must differ from `{other}`")));
            }
        }
        for (field, index) in fields {
            if index.is_empty()
                || index
                    .chars()
                    .any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?".contains(c))
            {
                problems.push(ConfigProblem::field(
                    field,
                    format!("`{index}` is not a valid index name (lowercase, no spaces or \\/*?\"<>|,)"),
                ));
            }
        }
        problems
    }

    async fn build(&self, cx: &BuildContext) -> Result<Stage<FxEvent>, StageError> {
        let client = cx.resources.get::<Elasticsearch>(&self.resource)?;
        let sink = ElasticsearchSink {
            client: (*client).clone(),
            indices: self.indices(),
            max_events: self.max_events,
            max_bytes: self.max_bytes,
        };
        if self.install_templates {
            sink.install_templates().await?;
        }
        Ok(Stage::Sink(Box::new(sink)))
    }
}

/// The index templates the sink installs, by template name: the one place that
/// says which fields exist and how they are mapped (Kibana's dashboards are
/// checked against it: `fxflow index-templates`). One template per index,
/// matching that exact name (wildcards would let `fx-rates*` also claim
/// `fx-rates-alerts`, which Elasticsearch refuses at equal priority).
pub fn index_templates(indices: &Indices) -> Vec<(String, serde_json::Value)> {
    let rates = json!({
        "index_patterns": [indices.rates],
        "template": { "mappings": { "properties": {
            "pair": { "type": "keyword" }, "base": { "type": "keyword" }, "quote": { "type": "keyword" },
            "source": { "type": "keyword" }, "kind": { "type": "keyword" }, "ts": { "type": "date" },
            "bid": { "type": "double" }, "ask": { "type": "double" }, "mid": { "type": "double" }
        }}}
    });
    let alerts = json!({
        "index_patterns": [indices.alerts],
        "template": { "mappings": { "properties": {
            "rule_id": { "type": "keyword" }, "pair": { "type": "keyword" }, "condition": { "type": "keyword" },
            "source": { "type": "keyword" }, "fired_at": { "type": "date" },
            "value": { "type": "double" }, "previous": { "type": "double" }
        }}}
    });
    let ohlc = |prefix: &str| {
        ["open", "high", "low", "close"]
            .map(|f| (format!("{prefix}{f}"), json!({ "type": "double" })))
            .into_iter()
    };
    let mut candle_fields: serde_json::Map<String, Value> = serde_json::Map::new();
    for (field, kind) in [
        ("pair", "keyword"),
        ("source", "keyword"),
        ("interval", "keyword"),
        ("start", "date"),
        ("end", "date"),
        ("ticks", "long"),
        ("closed", "boolean"),
    ] {
        candle_fields.insert(field.to_owned(), json!({ "type": kind }));
    }
    candle_fields.extend(ohlc("").chain(ohlc("bid_")).chain(ohlc("ask_")));
    let candles = json!({
        "index_patterns": [indices.candles],
        "template": { "mappings": { "properties": candle_fields }}
    });
    let volatility = json!({
        "index_patterns": [indices.volatility],
        "template": { "mappings": { "properties": {
            "pair": { "type": "keyword" }, "source": { "type": "keyword" }, "window": { "type": "keyword" },
            "ts": { "type": "date" }, "volatility": { "type": "double" }, "samples": { "type": "long" }
        }}}
    });
    vec![
        (format!("fxflow-{}", indices.rates), rates),
        (format!("fxflow-{}", indices.alerts), alerts),
        (format!("fxflow-{}", indices.candles), candles),
        (format!("fxflow-{}", indices.volatility), volatility),
    ]
}

pub struct ElasticsearchSink {
    client: Elasticsearch,
    indices: Indices,
    max_events: usize,
    max_bytes: usize,
}

impl ElasticsearchSink {
    /// Install [`index_templates`].
    async fn install_templates(&self) -> Result<(), StageError> {
        for (name, body) in index_templates(&self.indices) {
            let response = self
                .client
                .indices()
                .put_index_template(IndicesPutIndexTemplateParts::Name(&name))
                .body(body)
                .send()
                .await
                .map_err(|e| StageError::new(format!("cannot install index template {name}: {e}")))?;
            if !response.status_code().is_success() {
                let status = response.status_code();
                let text = response.text().await.unwrap_or_default();
                return Err(StageError::new(format!(
                    "index template {name} refused ({status}): {text}"
                )));
            }
        }
        Ok(())
    }

    fn lines(&self, event: &FxEvent) -> Option<(String, String)> {
        lines(&self.indices, event)
    }
}

/// The bulk action and document lines of `event` as `config` would send them.
pub fn document_lines(config: &ElasticsearchConfig, event: &FxEvent) -> Option<(String, String)> {
    lines(&config.indices(), event)
}

fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

fn action(index: &str, id: &str) -> String {
    format!(r#"{{"index":{{"_index":{},"_id":{}}}}}"#, quoted(index), quoted(id))
}

/// The bulk action and document lines of one event (exact decimal digits as JSON numbers).
fn lines(indices: &Indices, event: &FxEvent) -> Option<(String, String)> {
    let (index, alerts_index) = (&indices.rates, &indices.alerts);
    if let Some(p) = event.price() {
        let ts = p.ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let id = format!("{}|{ts}|{}", p.pair, p.source);
        let kind = if matches!(event, FxEvent::Quote(_)) {
            "quote"
        } else {
            "cross"
        };
        let action = action(index, &id);
        let mut doc = String::with_capacity(200);
        let _ = write!(
            doc,
            r#"{{"pair":{},"base":"{}","quote":"{}","source":{},"kind":"{kind}","ts":"{ts}","bid":{},"ask":{},"mid":{}}}"#,
            quoted(&p.pair.to_string()),
            p.pair.base,
            p.pair.quote,
            quoted(p.source.as_str()),
            p.bid,
            p.ask,
            p.mid()
        );
        return Some((action, doc));
    }
    match event {
        FxEvent::Candle(c) => return Some(candle_lines(&indices.candles, c)),
        FxEvent::Volatility(v) => return Some(volatility_lines(&indices.volatility, v)),
        _ => {}
    }
    let FxEvent::AlertFired(a) = event else { return None };
    let ts = a.ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let id = format!("{}|{ts}|{}", a.rule_id, a.source);
    let action = action(alerts_index, &id);
    let previous = a.previous.map_or_else(|| "null".to_owned(), |p| p.to_string());
    let doc = format!(
        r#"{{"rule_id":{},"pair":{},"condition":{},"source":{},"fired_at":"{ts}","value":{},"previous":{previous}}}"#,
        quoted(&a.rule_id),
        quoted(&a.pair.to_string()),
        quoted(&a.condition),
        quoted(a.source.as_str()),
        a.value
    );
    Some((action, doc))
}

fn candle_lines(index: &str, c: &crate::fx::Candle) -> (String, String) {
    let start = c.start.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let end = c.end().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let interval = c.interval_name();
    let id = format!("{}|{interval}|{start}|{}", c.pair, c.source);
    let mut doc = format!(
        r#"{{"pair":{},"source":{},"interval":"{interval}","start":"{start}","end":"{end}","open":{},"high":{},"low":{},"close":{},"ticks":{},"closed":{}"#,
        quoted(&c.pair.to_string()),
        quoted(c.source.as_str()),
        c.mid.open,
        c.mid.high,
        c.mid.low,
        c.mid.close,
        c.ticks,
        c.closed
    );
    for (prefix, side) in [("bid_", c.bid), ("ask_", c.ask)] {
        if let Some(b) = side {
            let _ = write!(
                doc,
                r#","{prefix}open":{},"{prefix}high":{},"{prefix}low":{},"{prefix}close":{}"#,
                b.open, b.high, b.low, b.close
            );
        }
    }
    doc.push('}');
    (action(index, &id), doc)
}

fn volatility_lines(index: &str, v: &crate::fx::Volatility) -> (String, String) {
    let ts = v.ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let window = v.window_name();
    let id = format!("{}|{window}|{ts}|{}", v.pair, v.source);
    // A non-finite statistic is not JSON: written as null.
    let volatility = if v.volatility.is_finite() {
        v.volatility.to_string()
    } else {
        "null".to_owned()
    };
    let doc = format!(
        r#"{{"pair":{},"source":{},"window":"{window}","ts":"{ts}","volatility":{volatility},"samples":{}}}"#,
        quoted(&v.pair.to_string()),
        quoted(v.source.as_str()),
        v.samples
    );
    (action(index, &id), doc)
}

impl ElasticsearchSink {
    /// Send one `_bulk` request; return the failed items as (position in `indexes`, error).
    async fn bulk(&self, body: Vec<String>, indexes: &[usize]) -> Result<Vec<ItemError>, SinkError> {
        let response = self
            .client
            .bulk(BulkParts::None)
            .body(body)
            .send()
            .await
            .map_err(SinkError::retryable)?;
        let status = response.status_code();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(SinkError::retryable(format!("bulk request refused: {status}")));
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(SinkError::fatal(format!("bulk request refused ({status}): {text}")));
        }
        let reply: Value = response.json().await.map_err(SinkError::retryable)?;
        let mut failed = Vec::new();
        if reply["errors"].as_bool() == Some(true) {
            let items = reply["items"].as_array().cloned().unwrap_or_default();
            for (position, item) in items.iter().enumerate() {
                let result = item
                    .as_object()
                    .and_then(|o| o.values().next())
                    .cloned()
                    .unwrap_or(Value::Null);
                let code = result["status"].as_u64().unwrap_or(0);
                if (200..300).contains(&code) {
                    continue;
                }
                let reason = result["error"]["reason"].as_str().unwrap_or("unknown error");
                let kind = result["error"]["type"].as_str().unwrap_or("error");
                failed.push(ItemError {
                    index: indexes[position],
                    message: format!("{kind} ({code}): {reason}"),
                    retryable: code == 429 || code >= 500,
                });
            }
        }
        Ok(failed)
    }
}

#[async_trait]
impl Sink<FxEvent> for ElasticsearchSink {
    async fn write(&mut self, batch: &[Envelope<FxEvent>]) -> Result<(), SinkError> {
        let mut failed = Vec::new();
        let mut body = Vec::new();
        let mut indexes = Vec::new();
        let mut bytes = 0;
        for (i, envelope) in batch.iter().enumerate() {
            let Some((action, doc)) = self.lines(&envelope.event) else {
                continue;
            };
            if !indexes.is_empty()
                && (indexes.len() >= self.max_events || bytes + action.len() + doc.len() > self.max_bytes)
            {
                failed.extend(
                    self.bulk(std::mem::take(&mut body), &std::mem::take(&mut indexes))
                        .await?,
                );
                bytes = 0;
            }
            bytes += action.len() + doc.len() + 2;
            body.push(action);
            body.push(doc);
            indexes.push(i);
        }
        if !indexes.is_empty() {
            failed.extend(self.bulk(body, &indexes).await?);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(SinkError::items(
                format!("{} of {} documents refused", failed.len(), batch.len()),
                failed,
            ))
        }
    }
}
