//! Pipeline files: parsing, interpolation and validation.
//!
//! Loading is pure — it reads the file and the environment and nothing else —
//! so `fxflow validate` never connects to anything (Vector's rule: validate is
//! pure, build does I/O). Every problem found is collected, each with its
//! position in the user's file and a hint, before loading fails.

//!
//! Files: [`diagnostics`] (how a problem is reported), [`interpolate`]
//! (`${VAR}`), `stage_fields` (the fields every stage shares), `graph_checks`
//! (edges and cycles); this file reads the pipeline, its resources and stages.

pub mod diagnostics;
mod graph_checks;
pub mod interpolate;
mod stage_fields;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use crate::channel::BufferConfig;
use crate::event::Event;
use crate::registry::{closest, Registry, ResourceConfig, StageConfig};
use crate::ron::de;
use crate::ron::value::{self, Node, Span, Value};
use crate::stage::{BatchConfig, RetryConfig, Shape, DEFAULT_OUTPUT};
use diagnostics::address_conflict;
pub use diagnostics::{Diagnostic, Diagnostics};
pub use stage_fields::{reference_table as stage_fields_table, FieldInfo, StageFields};

/// Where a stage reads from: `stage` (its default output) or `stage.errors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRef {
    pub stage: String,
    pub output: &'static str,
    /// Line and column of the entry in `inputs`.
    pub line: usize,
    pub column: usize,
}

impl InputRef {
    /// An input made in code, not read from a file (no line or column).
    pub fn new(stage: &str, output: &'static str) -> Self {
        InputRef {
            stage: stage.to_owned(),
            output,
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.output == DEFAULT_OUTPUT {
            f.write_str(&self.stage)
        } else {
            write!(f, "{}.{}", self.stage, self.output)
        }
    }
}

/// A stage as declared: the engine's fields plus the kind's own config.
#[derive(Debug)]
pub struct StageSpec<E> {
    pub name: String,
    pub kind: String,
    pub inputs: Vec<InputRef>,
    pub buffer: BufferConfig,
    pub retry: RetryConfig,
    pub batch: BatchConfig,
    pub config: Box<dyn StageConfig<E>>,
    /// The stage as written, in canonical form (after `${VAR}`s): a reload
    /// replaces a running stage only when this (or a resource it uses) changed.
    pub fingerprint: String,
}

impl<E: Event> StageSpec<E> {
    /// A stage made in code (a test double, a replay's feed): the engine's defaults
    /// for buffer, retry and batch.
    pub fn new(name: &str, kind: &str, inputs: Vec<InputRef>, config: Box<dyn StageConfig<E>>) -> Self {
        StageSpec {
            name: name.to_owned(),
            kind: kind.to_owned(),
            inputs,
            buffer: Default::default(),
            retry: Default::default(),
            batch: Default::default(),
            config,
            fingerprint: String::new(),
        }
    }

    pub fn shape(&self) -> Shape {
        self.config.shape()
    }
}

#[derive(Debug)]
pub struct ResourceSpec {
    pub name: String,
    pub kind: String,
    pub config: Box<dyn ResourceConfig>,
    /// See [`StageSpec::fingerprint`].
    pub fingerprint: String,
}

/// The worker's HTTP endpoint for `/metrics`, `/health` and `/ready`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `host:port` to listen on.
    pub address: String,
}

/// A bound address and where it was declared, for cross-file conflict checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundAddress {
    pub address: String,
    pub owner: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl BoundAddress {
    /// Whether two listeners would fight over one socket. Port 0 asks the
    /// system for any free port, so it never clashes, not even with another 0.
    fn clashes_with(&self, other: &BoundAddress) -> bool {
        self.address == other.address && !self.address.ends_with(":0")
    }
}

/// A validated pipeline file.
#[derive(Debug)]
pub struct PipelineSpec<E> {
    pub name: String,
    pub file: String,
    pub telemetry: Option<TelemetryConfig>,
    pub resources: Vec<ResourceSpec>,
    /// In file order.
    pub stages: Vec<StageSpec<E>>,
    pub addresses: Vec<BoundAddress>,
}

