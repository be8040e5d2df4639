//! Pipeline tests written in RON: named cases that feed events in and check
//! what named stages emit, run with every source and sink swapped for a test
//! double, so nothing outside the process is touched (`<cli> test FILE...`).
//!
//! A test file sits beside its pipeline (`pipelines/tests/local.ron` for
//! `pipelines/local.ron`), or the cases sit in the pipeline's own `tests` field:
//!
//! ```ron
//! PipelineTests(
//!     pipeline: "../main.ron",           // relative to this file
//!     env: { "OUT": "/tmp" },            // ${VAR}s of the pipeline (over the process's)
//!     cases: {
//!         "a case": (
//!             replace: { "source": [ Reading(key: "a", value: 1.50) ] },  // a source's events
//!             inject: { "stage": [ Reading(key: "b", value: 2) ] },       // events into a stage
//!             expect: {
//!                 "stage": [ Count(2), Contains(Reading(key: "a", value: 1.5)) ],
//!                 "other": [ Nothing ],
//!                 "stage.errors": [ DeadLetter(reason: "invalid") ],
//!             },
//!         ),
//!     },
//! )
//! ```
//!
//! An event is written as its kind with its fields (`Reading(key: ..., value: ...)`);
//! nested values follow the event's serde shape (a nested `Name(...)` is an enum
//! variant). Expected events match on the fields they name (the others are free);
//! numbers compare as exact decimals (`1.10` = `1.1`), times as instants.

mod report;
mod run;

/// The format's reference, for the generated pipeline reference (PIPELINES.md).
pub const REFERENCE: &str = r#"## Pipeline tests (`test FILE...`)

A pipeline's tests are RON: a file `PipelineTests(pipeline: "../my.ron", env: {...}, cases: {...})`
(by convention `tests/<name>.ron` beside the pipeline, found when the pipeline is named), or a
`tests: {...}` field in the pipeline file itself. Every source is replaced by a feed of the
events the case gives (none when not given) and every sink by a capture, so a test touches no
file, database, broker or port; transforms run as configured (a transform that keeps state in a
resource keeps it in memory instead). A case passes when every check holds once the pipeline has
drained.

```ron
PipelineTests(
    pipeline: "../my.ron",                  // relative to this file
    env: { "OUT": "/tmp" },                 // the pipeline's ${VAR}s (over the process's)
    cases: {
        "a case": (
            replace: { "source": [ Reading(key: "a", value: 1.50) ] },  // a source's events
            inject:  { "stage":  [ Reading(key: "b", value: 2) ] },     // events into a stage
            expect: {
                "stage": [ Count(2), Contains(Reading(key: "a")), All(field: "value", above: 1) ],
                "stage.errors": [ DeadLetter(reason: "invalid", error: "key") ],
                "other": [ Nothing ],
            },
        ),
    },
)
```

An event is written as its kind with its fields; an expected event matches an emitted one on the
fields it names (others are free). Numbers compare as exact decimals (`1.10` equals `1.1`), times
as instants. `"stage"` checks what the stage emits, `"stage.errors"` its dead letters.

| check | passes when |
|---|---|
| `Count(n)` | exactly `n` events were emitted |
| `Nothing` | no event was emitted |
| `Contains(Event(...))` | at least one event matches |
| `Excludes(Event(...))` | no event matches |
| `Exactly([Event(...), ...])` | the events, in order, match one for one |
| `All(field: "f", equals/above/below/contains: v)` | every event's field (a dotted path) satisfies it |
| `Any(field: "f", equals/above/below/contains: v)` | at least one event's field satisfies it |
| `DeadLetter(reason: "r", error: "text")` | a dead letter with that reason (and a message containing the text) |

A failure prints `FILE:LINE:COL` of the check, the case, the stage, and the expected and actual
events. Exit codes: 0 every case passed, 1 a case failed, 2 a file is invalid (every problem with
its line and column, like `validate`). `--format junit` writes JUnit XML for CI.
"#;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use report::{junit, text};
pub use run::{run_file, CaseOutcome, Failure};

use crate::pipeline_file::{Diagnostic, Diagnostics};
use crate::ron::value::{self, Node, Span, Value};

