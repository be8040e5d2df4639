//! The stage and resource registry: kind names → config types.
//!
//! The application registers each stage kind once (`registry.stage::<FilterConfig>("Filter")`);
//! the registry erases the config types so the engine can parse, check, build
//! and document any pipeline without knowing them. A crate that adds stages
//! (see `examples/`) takes the standard registry and registers more.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::event::{Event, Kinds};
use crate::ron::de::{DeError, NodeDeserializer};
use crate::ron::value::Node;
use crate::stage::{Shape, Stage, StageError};

/// A problem with a stage's or resource's settings found without any I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The field at fault (its position is reported), or `None` for the stage as a whole.
    pub field: Option<&'static str>,
    pub message: String,
    pub hint: Option<String>,
}

impl ConfigProblem {
    pub fn field(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A socket address a stage binds, so two stages never claim one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    pub field: &'static str,
    pub address: String,
}

/// A named resource a stage uses, checked to exist (and be of the right kind) before start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceUse {
    pub field: &'static str,
    pub name: String,
    /// The kinds that serve (usually one; a stage that reads through an
    /// interface several kinds implement lists them all).
    pub kinds: Vec<&'static str>,
}

impl ResourceUse {
    /// The resource named `name`, of kind `kind`, set in the stage's `field`.
    pub fn new(field: &'static str, name: &str, kind: &'static str) -> Self {
        ResourceUse {
            field,
            name: name.to_owned(),
            kinds: vec![kind],
        }
    }

    /// The resource named `name`, of any of `kinds`.
    pub fn one_of(field: &'static str, name: &str, kinds: &'static [&'static str]) -> Self {
        ResourceUse {
            field,
            name: name.to_owned(),
            kinds: kinds.to_vec(),
        }
    }

    /// `Postgres`, or `Postgres or Sqlite`.
    pub fn kinds_text(&self) -> String {
        match self.kinds.as_slice() {
            [] => "resource".to_owned(),
            [one] => (*one).to_owned(),
            [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        }
    }
}

/// A stage kind's settings, as parsed from the pipeline file.
#[async_trait]
pub trait StageConfig<E: Event>: Send + Sync + fmt::Debug + 'static {
    fn shape(&self) -> Shape;

    /// Event kinds the stage takes (ignored for sources).
    fn accepts(&self) -> Kinds {
        Kinds::Any
    }

    /// Event kinds on the default output (ignored for sinks): everything the
    /// stage may ever emit.
    fn emits(&self) -> Kinds {
        Kinds::none()
    }

    /// Event kinds on the default output given what its inputs deliver. A stage
    /// whose output depends on its input (a validator passing kinds through)
    /// narrows [`StageConfig::emits`] here, so edges downstream are checked
    /// against what can really arrive.
    fn emits_given(&self, _inputs: &Kinds) -> Kinds {
        self.emits()
    }

    /// Semantic checks that need no I/O (ranges, combinations of fields).
    fn check(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }

    /// A source whose backlog must be read *and processed* before the
    /// pipeline's other sources start (a changelog the rest depends on, such
    /// as alert rules). It reports that through [`crate::Startup::caught_up`].
    fn bootstrap(&self) -> bool {
        false
    }

    /// A source that also *watches* other stages' outputs (`inputs` on a
    /// source): a server showing what flows, which may also emit events of
    /// its own that feed those same stages (rule changes into the stage whose
    /// firings it shows). What it emits does not depend on what it watches,
    /// so edges into it are not part of the flow: validation allows them, the
    /// cycle check skips them, and kinds still get checked against
    /// [`StageConfig::accepts`]. Such a source must keep reading its input
    /// ([`crate::SourceContext::input`]) until it ends, also after shutdown,
    /// or the stages it watches could not drain.
    fn watches_inputs(&self) -> bool {
        false
    }

    fn listen_addresses(&self) -> Vec<ListenAddress> {
        Vec::new()
    }

    fn resources(&self) -> Vec<ResourceUse> {
        Vec::new()
    }

    /// This stage as it runs in a pipeline test (`pipeline_test`): without the
    /// resources it would open, when it can work without them (a transform that
    /// only saves state there). `None`: it runs as configured.
    fn offline(&self) -> Option<Box<dyn StageConfig<E>>> {
        None
    }

    /// Build the runtime stage. This is where I/O may happen (open files, connect).
    async fn build(&self, cx: &BuildContext) -> Result<Stage<E>, StageError>;
}

/// A shared resource's settings (a connection pool, a cache).
#[async_trait]
pub trait ResourceConfig: Send + Sync + fmt::Debug + 'static {
    fn check(&self) -> Vec<ConfigProblem> {
        Vec::new()
    }