impl<E: Event> PipelineSpec<E> {
    pub fn stage(&self, name: &str) -> Option<&StageSpec<E>> {
        self.stages.iter().find(|s| s.name == name)
    }
}

const TOP_LEVEL_FIELDS: &[&str] = &["name", "telemetry", "resources", "stages", "tests"];

/// Read and validate a pipeline file, with `${VAR}` taken from the process environment.
pub fn load_file<E: Event>(path: &Path, registry: &Registry<E>) -> Result<PipelineSpec<E>, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics::unreadable(
            &file,
            &e,
            Some("check the path; pipeline files usually live in pipelines/"),
        )
    })?;
    load_str(&file, &text, registry, |name| std::env::var(name).ok())
}

/// Validate pipeline text. `env` supplies `${VAR}` values.
pub fn load_str<E: Event>(
    file: &str,
    text: &str,
    registry: &Registry<E>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PipelineSpec<E>, Diagnostics> {
    let interpolated = interpolate::interpolate(text, env);
    let mut cx = Checker {
        file,
        original: text,
        map: &interpolated.map,
        problems: Vec::new(),
    };
    for missing in &interpolated.missing {
        cx.report_original(
            missing.span,
            format!("environment variable `{}` is not set", missing.name),
            Some(format!("set it, or give a default: ${{{}:-value}}", missing.name)),
        );
    }
    for bad in &interpolated.malformed {
        cx.report_original(
            bad.span,
            bad.message.clone(),
            Some("write variables as ${NAME} or ${NAME:-default}".into()),
        );
    }
    let root = match value::parse(&interpolated.text) {
        Ok(root) => root,
        Err(e) => {
            cx.report(e.span, e.message, e.hint);
            return Err(cx.finish());
        }
    };
    let spec = cx.pipeline(&root, registry);
    let problems = cx.finish();
    match spec {
        Some(spec) if problems.0.is_empty() => Ok(spec),
        _ => Err(problems),
    }
}

/// Checks across several files run in one process: no two bind one address.
pub fn check_together<E: Event>(specs: &[PipelineSpec<E>]) -> Diagnostics {
    let mut seen: HashMap<&str, &BoundAddress> = HashMap::new();
    let mut problems = Vec::new();
    for spec in specs {
        for bound in &spec.addresses {
            if let Some(first) = seen
                .get(bound.address.as_str())
                .filter(|first| bound.clashes_with(first))
            {
                if first.file != bound.file {
                    problems.push(address_conflict(bound, first));
                }
            } else {
                seen.insert(&bound.address, bound);
            }
        }
    }
    Diagnostics(problems)
}

struct Checker<'a> {
    file: &'a str,
    original: &'a str,
    map: &'a interpolate::SourceMap,
    problems: Vec<(usize, Diagnostic)>,
}