/// A parsed test file (or a pipeline's own `tests`).
#[derive(Debug)]
pub struct TestFile {
    /// As given (for messages).
    pub file: String,
    pub pipeline: PathBuf,
    pub env: BTreeMap<String, String>,
    pub cases: Vec<Case>,
    /// The test file's text, to turn spans into lines and columns.
    text: String,
}

/// One named case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub at: Span,
    /// Sources whose events are given: (source, events).
    pub replace: Vec<(String, Span, Vec<Node>)>,
    /// Events fed into a stage's input: (stage, events).
    pub inject: Vec<(String, Span, Vec<Node>)>,
    pub expect: Vec<Expectation>,
}

/// What one output (`stage` or `stage.errors`) must have emitted.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub output: String,
    pub at: Span,
    pub checks: Vec<Check>,
}

/// One assertion, with where it was written.
#[derive(Debug, Clone)]
pub struct Check {
    pub kind: CheckKind,
    pub at: Span,
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    /// Exactly this many events.
    Count(usize),
    /// No event at all.
    Nothing,
    /// At least one event matches.
    Contains(Node),
    /// No event matches.
    Excludes(Node),
    /// The events, in order, match these one for one.
    Exactly(Vec<Node>),
    /// Every event's `field` satisfies the condition.
    All(FieldCondition),
    /// At least one event's `field` satisfies the condition.
    Any(FieldCondition),
    /// A dead letter with this reason (and, when given, a message containing `error`).
    DeadLetter { reason: String, error: Option<String> },
}

/// `(field: "key", equals: "a")`, `(field: "value", above: 1.15)`.
#[derive(Debug, Clone)]
pub struct FieldCondition {
    /// A field path: `key`, `event.key` (dots go into nested objects).
    pub field: String,
    pub op: Op,
    pub value: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equals,
    Above,
    Below,
    Contains,
}

impl TestFile {
    /// Line and column of a span in the test file.
    pub fn position(&self, span: Span) -> (usize, usize) {
        position(&self.text, span.start)
    }
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
    (line, column)
}