    /// Open the resource. Stages fetch it with [`Resources::get`].
    async fn build(&self) -> Result<Arc<dyn Any + Send + Sync>, StageError>;

    /// Bring the resource's schema up to date (`fxflow migrate`). Returns `false`
    /// for kinds that have nothing to migrate.
    async fn migrate(&self) -> Result<bool, StageError> {
        Ok(false)
    }

    /// What [`migrate`](Self::migrate) would still do, without doing it
    /// (`fxflow migrate --check`, `fxflow topics check`): `None` for kinds with
    /// nothing to migrate, else the pending steps, named (empty: up to date).
    async fn pending(&self) -> Result<Option<Vec<String>>, StageError> {
        Ok(None)
    }
}

/// Resources opened for one pipeline, by name.
#[derive(Clone, Default)]
pub struct Resources(BTreeMap<String, Arc<dyn Any + Send + Sync>>);

impl Resources {
    pub fn insert(&mut self, name: String, resource: Arc<dyn Any + Send + Sync>) {
        self.0.insert(name, resource);
    }

    pub(crate) fn get_any(&self, name: &str) -> Option<Arc<dyn Any + Send + Sync>> {
        self.0.get(name).cloned()
    }

    pub fn get<T: Send + Sync + 'static>(&self, name: &str) -> Result<Arc<T>, StageError> {
        let resource = self
            .0
            .get(name)
            .ok_or_else(|| StageError::new(format!("no resource named `{name}`")))?;
        resource
            .clone()
            .downcast::<T>()
            .map_err(|_| StageError::new(format!("resource `{name}` is not a {}", std::any::type_name::<T>())))
    }
}

/// What a stage's `build` gets.
pub struct BuildContext {
    pub pipeline: String,
    pub stage: String,
    pub resources: Resources,
    /// Where the stage reports whether its dependencies answer (`/ready`).
    pub readiness: crate::health::Readiness,
    /// Every stage of the pipeline, in file order (for stages that show what runs).
    pub stages: Arc<Vec<StageSummary>>,
    /// This build replaces a running version of the stage (a reload), which
    /// stops before this one runs: a port it listens on is still taken during
    /// `build`, so bind it when the stage starts to run instead.
    pub replaces_running: bool,
}

/// A stage of the pipeline being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSummary {
    pub name: String,
    pub kind: String,
}

type ParseStage<E> = fn(&Node, &[&str]) -> Result<Box<dyn StageConfig<E>>, DeError>;
type ParseResource = fn(&Node) -> Result<Box<dyn ResourceConfig>, DeError>;
type SchemaFn = fn() -> schemars::Schema;

struct StageEntry<E> {
    parse: ParseStage<E>,
    schema: SchemaFn,
    /// The config type's path (`my_crate::sinks::kafka::KafkaConfig`): where the kind's code is.
    type_path: &'static str,
}

struct ResourceEntry {
    parse: ParseResource,
    schema: SchemaFn,
}

/// All stage and resource kinds an application knows.
pub struct Registry<E> {
    stages: BTreeMap<&'static str, StageEntry<E>>,
    resources: BTreeMap<&'static str, ResourceEntry>,
    command: &'static str,
    /// Crate name → its source folder, to name each kind's file in the reference.
    source_roots: Vec<(&'static str, &'static str)>,
}

impl<E> Default for Registry<E> {
    fn default() -> Self {
        Self {
            stages: BTreeMap::new(),
            resources: BTreeMap::new(),
            command: "",
            source_roots: Vec::new(),
        }
    }
}

fn parse_stage<E: Event, C: StageConfig<E> + DeserializeOwned>(
    node: &Node,
    skip: &[&str],
) -> Result<Box<dyn StageConfig<E>>, DeError> {
    let config = C::deserialize(NodeDeserializer::skipping(node, skip))?;
    Ok(Box::new(config))
}