impl Checker<'_> {
    fn finish(mut self) -> Diagnostics {
        self.problems.sort_by_key(|(offset, _)| *offset);
        Diagnostics(self.problems.into_iter().map(|(_, d)| d).collect())
    }

    fn position(&self, original_offset: usize) -> (usize, usize) {
        let offset = original_offset.min(self.original.len());
        let mut offset = offset;
        while !self.original.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.original[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    fn report_original(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        let (line, column) = self.position(span.start);
        let diagnostic = Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
            hint,
        };
        if !self.problems.iter().any(|(_, d)| *d == diagnostic) {
            self.problems.push((span.start, diagnostic));
        }
    }

    /// Report at a span of the interpolated text.
    fn report(&mut self, span: Span, message: impl Into<String>, hint: Option<String>) {
        let original = self.map.original_span(span);
        self.report_original(original, message, hint);
    }

    fn line_col(&self, span: Span) -> (usize, usize) {
        self.position(self.map.original_offset(span.start))
    }

    fn pipeline<E: Event>(&mut self, root: &Node, registry: &Registry<E>) -> Option<PipelineSpec<E>> {
        let Value::Struct { fields, .. } = &root.value else {
            self.report(
                root.span,
                format!("a pipeline file holds `Pipeline(...)`, found {}", root.value.describe()),
                Some("a pipeline file is `Pipeline(name: \"...\", stages: { ... })`".into()),
            );
            return None;
        };
        let mut seen = HashMap::new();
        for (field, _) in fields {
            if let Some(first) = seen.insert(field.text.as_str(), field.span) {
                let (line, col) = self.line_col(first);
                self.report(
                    field.span,
                    format!("`{}` is set twice", field.text),
                    Some(format!("first set at line {line}, column {col}")),
                );
            }
            if !TOP_LEVEL_FIELDS.contains(&field.text.as_str()) {
                let hint = match closest(&field.text, TOP_LEVEL_FIELDS.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`? A pipeline has {}", TOP_LEVEL_FIELDS.join(", ")),
                    None => format!("a pipeline has {}", TOP_LEVEL_FIELDS.join(", ")),
                };
                self.report(field.span, format!("unknown field `{}`", field.text), Some(hint));
            }
        }
        let name = match root.field("name") {
            Some((_, node)) => match node.as_str() {
                Some(name) if !name.is_empty() => name.to_owned(),
                _ => {
                    self.report(
                        node.span,
                        "`name` must be a non-empty string",
                        Some("name: \"local\"".into()),
                    );
                    String::new()
                }
            },
            None => {
                self.report(
                    Span::new(root.span.start, root.span.start + 1),
                    "the pipeline has no `name`",
                    Some("add name: \"my-pipeline\"".into()),
                );
                String::new()
            }
        };
        let mut addresses = Vec::new();
        let telemetry = root
            .field("telemetry")
            .and_then(|(_, node)| match de::from_node::<TelemetryConfig>(node) {
                Ok(t) => {
                    let (line, column) = self.line_col(node.field("address").map_or(node.span, |(_, v)| v.span));
                    addresses.push(BoundAddress {
                        address: t.address.clone(),
                        owner: format!("the telemetry server of `{name}`"),
                        file: self.file.to_owned(),
                        line,
                        column,
                    });
                    Some(t)
                }
                Err(e) => {
                    self.report(
                        e.span.unwrap_or(node.span),
                        e.message,
                        Some("telemetry: (address: \"127.0.0.1:9598\")".into()),
                    );
                    None
                }
            });
        let resources = match root.field("resources") {
            Some((_, node)) => self.resources(node, registry),
            None => Vec::new(),
        };
        let resource_kinds: HashMap<&str, &str> =
            resources.iter().map(|r| (r.name.as_str(), r.kind.as_str())).collect();
        let stages = match root.field("stages") {
            Some((_, node)) => self.stages(node, registry, &resource_kinds, &mut addresses),
            None => {
                self.report(
                    Span::new(root.span.start, root.span.start + 1),
                    "the pipeline has no `stages`",
                    Some("add stages: { ... }".into()),
                );
                Vec::new()
            }
        };
        let stages: Vec<StageSpec<E>> = stages;
        let resources: Vec<ResourceSpec> = resources;
        Some(PipelineSpec {
            name,
            file: self.file.to_owned(),
            telemetry,
            resources,
            stages,
            addresses,
        })
    }

    /// Entries of a `{ "name": Kind(...) }` map, with duplicate and malformed keys reported.
    fn named_entries<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(String, Span, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            self.report(
                node.span,
                format!("`{what}` must be a map, found {}", node.value.describe()),
                Some(format!("{what}: {{ \"name\": Kind(...), ... }}")),
            );
            return Vec::new();
        };
        let mut seen: HashMap<&str, Span> = HashMap::new();
        let mut out = Vec::new();
        for (key, value) in entries {
            let Some(name) = key.as_str() else {
                self.report(
                    key.span,
                    format!("{what} names are strings, found {}", key.value.describe()),
                    Some("write the name in double quotes".into()),
                );
                continue;
            };
            if let Some(first) = seen.get(name) {
                let (line, col) = self.line_col(*first);
                self.report(
                    key.span,
                    format!("duplicate name `{name}`"),
                    Some(format!(
                        "`{name}` is first defined at line {line}, column {col}; names must be unique"
                    )),
                );
                continue;
            }
            if name.is_empty() || name.contains(['.', ' ']) {
                self.report(
                    key.span,
                    format!("`{name}` is not a valid name"),
                    Some("use letters, digits, `-` and `_`; `.` separates a stage from its output".into()),
                );
                continue;
            }
            seen.insert(name, key.span);
            out.push((name.to_owned(), key.span, value));
        }
        out
    }

    /// The kind name of `Kind(...)` or `Kind`.
    fn kind_of<'n>(&mut self, node: &'n Node, what: &str) -> Option<(&'n str, Span)> {
        match &node.value {
            Value::Struct { name: Some(kind), .. } | Value::Tuple { name: Some(kind), .. } => {
                Some((&kind.text, kind.span))
            }
            Value::Ident(kind) => Some((kind, node.span)),
            other => {
                self.report(
                    node.span,
                    format!("expected a {what} kind such as `Kind(...)`, found {}", other.describe()),
                    None,
                );
                None
            }
        }
    }

    fn unknown_kind<'k>(&mut self, kind: &str, span: Span, what: &str, known: impl Iterator<Item = &'k str> + Clone) {
        let list: Vec<&str> = known.clone().collect();
        let hint = match closest(kind, known) {
            Some(near) => format!("did you mean `{near}`? Known {what} kinds: {}", list.join(", ")),
            None => format!("known {what} kinds: {}", list.join(", ")),
        };
        self.report(span, format!("unknown {what} kind `{kind}`"), Some(hint));
    }

    fn resources<E: Event>(&mut self, node: &Node, registry: &Registry<E>) -> Vec<ResourceSpec> {
        let mut out = Vec::new();
        for (name, _, value) in self.named_entries(node, "resources") {
            let Some((kind, kind_span)) = self.kind_of(value, "resource") else {
                continue;
            };
            match registry.parse_resource(kind, value) {
                None => self.unknown_kind(kind, kind_span, "resource", registry.resource_kinds()),
                Some(Err(e)) => self.report(e.span.unwrap_or(value.span), e.message, None),
                Some(Ok(config)) => {
                    for problem in config.check() {
                        let span = problem
                            .field
                            .and_then(|f| value.field(f))
                            .map_or(kind_span, |(k, _)| k.span);
                        self.report(span, problem.message, problem.hint);
                    }
                    out.push(ResourceSpec {
                        name,
                        kind: kind.to_owned(),
                        config,
                        fingerprint: value.canonical(),
                    });
                }
            }
        }
        out
    }

    fn stages<E: Event>(
        &mut self,
        node: &Node,
        registry: &Registry<E>,
        resource_kinds: &HashMap<&str, &str>,
        addresses: &mut Vec<BoundAddress>,
    ) -> Vec<StageSpec<E>> {
        let entries = self.named_entries(node, "stages");
        // Names of every declared stage, even ones whose config is broken, so a
        // broken stage does not also show up as an "unknown input" elsewhere.
        let declared: Vec<&str> = entries.iter().map(|(name, _, _)| name.as_str()).collect();
        let mut stages = Vec::new();
        let mut input_spans: BTreeMap<String, Vec<Span>> = BTreeMap::new();
        for (name, _, value) in &entries {
            let Some((kind, kind_span)) = self.kind_of(value, "stage") else {
                continue;
            };
            let config = match registry.parse_stage(kind, value, StageFields::names()) {
                None => {
                    self.unknown_kind(kind, kind_span, "stage", registry.stage_kinds());
                    continue;
                }
                Some(Err(e)) => {
                    let hint = stage_hint(&e.message, kind, &registry.command("docs"));
                    self.report(e.span.unwrap_or(value.span), e.message, hint);
                    continue;
                }
                Some(Ok(config)) => config,
            };
            let shape = config.shape();
            let field_span = |field: &str| value.field(field).map(|(k, _)| k.span);
            for problem in config.check() {
                let span = problem
                    .field
                    .and_then(|f| value.field(f))
                    .map_or(kind_span, |(_, v)| v.span);
                self.report(span, problem.message, problem.hint);
            }
            for used in config.resources() {
                let span = value.field(used.field).map_or(kind_span, |(_, v)| v.span);
                match resource_kinds.get(used.name.as_str()) {
                    None => {
                        let hint = match closest(&used.name, resource_kinds.keys().copied()) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => format!(
                                "declare it under `resources`: \"{}\": {}(...)",
                                used.name,
                                used.kinds.first().unwrap_or(&"Kind")
                            ),
                        };
                        self.report(span, format!("no resource named `{}`", used.name), Some(hint));
                    }
                    Some(kind) if !used.kinds.contains(kind) => self.report(
                        span,
                        format!(
                            "resource `{}` is a {kind}, but `{}` needs a {}",
                            used.name,
                            used.field,
                            used.kinds_text()
                        ),
                        None,
                    ),
                    Some(_) => {}
                }
            }
            for listen in config.listen_addresses() {
                let span = value.field(listen.field).map_or(kind_span, |(_, v)| v.span);
                let (line, column) = self.line_col(span);
                let owner = format!("stage `{name}`");
                let bound = BoundAddress {
                    address: listen.address,
                    owner,
                    file: self.file.to_owned(),
                    line,
                    column,
                };
                if let Some(first) = addresses.iter().find(|a| bound.clashes_with(a)) {
                    let d = address_conflict(&bound, first);
                    self.report(span, d.message, d.hint);
                } else {
                    addresses.push(bound);
                }
            }
            let StageFields {
                buffer, retry, batch, ..
            } = self.stage_fields(name, value, shape, kind_span);
            let inputs = self.inputs(
                name,
                value,
                shape,
                config.watches_inputs(),
                kind_span,
                field_span("inputs"),
                &declared,
                &mut input_spans,
            );
            stages.push(StageSpec {
                name: name.clone(),
                kind: kind.to_owned(),
                inputs,
                buffer,
                retry,
                batch,
                config,
                fingerprint: value.canonical(),
            });
        }
        self.graph(&stages, &input_spans);
        if !entries.is_empty()
            && !stages.is_empty()
            && !stages.iter().any(|s| s.shape() == Shape::Source)
            && declared.len() == stages.len()
        {
            self.report(
                node.span,
                "the pipeline has no source, so nothing will ever flow",
                Some(format!(
                    "add a source stage; `{}` lists the kinds",
                    registry.command("docs")
                )),
            );
        }
        stages
    }
}

/// The hint for a kind's config that did not parse. serde's "unknown field `x`,
/// expected ..." lists only the kind's own fields, so a misspelt shared field
/// (`inptus`) is matched against both those and [`StageFields`].
fn stage_hint(message: &str, kind: &str, docs: &str) -> Option<String> {
    let reference = format!("see the `{kind}` section of the pipeline reference for its fields (`{docs}`)");
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        // A kind's own retry settings moved into the shared `retry` field.
        if matches!(field, "retries" | "attempts" | "initial_backoff" | "max_backoff") {
            return Some(
                "did you mean `retry`? Retries are one shared field: \
                 retry: (attempts: 5, initial_backoff: \"500ms\", max_backoff: \"30s\")"
                    .to_owned(),
            );
        }
        let own = expected.split('`').skip(1).step_by(2);
        return Some(match closest(field, own.chain(StageFields::names().iter().copied())) {
            Some(near) => format!("did you mean `{near}`? Or {reference}"),
            None => reference,
        });
    }
    message.starts_with("missing field").then_some(reference)
}

#[cfg(test)]
mod tests;
