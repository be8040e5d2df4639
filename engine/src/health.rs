//! Readiness: has every pipeline started, and can each stage reach what it
//! depends on (a broker, a database)? Served on `/ready`.
//!
//! Components *push* their state ([`ReadyReporter::set`]) when it changes —
//! a consumer on rebalance, a sink when its store stops answering — instead
//! of being probed per request, so `/ready` costs a lock and never waits on
//! a dependency. The process is ready when it has started and every
//! registered component is ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// The readiness of the process and its components.
#[derive(Clone, Default)]
pub struct Readiness(Arc<Inner>);

#[derive(Default)]
struct Inner {
    started: AtomicBool,
    components: Mutex<BTreeMap<String, ComponentState>>,
}

/// One component's state as last reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComponentState {
    pub ready: bool,
    /// What the component sees, for people (`"assigned 4 partitions of events"`).
    pub detail: String,
}

/// What `/ready` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadyReport {
    pub ready: bool,
    pub started: bool,
    pub components: BTreeMap<String, ComponentState>,
}

impl Readiness {
    /// Mark the process as started (every pipeline running) or stopping.
    pub fn set(&self, started: bool) {
        self.0.started.store(started, Ordering::Release);
    }

    /// Started, and every component ready.
    pub fn is_ready(&self) -> bool {
        self.0.started.load(Ordering::Acquire) && self.lock().values().all(|c| c.ready)
    }

    /// Register a component under `name` (not ready until it says so). Names
    /// are per process, so say whose it is (`"alerts/rates: kafka"`: pipeline,
    /// stage, what); registering a name again replaces its state.
    pub fn component(&self, name: impl Into<String>, detail: impl Into<String>) -> ReadyReporter {
        let name = name.into();
        self.lock().insert(
            name.clone(),
            ComponentState {
                ready: false,
                detail: detail.into(),
            },
        );
        ReadyReporter {
            readiness: self.clone(),
            name,
        }
    }

    pub fn report(&self) -> ReadyReport {
        let components = self.lock().clone();
        let started = self.0.started.load(Ordering::Acquire);
        ReadyReport {
            ready: started && components.values().all(|c| c.ready),
            started,
            components,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ComponentState>> {
        // A panic while holding this lock leaves plain data behind; keep serving it.
        self.0.components.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where one component reports its state. Dropping it removes the component
/// (a stopped stage no longer holds the process back).
pub struct ReadyReporter {
    readiness: Readiness,
    name: String,
}

impl ReadyReporter {
    pub fn set(&self, ready: bool, detail: impl Into<String>) {
        let detail = detail.into();
        let mut components = self.readiness.lock();
        let state = components.entry(self.name.clone()).or_insert(ComponentState {
            ready,
            detail: String::new(),
        });
        if state.ready != ready {
            tracing::info!(component = %self.name, ready, detail = %detail, "Readiness changed.");
        }
        state.ready = ready;
        state.detail = detail;
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ReadyReporter {
    fn drop(&mut self) {
        self.readiness.lock().remove(&self.name);
    }
}

impl std::fmt::Debug for ReadyReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyReporter").field("name", &self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_started_and_every_component_is() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready());
        readiness.set(true);
        assert!(readiness.is_ready());
        let broker = readiness.component("kafka", "connecting");
        assert!(!readiness.is_ready(), "a new component starts not ready");
        broker.set(true, "assigned 8 partitions");
        assert!(readiness.is_ready());
        let report = readiness.report();
        assert_eq!(report.components["kafka"].detail, "assigned 8 partitions");
        broker.set(false, "rebalancing");
        assert!(!readiness.is_ready());
        drop(broker);
        assert!(readiness.is_ready(), "a dropped component no longer counts");
    }
}