/// Collects every problem of a test file, like the pipeline checker does.
struct Reader<'a> {
    file: &'a str,
    text: &'a str,
    problems: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn report(&mut self, span: Span, message: impl Into<String>, hint: Option<&str>) {
        let (line, column) = position(self.text, span.start);
        self.problems.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
            hint: hint.map(str::to_owned),
        });
    }

    fn entries<'n>(&mut self, node: &'n Node, what: &str) -> Vec<(String, Span, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            self.report(node.span, format!("`{what}` is a map: {{ \"name\": ... }}"), None);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in entries {
            match key.as_str() {
                Some(name) => out.push((name.to_owned(), key.span, value)),
                None => self.report(key.span, format!("{what} names are strings in double quotes"), None),
            }
        }
        out
    }

    fn list<'n>(&mut self, node: &'n Node, what: &str) -> Vec<&'n Node> {
        match &node.value {
            Value::List(items) => items.iter().collect(),
            _ => {
                self.report(node.span, format!("{what} is a list: [ ... ]"), None);
                Vec::new()
            }
        }
    }

    fn cases(&mut self, node: &Node) -> Vec<Case> {
        let mut cases = Vec::new();
        for (name, span, case) in self.entries(node, "cases") {
            let Value::Struct { fields, .. } = &case.value else {
                self.report(case.span, "a case is `(replace: ..., inject: ..., expect: ...)`", None);
                continue;
            };
            let mut out = Case {
                name,
                at: span,
                replace: Vec::new(),
                inject: Vec::new(),
                expect: Vec::new(),
            };
            for (field, value) in fields {
                match field.text.as_str() {
                    "replace" | "inject" => {
                        let mut feeds = Vec::new();
                        for (stage, at, events) in self.entries(value, &field.text) {
                            let events = self.list(events, "the events").into_iter().cloned().collect();
                            feeds.push((stage, at, events));
                        }
                        if field.text == "replace" {
                            out.replace = feeds;
                        } else {
                            out.inject = feeds;
                        }
                    }
                    "expect" => {
                        for (output, at, checks) in self.entries(value, "expect") {
                            let checks = self
                                .list(checks, "the expectations")
                                .into_iter()
                                .filter_map(|c| self.check(c))
                                .collect();
                            out.expect.push(Expectation { output, at, checks });
                        }
                    }
                    other => self.report(
                        field.span,
                        format!("unknown field `{other}` of a case"),
                        Some("a case has replace, inject and expect"),
                    ),
                }
            }
            if out.expect.is_empty() {
                self.report(
                    span,
                    "the case expects nothing",
                    Some("add expect: { \"stage\": [Count(1)] }"),
                );
            }
            cases.push(out);
        }
        cases
    }

    fn check(&mut self, node: &Node) -> Option<Check> {
        const KNOWN: &str = "Count(n), Nothing, Contains(Event(...)), Excludes(Event(...)), Exactly([...]), \
All(field: ..., equals|above|below|contains: ...), Any(...), DeadLetter(reason: ...)";
        let at = node.span;
        let kind = match &node.value {
            Value::Ident(name) if name == "Nothing" => CheckKind::Nothing,
            Value::Tuple {
                name: Some(name),
                items,
            } if items.len() == 1 => {
                let item = &items[0];
                match name.text.as_str() {
                    "Count" => match &item.value {
                        Value::Number(n) => match n.parse() {
                            Ok(n) => CheckKind::Count(n),
                            Err(_) => {
                                self.report(item.span, "a count is a whole number", None);
                                return None;
                            }
                        },
                        _ => {
                            self.report(item.span, "a count is a whole number", None);
                            return None;
                        }
                    },
                    "Contains" => CheckKind::Contains(item.clone()),
                    "Excludes" => CheckKind::Excludes(item.clone()),
                    "Exactly" => CheckKind::Exactly(self.list(item, "Exactly's events").into_iter().cloned().collect()),
                    other => {
                        self.report(name.span, format!("unknown expectation `{other}`"), Some(KNOWN));
                        return None;
                    }
                }
            }
            Value::Struct {
                name: Some(name),
                fields,
            } => match name.text.as_str() {
                "All" | "Any" => {
                    let mut field = None;
                    let mut condition = None;
                    for (key, value) in fields {
                        let op = match key.text.as_str() {
                            "field" => {
                                field = value.as_str().map(str::to_owned);
                                if field.is_none() {
                                    self.report(value.span, "`field` is a string: \"name\" or \"nested.name\"", None);
                                }
                                continue;
                            }
                            "equals" => Op::Equals,
                            "above" => Op::Above,
                            "below" => Op::Below,
                            "contains" => Op::Contains,
                            other => {
                                self.report(
                                    key.span,
                                    format!("unknown field `{other}`"),
                                    Some("field, and one of equals, above, below, contains"),
                                );
                                return None;
                            }
                        };
                        condition = Some((op, value.clone()));
                    }
                    let (Some(field), Some((op, value))) = (field, condition) else {
                        self.report(
                            at,
                            format!("`{}` needs `field` and a condition", name.text),
                            Some(KNOWN),
                        );
                        return None;
                    };
                    let condition = FieldCondition { field, op, value };
                    if name.text == "All" {
                        CheckKind::All(condition)
                    } else {
                        CheckKind::Any(condition)
                    }
                }
                "DeadLetter" => {
                    let text = |field: &str| {
                        fields
                            .iter()
                            .find(|(k, _)| k.text == field)
                            .and_then(|(_, v)| v.as_str().map(str::to_owned))
                    };
                    let Some(reason) = text("reason") else {
                        self.report(at, "DeadLetter needs `reason`", Some("DeadLetter(reason: \"stale\")"));
                        return None;
                    };
                    CheckKind::DeadLetter {
                        reason,
                        error: text("error"),
                    }
                }
                other => {
                    self.report(name.span, format!("unknown expectation `{other}`"), Some(KNOWN));
                    return None;
                }
            },
            _ => {
                self.report(
                    at,
                    format!("not an expectation: {}", node.value.describe()),
                    Some(KNOWN),
                );
                return None;
            }
        };
        Some(Check { kind, at })
    }
}

