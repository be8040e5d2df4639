//! `Elasticsearch` resource: a client of the ES 8 REST API (official `elasticsearch` crate).

use std::any::Any;
use std::sync::Arc;

use elasticsearch::auth::Credentials;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;
use fxflow_engine::{async_trait, ConfigProblem, ResourceConfig, StageError};
use serde::Deserialize;

/// An Elasticsearch cluster, e.g. `Elasticsearch(url: "http://127.0.0.1:9200", auth: Basic(user: "elastic", password: "${ES_PASSWORD}"))`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchResourceConfig {
    /// Base URL of one node (or a load balancer).
    pub url: String,
    /// Credentials, if the cluster wants them.
    #[serde(default)]
    pub auth: Option<EsAuth>,
}

/// How to authenticate.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
pub enum EsAuth {
    /// HTTP basic authentication.
    Basic { user: String, password: String },
    /// An API key (the base64 `id:key` value Elasticsearch hands out).
    ApiKey(String),
}

impl std::fmt::Debug for EsAuth {
    /// Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EsAuth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            EsAuth::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

/// The resource kind name in pipeline files.
pub const KIND: &str = "Elasticsearch";

impl ElasticsearchResourceConfig {
    pub fn client(&self) -> Result<Elasticsearch, StageError> {
        let url = elasticsearch::http::Url::parse(&self.url)
            .map_err(|e| StageError::new(format!("bad URL {}: {e}", self.url)))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url)).disable_proxy();
        match &self.auth {
            Some(EsAuth::Basic { user, password }) => {
                builder = builder.auth(Credentials::Basic(user.clone(), password.clone()))
            }
            Some(EsAuth::ApiKey(key)) => builder = builder.auth(Credentials::EncodedApiKey(key.clone())),
            None => {}
        }
        let transport = builder.build().map_err(StageError::new)?;
        Ok(Elasticsearch::new(transport))
    }
}

#[async_trait]
impl ResourceConfig for ElasticsearchResourceConfig {
    fn check(&self) -> Vec<ConfigProblem> {
        match elasticsearch::http::Url::parse(&self.url) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() => vec![
                ConfigProblem::field("url", format!("`{}` is not an http(s) URL with a host", self.url))
                    .with_hint("http://127.0.0.1:9200 (the scheme is required)"),
            ],
            Ok(_) => Vec::new(),
            Err(e) => vec![ConfigProblem::field("url", format!("not a URL: {e}")).with_hint("http://127.0.0.1:9200")],
        }
    }

    /// The client connects lazily; the sink's template install on start is the first request.
    async fn build(&self) -> Result<Arc<dyn Any + Send + Sync>, StageError> {
        Ok(Arc::new(self.client()?))
    }
}