fn parse_resource<C: ResourceConfig + DeserializeOwned>(node: &Node) -> Result<Box<dyn ResourceConfig>, DeError> {
    let config = C::deserialize(NodeDeserializer::new(node))?;
    Ok(Box::new(config))
}

impl<E: Event> Registry<E> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Name the application's command, so messages and generated docs can say what to run
    /// (`mytool docs`); the engine knows no command of its own.
    pub fn command_name(&mut self, name: &'static str) -> &mut Self {
        self.command = name;
        self
    }

    /// Say where a crate's sources are (`"my_stages"`, `"stages/src"`), so the
    /// generated reference can name the file or folder of each stage kind.
    pub fn source_root(&mut self, crate_name: &'static str, folder: &'static str) -> &mut Self {
        self.source_roots.push((crate_name, folder));
        self
    }

    /// Where a stage kind's code is: the module of its config type, as a path
    /// under its crate's source folder without the ending (`stages/src/sinks/redis`
    /// is `redis.rs` or the folder `redis/`); the module path when the crate's
    /// folder is not known.
    pub fn stage_location(&self, kind: &str) -> Option<String> {
        let path = self.stages.get(kind)?.type_path;
        let module = path.rsplit_once("::").map_or(path, |(module, _)| module);
        let (krate, rest) = module.split_once("::").unwrap_or((module, ""));
        Some(match self.source_roots.iter().find(|(name, _)| *name == krate) {
            Some((_, folder)) if rest.is_empty() => format!("{folder}/lib.rs"),
            Some((_, folder)) => format!("{folder}/{}", rest.replace("::", "/")),
            None => module.to_owned(),
        })
    }

    /// `subcommand` as the user types it: `mytool docs`, or just `docs` when unnamed.
    pub fn command(&self, subcommand: &str) -> String {
        if self.command.is_empty() {
            subcommand.to_owned()
        } else {
            format!("{} {subcommand}", self.command)
        }
    }

    /// Register a stage kind under the name pipeline files use (`Filter`).
    pub fn stage<C>(&mut self, kind: &'static str) -> &mut Self
    where
        C: StageConfig<E> + DeserializeOwned + schemars::JsonSchema,
    {
        self.stages.insert(
            kind,
            StageEntry {
                parse: parse_stage::<E, C>,
                schema: || schemars::schema_for!(C),
                type_path: std::any::type_name::<C>(),
            },
        );
        self
    }

    /// Register a resource kind (`Postgres`).
    pub fn resource<C>(&mut self, kind: &'static str) -> &mut Self
    where
        C: ResourceConfig + DeserializeOwned + schemars::JsonSchema,
    {
        self.resources.insert(
            kind,
            ResourceEntry {
                parse: parse_resource::<C>,
                schema: || schemars::schema_for!(C),
            },
        );
        self
    }

    pub fn stage_kinds(&self) -> impl Iterator<Item = &'static str> + Clone + '_ {
        self.stages.keys().copied()
    }

    pub fn resource_kinds(&self) -> impl Iterator<Item = &'static str> + Clone + '_ {
        self.resources.keys().copied()
    }

    pub(crate) fn parse_stage(
        &self,
        kind: &str,
        node: &Node,
        skip: &[&str],
    ) -> Option<Result<Box<dyn StageConfig<E>>, DeError>> {
        self.stages.get(kind).map(|entry| (entry.parse)(node, skip))
    }

    pub(crate) fn parse_resource(&self, kind: &str, node: &Node) -> Option<Result<Box<dyn ResourceConfig>, DeError>> {
        self.resources.get(kind).map(|entry| (entry.parse)(node))
    }

    /// The JSON schema of a stage kind's config (doc comments become descriptions).
    pub fn stage_schema(&self, kind: &str) -> Option<schemars::Schema> {
        self.stages.get(kind).map(|entry| (entry.schema)())
    }

    pub fn resource_schema(&self, kind: &str) -> Option<schemars::Schema> {
        self.resources.get(kind).map(|entry| (entry.schema)())
    }
}

/// The closest known name to `word`, for "did you mean" hints.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        let kinds = ["Aggregate", "Filter", "Remap", "Stdout"];
        assert_eq!(closest("Agregate", kinds), Some("Aggregate"));
        assert_eq!(closest("filter", kinds), Some("Filter"));
        assert_eq!(closest("Kafka", kinds), None);
    }
}