/// Read a test file: `PipelineTests(pipeline: ..., env: ..., cases: ...)`. Every
/// problem is reported with its line and column.
pub fn load(path: &Path) -> Result<TestFile, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostics::unreadable(&file, &e, None))?;
    let mut reader = Reader {
        file: &file,
        text: &text,
        problems: Vec::new(),
    };
    let root = match value::parse(&text) {
        Ok(root) => root,
        Err(e) => {
            reader.report(e.span, e.message, e.hint.as_deref());
            return Err(Diagnostics(reader.problems));
        }
    };
    let mut pipeline = None;
    let mut env = BTreeMap::new();
    let mut cases = Vec::new();
    match &root.value {
        Value::Struct { name, fields } if name.as_ref().is_some_and(|n| n.text == "PipelineTests") => {
            for (field, value) in fields {
                match field.text.as_str() {
                    "pipeline" => match value.as_str() {
                        Some(p) => pipeline = Some(path.parent().unwrap_or(Path::new(".")).join(p)),
                        None => reader.report(value.span, "`pipeline` is the pipeline file's path", None),
                    },
                    "env" => {
                        for (name, _, v) in reader.entries(value, "env") {
                            match v.as_str().or(match &v.value {
                                Value::Number(n) => Some(n.as_str()),
                                _ => None,
                            }) {
                                Some(v) => {
                                    env.insert(name, v.to_owned());
                                }
                                None => reader.report(v.span, "an environment value is a string", None),
                            }
                        }
                    }
                    "cases" => cases = reader.cases(value),
                    other => reader.report(
                        field.span,
                        format!("unknown field `{other}`"),
                        Some("a test file has pipeline, env and cases"),
                    ),
                }
            }
            if pipeline.is_none() {
                reader.report(
                    root.span,
                    "the tests name no `pipeline`",
                    Some("pipeline: \"../local.ron\""),
                );
            }
        }
        Value::Struct { name, fields } if name.as_ref().is_some_and(|n| n.text == "Pipeline") => {
            // A pipeline with its own `tests`.
            pipeline = Some(path.to_owned());
            if let Some((_, tests)) = fields.iter().find(|(k, _)| k.text == "tests") {
                cases = reader.cases(tests);
            }
        }
        _ => reader.report(
            root.span,
            "not a test file: expected `PipelineTests(pipeline: ..., cases: ...)`",
            None,
        ),
    }
    if !reader.problems.is_empty() {
        return Err(Diagnostics(reader.problems));
    }
    Ok(TestFile {
        file,
        pipeline: pipeline.expect("checked above"),
        env,
        cases,
        text,
    })
}

/// The test files for `paths`: a test file as is; for a pipeline file, its own
/// `tests` and `tests/<name>.ron` beside it. Each file once.
pub fn discover(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        let canonical = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if !out
            .iter()
            .any(|o| std::fs::canonicalize(o).unwrap_or_else(|_| o.clone()) == canonical)
        {
            out.push(p);
        }
    };
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let head = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("//"))
            .unwrap_or_default();
        if head.starts_with("PipelineTests") {
            push(path.clone());
            continue;
        }
        if text.contains("\n    tests:") || text.contains("\ntests:") {
            push(path.clone());
        }
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            let beside = dir.join("tests").join(name);
            if beside.exists() {
                push(beside);
            }
        }
    }
    out
}

/// An event written as `Kind(field: value, ...)` as JSON for the application's
/// serde: `{"<tag>": "Kind", ...}`. Fractional numbers become strings, so an
/// exact decimal type reads every digit; whole numbers stay numbers.
pub fn event_json(node: &Node, tag: &str) -> Result<serde_json::Value, (Span, String)> {
    match &node.value {
        Value::Struct {
            name: Some(kind),
            fields,
        } => {
            let mut object = serde_json::Map::new();
            object.insert(tag.to_owned(), serde_json::Value::String(kind.text.clone()));
            for (field, value) in fields {
                object.insert(field.text.clone(), json(value)?);
            }
            Ok(serde_json::Value::Object(object))
        }
        _ => Err((
            node.span,
            format!(
                "an event is written `Kind(field: value, ...)`, found {}",
                node.value.describe()
            ),
        )),
    }
}

