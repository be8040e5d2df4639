//! Rules read from the history store by id, each kept for a while: the
//! notifiers (`Webhook`, `Email`) find a firing's targets there — the API
//! writes every rule to the store before it reaches the `Alert` stage — with
//! one query per rule every [`KEEP`], not one per firing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fxflow_engine::SinkError;

use super::HistoryStore;
use crate::fx::AlertRule;

/// How long a rule, once read, is used without reading it again.
pub const KEEP: Duration = Duration::from_secs(30);
/// Rules kept before the cache starts over.
const MOST: usize = 100_000;

pub struct RuleCache {
    store: Arc<dyn HistoryStore>,
    /// Rule id → the rule (or none: deleted, or never stored), and when that was read.
    rules: HashMap<String, (Option<AlertRule>, Instant)>,
}

impl RuleCache {
    pub fn new(store: Arc<dyn HistoryStore>) -> Self {
        RuleCache {
            store,
            rules: HashMap::new(),
        }
    }

    /// The rule `id`, from the cache or the store; a store failure is a
    /// sink error (retryable when the store may answer later).
    pub async fn get(&mut self, id: &str) -> Result<Option<AlertRule>, SinkError> {
        if let Some((rule, at)) = self.rules.get(id) {
            if at.elapsed() < KEEP {
                return Ok(rule.clone());
            }
        }
        let stored = self.store.rule(id).await.map_err(|e| {
            let message = format!("reading rule {id}: {e}");
            if e.retryable {
                SinkError::retryable(message)
            } else {
                SinkError::fatal(message)
            }
        })?;
        let rule = stored.map(|s| s.rule);
        if self.rules.len() > MOST {
            self.rules.clear();
        }
        self.rules.insert(id.to_owned(), (rule.clone(), Instant::now()));
        Ok(rule)
    }
}
