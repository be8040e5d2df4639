//! The fields every stage takes besides its kind's own: one struct, from which
//! their parsing, defaults, hints and the table in the generated reference
//! all come (like Vector's `TransformOuter`). A field every stage shares is
//! one field here: its doc comment is its description, its `Default` its
//! default, `x-shapes` the shapes that take it, `x-example` the hint shown
//! when it is malformed; a rule serde cannot express goes in [`StageFields::check`].

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{Checker, InputRef};
use crate::channel::BufferConfig;
use crate::registry::closest;
use crate::ron::de;
use crate::ron::value::{Name, Node, Span, Value};
use crate::stage::{BatchConfig, RetryConfig, Shape, DEFAULT_OUTPUT, ERROR_OUTPUT};

/// The engine's fields of a stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageFields {
    /// Upstream stages: `"name"` for a stage's events, `"name.errors"` for its dead letters. A
    /// transform or sink needs at least one; a watching source lists what it watches.
    #[serde(default)]
    #[schemars(extend("x-shapes" = ["transform", "sink"], "x-required" = true, "x-example" = "inputs: [\"upstream-stage\"]"))]
    pub inputs: Vec<String>,
    /// Events that may wait in front of the stage (for a source: of what it watches).
    /// `when_full`: `block` (backpressure) or `drop_newest` (drop and count).
    #[serde(default)]
    #[schemars(extend("x-shapes" = ["transform", "sink", "source"], "x-example" = "buffer: (capacity: 4096, when_full: block) — when_full is block or drop_newest"))]
    pub buffer: BufferConfig,
    /// Retries of a failed write, with doubling backoff, before the events go to the error
    /// output (or are marked failed).
    #[serde(default)]
    #[schemars(extend("x-shapes" = ["sink"], "x-example" = "retry: (attempts: 5, initial_backoff: \"100ms\", max_backoff: \"10s\")"))]
    pub retry: RetryConfig,
    /// Size of one write: what is waiting, up to `max_events`; with `max_wait` above zero, waits
    /// up to that long for a full batch first (fewer, larger writes for that much latency). A
    /// sink that pipelines (`KafkaSink`) keeps up to `max_in_flight` writes on the wire.
    #[serde(default)]
    #[schemars(extend("x-shapes" = ["sink"], "x-example" = "batch: (max_events: 5000, max_wait: \"100ms\")"))]
    pub batch: BatchConfig,
}

/// One field's metadata, read from the struct's schema.
#[derive(Debug)]
pub struct FieldInfo {
    pub name: String,
    pub shapes: Vec<String>,
    pub required: bool,
    pub example: Option<String>,
    pub description: String,
    /// The default, as RON.
    pub default: String,
}

impl StageFields {
    /// Every field: the required ones first, then by name.
    pub fn fields() -> &'static [FieldInfo] {
        static FIELDS: OnceLock<Vec<FieldInfo>> = OnceLock::new();
        FIELDS.get_or_init(|| {
            let schema = schemars::schema_for!(StageFields);
            let schema = schema.as_value();
            let defaults = serde_json::to_value(StageFields::default()).expect("defaults serialize");
            let text = |v: &Json| v.as_str().map(str::to_owned);
            let mut fields = schema["properties"]
                .as_object()
                .expect("a struct schema has properties")
                .iter()
                .map(|(name, field)| FieldInfo {
                    name: name.clone(),
                    shapes: field["x-shapes"]
                        .as_array()
                        .map(|s| s.iter().filter_map(text).collect())
                        .unwrap_or_default(),
                    required: field["x-required"].as_bool().unwrap_or(false),
                    example: text(&field["x-example"]),
                    description: text(&field["description"]).unwrap_or_default(),
                    default: ron_text(&defaults[name.as_str()], field, schema),
                })
                .collect::<Vec<_>>();
            fields.sort_by_key(|f| !f.required); // stable: the schema lists them by name
            fields
        })
    }

    /// The names a stage kind's own config must not claim.
    pub fn names() -> &'static [&'static str] {
        static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
        NAMES.get_or_init(|| Self::fields().iter().map(|f| f.name.as_str()).collect())
    }

    fn field(name: &str) -> Option<&'static FieldInfo> {
        Self::fields().iter().find(|f| f.name == name)
    }

    /// Rules serde cannot express: (field, problem).
    pub fn check(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        if self.buffer.capacity == 0 {
            problems.push(("buffer", "buffer capacity must be at least 1"));
        }
        if self.batch.max_events == 0 {
            problems.push(("batch", "batch max_events must be at least 1"));
        }
        if self.batch.max_in_flight == 0 {
            problems.push(("batch", "batch max_in_flight must be at least 1"));
        }
        problems.extend(self.retry.problems());
        problems
    }
}

