//! What a reload changes: the difference between the running pipeline and a
//! new version of its file (applied by [`crate::RunningPipeline::reload`]).
//!
//! A stage is compared by its fingerprint — its text in canonical form after
//! `${VAR}`s ([`crate::pipeline_file::StageSpec::fingerprint`]), so whitespace and
//! comments do not count — joined with the fingerprints of the resources it
//! uses: a stage whose resource changed is rebuilt on the new one. Its
//! `inputs` are part of its text, so a stage that reads from somewhere else
//! is a changed stage; a stage whose *consumers* changed is not (its output
//! is rewired while it runs).

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::event::Event;
use crate::pipeline_file::PipelineSpec;

/// What happens to one stage of the new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Unchanged and running: it keeps running, with its state.
    Keep,
    /// Changed: the running version finishes what it holds and hands over to the new one.
    Replace,
    /// New (or it had ended): started afresh.
    Add,
}

/// The difference between what runs and a new spec.
#[derive(Debug)]
pub struct Plan {
    changes: HashMap<String, (Change, String)>,
    /// In the new spec's order.
    order: Vec<String>,
    removed: Vec<String>,
    resources_changed: BTreeSet<String>,
}

impl Plan {
    /// `running`: each running stage's name, fingerprint and whether it has
    /// ended; `resources`: each open resource's name and fingerprint.
    pub fn new<E: Event>(spec: &PipelineSpec<E>, running: &[(&str, &str, bool)], resources: &[(&str, &str)]) -> Self {
        let open: HashMap<&str, &str> = resources.iter().copied().collect();
        let resources_changed: BTreeSet<String> = spec
            .resources
            .iter()
            .filter(|r| open.get(r.name.as_str()) != Some(&r.fingerprint.as_str()))
            .map(|r| r.name.clone())
            .chain(
                open.keys()
                    .filter(|name| !spec.resources.iter().any(|r| r.name == **name))
                    .map(|name| name.to_string()),
            )
            .collect();
        let resource_prints: HashMap<&str, &str> = spec
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r.fingerprint.as_str()))
            .collect();
        let running_by_name: HashMap<&str, (&str, bool)> = running.iter().map(|(n, f, e)| (*n, (*f, *e))).collect();
        let mut changes = HashMap::new();
        let mut order = Vec::new();
        for stage in &spec.stages {
            let mut fingerprint = format!("{}={}", stage.kind, stage.fingerprint);
            let mut used: Vec<String> = stage.config.resources().into_iter().map(|u| u.name).collect();
            used.sort();
            for name in used {
                let print = resource_prints.get(name.as_str()).copied().unwrap_or_default();
                fingerprint.push_str(&format!(";{name}={print}"));
            }
            let change = match running_by_name.get(stage.name.as_str()) {
                Some((old, _)) if *old == fingerprint => Change::Keep,
                Some((_, false)) => Change::Replace,
                Some((_, true)) | None => Change::Add,
            };
            order.push(stage.name.clone());
            changes.insert(stage.name.clone(), (change, fingerprint));
        }
        let removed = running
            .iter()
            .filter(|(name, _, _)| !changes.contains_key(*name))
            .map(|(name, _, _)| name.to_string())
            .collect();
        Plan {
            changes,
            order,
            removed,
            resources_changed,
        }
    }

    /// What happens to a stage of the new spec (`Add` for a name it does not have).
    pub fn change(&self, stage: &str) -> Change {
        self.changes.get(stage).map_or(Change::Add, |(change, _)| *change)
    }

    /// The fingerprint a stage of the new spec runs under.
    pub fn fingerprint(&self, stage: &str) -> &str {
        self.changes.get(stage).map_or("", |(_, print)| print)
    }

    pub fn resource_changed(&self, resource: &str) -> bool {
        self.resources_changed.contains(resource)
    }

    /// Nothing to do: the new version is the running one.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty()
            && self.resources_changed.is_empty()
            && self.changes.values().all(|(change, _)| *change == Change::Keep)
    }

    pub fn report(&self) -> ReloadReport {
        let named = |wanted: Change| {
            self.order
                .iter()
                .filter(|name| self.change(name) == wanted)
                .cloned()
                .collect()
        };
        ReloadReport {
            kept: named(Change::Keep),
            replaced: named(Change::Replace),
            added: named(Change::Add),
            removed: self.removed.clone(),
            resources: self.resources_changed.iter().cloned().collect(),
        }
    }
}

/// What a reload did, by stage name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub kept: Vec<String>,
    pub replaced: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Resources opened anew (changed, added) or closed (removed).
    pub resources: Vec<String>,
}

impl ReloadReport {
    pub fn is_empty(&self) -> bool {
        self.replaced.is_empty() && self.added.is_empty() && self.removed.is_empty() && self.resources.is_empty()
    }
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing changed ({} stages)", self.kept.len());
        }
        let mut parts = Vec::new();
        for (what, names) in [
            ("replaced", &self.replaced),
            ("added", &self.added),
            ("removed", &self.removed),
            ("resources reopened", &self.resources),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        }
        parts.push(format!("{} kept running", self.kept.len()));
        f.write_str(&parts.join("; "))
    }
}