fn json(node: &Node) -> Result<serde_json::Value, (Span, String)> {
    use serde_json::Value as J;
    Ok(match &node.value {
        Value::Bool(b) => J::Bool(*b),
        Value::Number(text) => match text.parse::<i64>() {
            Ok(i) => J::from(i),
            Err(_) => J::String(text.clone()),
        },
        Value::String(s) => J::String(s.clone()),
        Value::Char(c) => J::String(c.to_string()),
        Value::Ident(name) if name == "None" => J::Null,
        Value::Ident(name) => J::String(name.clone()),
        Value::Unit => J::Null,
        Value::List(items) => J::Array(items.iter().map(json).collect::<Result<_, _>>()?),
        Value::Map(entries) => {
            let mut object = serde_json::Map::new();
            for (k, v) in entries {
                let key = k.as_str().ok_or((k.span, "map keys are strings".to_owned()))?;
                object.insert(key.to_owned(), json(v)?);
            }
            J::Object(object)
        }
        Value::Tuple {
            name: Some(name),
            items,
        } if name.text == "Some" && items.len() == 1 => json(&items[0])?,
        Value::Tuple {
            name: Some(name),
            items,
        } => {
            let inner = match items.as_slice() {
                [one] => json(one)?,
                many => J::Array(many.iter().map(json).collect::<Result<_, _>>()?),
            };
            J::Object([(name.text.clone(), inner)].into_iter().collect())
        }
        Value::Tuple { name: None, items } => J::Array(items.iter().map(json).collect::<Result<_, _>>()?),
        Value::Struct { name, fields } => {
            let mut object = serde_json::Map::new();
            for (field, value) in fields {
                object.insert(field.text.clone(), json(value)?);
            }
            match name {
                Some(name) => J::Object([(name.text.clone(), J::Object(object))].into_iter().collect()),
                None => J::Object(object),
            }
        }
    })
}

/// Does `actual` have what `expected` names? Objects: every expected key,
/// matching; lists: one for one; numbers as exact decimals; times as instants.
pub fn matches(expected: &serde_json::Value, actual: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value as J;
    match (expected, actual) {
        (J::Object(want), J::Object(have)) => {
            for (key, value) in want {
                match have.get(key) {
                    Some(got) => matches(value, got).map_err(|e| format!("{key}: {e}"))?,
                    None if value.is_null() => {}
                    None => return Err(format!("{key}: missing")),
                }
            }
            Ok(())
        }
        (J::Array(want), J::Array(have)) => {
            if want.len() != have.len() {
                return Err(format!("{} items, expected {}", have.len(), want.len()));
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                matches(w, h).map_err(|e| format!("[{i}]: {e}"))?;
            }
            Ok(())
        }
        _ if scalar_eq(expected, actual) => Ok(()),
        _ => Err(format!("{actual}, expected {expected}")),
    }
}

fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Null => Some("null".into()),
        _ => None,
    }
}

/// Two scalars are equal as decimals, as instants, or as text.
pub fn scalar_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let (Some(a), Some(b)) = (scalar_text(a), scalar_text(b)) else {
        return false;
    };
    if a == b {
        return true;
    }
    if let (Some(x), Some(y)) = (decimal(&a), decimal(&b)) {
        return x == y;
    }
    if let (Ok(x), Ok(y)) = (chrono_like::parse(&a).ok_or(()), chrono_like::parse(&b).ok_or(())) {
        return x == y;
    }
    false
}

/// A decimal as (sign, digits without trailing zeros, exponent): exact comparison
/// without a decimal dependency in the engine.
pub(crate) fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let text = text.trim();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let exponent = exponent - frac.len() as i64;
    let trimmed = digits.trim_end_matches('0');
    let exponent = exponent + (digits.len() - trimmed.len()) as i64;
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((negative, trimmed.to_owned(), exponent))
}