/// A default value written as RON: structs as `(field: value)`, enum
/// variants bare, durations and other strings quoted.
fn ron_text(value: &Json, schema: &Json, root: &Json) -> String {
    let schema = resolve(schema, root);
    match value {
        Json::Object(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .map(|(k, v)| {
                    let field = &schema["properties"][k.as_str()];
                    format!("{k}: {}", ron_text(v, field, root))
                })
                .collect();
            format!("({})", inner.join(", "))
        }
        Json::Array(items) => {
            let inner: Vec<String> = items.iter().map(|v| ron_text(v, &schema["items"], root)).collect();
            format!("[{}]", inner.join(", "))
        }
        Json::String(s) if schema.get("enum").is_some() || schema.get("oneOf").is_some() => s.clone(),
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn resolve<'a>(schema: &'a Json, root: &'a Json) -> &'a Json {
    match schema.get("$ref").and_then(Json::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            &root["$defs"][name]
        }
        None => schema,
    }
}

impl Checker<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn inputs(
        &mut self,
        name: &str,
        value: &Node,
        shape: Shape,
        watches: bool,
        kind_span: Span,
        inputs_key: Option<Span>,
        declared: &[&str],
        input_spans: &mut BTreeMap<String, Vec<Span>>,
    ) -> Vec<InputRef> {
        let watches = shape == Shape::Source && watches;
        let Some((_, list)) = value.field("inputs") else {
            if shape != Shape::Source {
                self.report(
                    kind_span,
                    format!("`{name}` is a {shape} and needs `inputs`"),
                    Some("inputs: [\"upstream-stage\"]".into()),
                );
            }
            return Vec::new();
        };
        if shape == Shape::Source && !watches {
            self.report(
                inputs_key.unwrap_or(list.span),
                format!("`{name}` is a source and takes no `inputs`"),
                Some("remove the `inputs` field".into()),
            );
            return Vec::new();
        }
        let Value::List(items) = &list.value else {
            self.report(
                list.span,
                format!(
                    "`inputs` must be a list of stage names, found {}",
                    list.value.describe()
                ),
                Some("inputs: [\"upstream-stage\"]".into()),
            );
            return Vec::new();
        };
        if items.is_empty() && !watches {
            self.report(
                list.span,
                format!("`{name}` has no inputs"),
                Some("name at least one upstream stage".into()),
            );
        }
        let mut refs = Vec::new();
        let mut spans = Vec::new();
        for item in items {
            let Some(text) = item.as_str() else {
                self.report(
                    item.span,
                    format!("inputs are stage names in quotes, found {}", item.value.describe()),
                    None,
                );
                continue;
            };
            let (stage, output) = match text.rsplit_once('.') {
                Some((stage, output)) => (stage, output),
                None => (text, DEFAULT_OUTPUT),
            };
            let output = match output {
                DEFAULT_OUTPUT => DEFAULT_OUTPUT,
                ERROR_OUTPUT => ERROR_OUTPUT,
                other => {
                    self.report(
                        item.span,
                        format!("`{stage}` has no output `{other}`"),
                        Some(format!(
                            "use \"{stage}\" for its events or \"{stage}.errors\" for its dead letters"
                        )),
                    );
                    continue;
                }
            };
            if !declared.contains(&stage) {
                let hint = match closest(stage, declared.iter().copied()) {
                    Some(near) => format!("did you mean \"{near}\"?"),
                    None => format!("declared stages: {}", declared.join(", ")),
                };
                self.report(item.span, format!("unknown input `{stage}`"), Some(hint));
                continue;
            }
            let (line, column) = self.line_col(item.span);
            let input = InputRef {
                stage: stage.to_owned(),
                output,
                line,
                column,
            };
            if refs.contains(&input) {
                self.report(
                    item.span,
                    format!("`{text}` is listed twice"),
                    Some("each input once is enough".into()),
                );
                continue;
            }
            refs.push(input);
            spans.push(item.span);
        }
        input_spans.insert(name.to_owned(), spans);
        refs
    }

    /// The engine's fields of one stage: each repeated, misplaced or malformed
    /// one reported (with its example as the hint) and replaced by its default.
    /// `inputs` is checked entry by entry in [`Checker::inputs`].
    pub(super) fn stage_fields(&mut self, name: &str, value: &Node, shape: Shape, kind_span: Span) -> StageFields {
        let Value::Struct { fields, .. } = &value.value else {
            return StageFields::default();
        };
        let mut good: Vec<(Name, Node)> = Vec::new();
        for (key, node) in fields {
            let Some(info) = StageFields::field(&key.text) else {
                continue; // the kind's own
            };
            if let Some((first, _)) = good.iter().find(|(k, _)| k.text == key.text) {
                let (line, col) = self.line_col(first.span);
                self.report(
                    key.span,
                    format!("`{}` is set twice", key.text),
                    Some(format!("first set at line {line}, column {col}")),
                );
                continue;
            }
            if info.name == "inputs" {
                good.push((key.clone(), node.clone()));
                continue;
            }
            if !info.shapes.iter().any(|s| *s == shape.to_string()) {
                self.report(
                    key.span,
                    format!(
                        "`{}` applies to {}s; `{name}` is a {shape}",
                        key.text,
                        info.shapes.join("s and ")
                    ),
                    Some("remove it".into()),
                );
            }
            let one = Node {
                value: Value::Struct {
                    name: None,
                    fields: vec![(key.clone(), node.clone())],
                },
                span: node.span,
            };
            match de::from_node::<StageFields>(&one) {
                Ok(_) => good.push((key.clone(), node.clone())),
                Err(e) => self.report(e.span.unwrap_or(node.span), e.message, info.example.clone()),
            }
        }
        let parsed = de::from_node::<StageFields>(&Node {
            value: Value::Struct {
                name: None,
                fields: good.into_iter().filter(|(k, _)| k.text != "inputs").collect(),
            },
            span: value.span,
        })
        .unwrap_or_default();
        for (field, problem) in parsed.check() {
            let span = value.field(field).map_or(kind_span, |(_, v)| v.span);
            self.report(span, problem, None);
        }
        parsed
    }
}

/// The reference table of these fields (PIPELINES.md).
pub fn reference_table() -> String {
    let mut out = String::from("| field | applies to | default | description |\n|---|---|---|---|\n");
    for field in StageFields::fields() {
        let default = if field.required {
            "required".to_owned()
        } else {
            format!("`{}`", field.default)
        };
        let shapes: Vec<String> = field.shapes.iter().map(|s| format!("{s}s")).collect();
        let description = field.description.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!(
            "| `{}` | {} | {default} | {description} |\n",
            field.name,
            shapes.join(", ")
        ));
    }
    out
}
