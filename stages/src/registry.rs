//! Every stage kind of the FX system, by the name pipeline files use.
//! A new stage is one file plus one line here.

use fxflow_engine::{kafka, Registry};

use crate::fx::FxEvent;
use crate::{backends, sinks, sources, transforms};

/// The standard registry. Crates with stages of their own add to it (see `examples/`).
pub fn registry() -> Registry<FxEvent> {
    let mut registry = Registry::new();
    registry
        .command_name("fxflow")
        // Where each kind's code is, for the reference's kind table.
        .source_root("fxflow_stages", "stages/src")
        .source_root("fxflow_engine", "engine/src")
        // sources
        .stage::<sources::http_poll::HttpPollConfig>("HttpPoll")
        .stage::<sources::replay::ReplayConfig>("Replay")
        .stage::<sources::synthetic::SyntheticConfig>("Synthetic")
        .stage::<kafka::KafkaSourceConfig>("KafkaSource")
        .stage::<sources::api::ApiConfig>("Api")
        // transforms
        .stage::<transforms::enrich::EnrichConfig>("Enrich")
        .stage::<transforms::cross_rate::CrossRateConfig>("CrossRate")
        .stage::<transforms::alert::AlertConfig>("Alert")
        .stage::<transforms::latest_rates::LatestRatesConfig>("LatestRates")
        .stage::<transforms::candles::CandlesConfig>("Candles")
        .stage::<transforms::volatility::VolatilityConfig>("Volatility")
        // sinks
        .stage::<sinks::stdout::StdoutConfig>("Stdout")
        .stage::<sinks::jsonl_file::JsonlFileConfig>("JsonlFile")
        .stage::<sinks::null::NullConfig>("Null")
        .stage::<kafka::KafkaSinkConfig>("KafkaSink")
        .stage::<sinks::elasticsearch::ElasticsearchConfig>("Elasticsearch")
        .stage::<sinks::postgres::PostgresConfig>("Postgres")
        .stage::<sinks::redis::RedisConfig>("Redis")
        .stage::<sinks::sqlite::SqliteConfig>("Sqlite")
        .stage::<sinks::webhook::WebhookConfig>("Webhook")
        .stage::<sinks::email::EmailConfig>("Email")
        // resources
        .resource::<backends::elasticsearch::ElasticsearchResourceConfig>(backends::elasticsearch::KIND)
        .resource::<kafka::KafkaResourceConfig>(kafka::RESOURCE_KIND)
        .resource::<backends::postgres::PostgresResourceConfig>(backends::postgres::KIND)
        .resource::<backends::redis::RedisResourceConfig>(backends::redis::KIND)
        .resource::<backends::sqlite::SqliteResourceConfig>(backends::sqlite::KIND);
    registry
}