/// Compare `a` to `b` as decimals, exactly, on their digits (never through a float, which
/// would call 1.1 and 1.10000000000000000001 equal): `Some(Less | Equal | Greater)`.
pub(crate) fn decimal_cmp(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let (a, b) = (decimal(a)?, decimal(b)?);
    let sign = |(negative, digits, _): &(bool, String, i64)| match (digits.is_empty(), negative) {
        (true, _) => 0,
        (false, true) => -1,
        (false, false) => 1,
    };
    let (sa, sb) = (sign(&a), sign(&b));
    if sa != sb || sa == 0 {
        return Some(sa.cmp(&sb));
    }
    // Same sign, both non-zero: the magnitude of the leading digit first, then the digits.
    let magnitude = |(_, digits, exponent): &(bool, String, i64)| digits.len() as i64 + exponent;
    let abs = magnitude(&a).cmp(&magnitude(&b)).then_with(|| {
        let width = a.1.len().max(b.1.len());
        format!("{:0<width$}", a.1).cmp(&format!("{:0<width$}", b.1))
    });
    Some(if sa < 0 { abs.reverse() } else { abs })
}

/// RFC 3339 instants without a time crate in the engine: normalised to UTC text.
mod chrono_like {
    /// `2024-01-02T00:00:00Z`, `2024-01-02T01:00:00+01:00`, fractions: seconds since the epoch as (secs, nanos).
    pub fn parse(text: &str) -> Option<(i64, u32)> {
        let text = text.trim();
        if text.len() < 20 || text.as_bytes().get(10) != Some(&b'T') {
            return None;
        }
        let num = |s: &str| s.parse::<i64>().ok();
        let (year, month, day) = (num(&text[0..4])?, num(&text[5..7])?, num(&text[8..10])?);
        let (hour, minute, second) = (num(&text[11..13])?, num(&text[14..16])?, num(&text[17..19])?);
        let mut rest = &text[19..];
        let mut nanos = 0u32;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
            rest = &fraction[digits.len()..];
            let padded = format!("{digits:0<9}");
            nanos = padded[..9].parse().ok()?;
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ => {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let hm = &rest[1..];
                sign * (num(&hm[0..2])? * 3600 + num(&hm[3..5])? * 60)
            }
        };
        // Days from the civil date (Howard Hinnant's algorithm).
        let (y, m) = if month <= 2 {
            (year - 1, month + 9)
        } else {
            (year, month - 3)
        };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some((days * 86_400 + hour * 3600 + minute * 60 + second - offset, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(text: &str) -> Node {
        value::parse(text).unwrap()
    }

    #[test]
    fn decimals_compare_exactly() {
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("1.10000000000000000001", "1.1", Greater),
            ("1.1", "1.10", Equal),
            ("-0.5", "-0.25", Less),
            ("-1", "0", Less),
            ("0.00", "-0", Equal),
            ("99", "100", Less),
            ("1e3", "999.999999999999999999", Greater),
            ("155.68", "155.679", Greater),
        ] {
            assert_eq!(decimal_cmp(a, b), Some(want), "{a} vs {b}");
        }
        assert_eq!(decimal_cmp("x", "1"), None);
    }

    #[test]
    fn events_become_json_with_exact_numbers() {
        let json = event_json(
            &node(r#"Reading(key: "sensor-7", level: 1.0956, n: 3, via: Some("north"), t: Every(rearm: 0.5))"#),
            "kind",
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "Reading", "key": "sensor-7", "level": "1.0956", "n": 3, "via": "north", "t": {"Every": {"rearm": "0.5"}}})
        );
        assert!(event_json(&node("[1]"), "kind").is_err());
    }

    #[test]
    fn matching_names_only_the_fields_that_matter() {
        let actual =
            serde_json::json!({"key": "sensor-7", "level": "1.10000", "ts": "2024-01-02T00:00:00Z", "source": "north"});
        assert!(
            matches(&serde_json::json!({"level": "1.1"}), &actual).is_ok(),
            "decimals compare exactly"
        );
        assert!(
            matches(&serde_json::json!({"ts": "2024-01-02T01:00:00+01:00"}), &actual).is_ok(),
            "instants"
        );
        let miss = matches(&serde_json::json!({"level": "1.11", "key": "sensor-7"}), &actual).unwrap_err();
        assert!(miss.starts_with("level:"), "{miss}");
        assert!(matches(&serde_json::json!({"gone": 1}), &actual).is_err());
        assert_eq!(decimal_cmp("1.15", "1.150"), Some(std::cmp::Ordering::Equal));
        assert_eq!(decimal_cmp("1.2", "1.15"), Some(std::cmp::Ordering::Greater));
    }
}
