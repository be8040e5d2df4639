//! Checks of the graph as a whole: every edge's shape and kinds, and cycles.

use std::collections::{BTreeMap, HashMap};

use super::{Checker, StageSpec};
use crate::event::{Event, Kinds, DEAD_LETTER_KIND};
use crate::ron::value::Span;
use crate::stage::{Shape, ERROR_OUTPUT};

impl Checker<'_> {
    /// Edge checks (shape, kinds) and cycles.
    pub(super) fn graph<E: Event>(&mut self, stages: &[StageSpec<E>], input_spans: &BTreeMap<String, Vec<Span>>) {
        let by_name: HashMap<&str, &StageSpec<E>> = stages.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut resolved = HashMap::new();
        for stage in stages {
            let spans = input_spans.get(&stage.name).map(Vec::as_slice).unwrap_or(&[]);
            let accepts = stage.config.accepts();
            for (input, span) in stage.inputs.iter().zip(spans) {
                // A stage whose own config failed to parse is already reported.
                let Some(upstream) = by_name.get(input.stage.as_str()) else {
                    continue;
                };
                let emitted = if input.output == ERROR_OUTPUT {
                    Kinds::only(&[DEAD_LETTER_KIND])
                } else if upstream.shape() == Shape::Sink {
                    self.report(
                        *span,
                        format!("`{}` is a sink and has no output", input.stage),
                        Some(format!("a sink's failures are available as \"{}.errors\"", input.stage)),
                    );
                    continue;
                } else {
                    output_kinds(upstream, &by_name, &mut resolved, &mut Vec::new())
                };
                match emitted.not_accepted_by(&accepts) {
                    Some(rejected) if rejected.is_empty() => {}
                    rejected => {
                        let what = match rejected {
                            Some(kinds) => kinds.join(", "),
                            None => "any kind".to_owned(),
                        };
                        self.report(
                            *span,
                            format!(
                                "kind mismatch: `{input}` emits {emitted}, but `{}` ({}) accepts only {accepts}",
                                stage.name, stage.kind
                            ),
                            Some(format!(
                                "{what} cannot flow into `{}`; connect it to a stage that emits {accepts}",
                                stage.name
                            )),
                        );
                    }
                }
            }
        }
        // Cycles: depth-first search; report each cycle once, at the input entry that closes it.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let index: HashMap<&str, usize> = stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        let mut marks = vec![Mark::New; stages.len()];
        fn visit<E: Event>(
            i: usize,
            stages: &[StageSpec<E>],
            index: &HashMap<&str, usize>,
            marks: &mut Vec<Mark>,
            path: &mut Vec<usize>,
            found: &mut Vec<(usize, usize, Vec<usize>)>,
        ) {
            marks[i] = Mark::Active;
            path.push(i);
            // A source's inputs are watched, not part of the flow (`StageConfig::watches_inputs`).
            let flow_inputs = if stages[i].shape() == Shape::Source {
                &[][..]
            } else {
                &stages[i].inputs[..]
            };
            for (n, input) in flow_inputs.iter().enumerate() {
                let Some(&j) = index.get(input.stage.as_str()) else {
                    continue;
                };
                match marks[j] {
                    Mark::Active => {
                        let start = path.iter().position(|&p| p == j).unwrap_or(0);
                        found.push((i, n, path[start..].to_vec()));
                    }
                    Mark::New => visit(j, stages, index, marks, path, found),
                    Mark::Done => {}
                }
            }
            path.pop();
            marks[i] = Mark::Done;
        }
        let mut found = Vec::new();
        for i in 0..stages.len() {
            if marks[i] == Mark::New {
                visit(i, stages, &index, &mut marks, &mut Vec::new(), &mut found);
            }
        }
        for (stage, input, cycle) in found {
            let mut names: Vec<&str> = cycle.iter().rev().map(|&i| stages[i].name.as_str()).collect();
            names.push(names[0]);
            let span = input_spans
                .get(&stages[stage].name)
                .and_then(|s| s.get(input))
                .copied()
                .unwrap_or_default();
            self.report(
                span,
                format!("cycle: {}", names.join(" → ")),
                Some("events must flow one way; remove one of these inputs".into()),
            );
        }
    }
}

/// What a stage's default output can carry, given what its inputs deliver
/// (resolved upstream first; a cycle, reported elsewhere, falls back to the declared kinds).
fn output_kinds<'a, E: Event>(
    stage: &'a StageSpec<E>,
    by_name: &HashMap<&str, &'a StageSpec<E>>,
    resolved: &mut HashMap<&'a str, Kinds>,
    visiting: &mut Vec<&'a str>,
) -> Kinds {
    if let Some(kinds) = resolved.get(stage.name.as_str()) {
        return kinds.clone();
    }
    if stage.shape() == Shape::Source || visiting.contains(&stage.name.as_str()) {
        return stage.config.emits();
    }
    visiting.push(&stage.name);
    let mut arriving = Kinds::none();
    for input in &stage.inputs {
        let kinds = match by_name.get(input.stage.as_str()) {
            _ if input.output == ERROR_OUTPUT => Kinds::only(&[DEAD_LETTER_KIND]),
            Some(upstream) => output_kinds(upstream, by_name, resolved, visiting),
            None => Kinds::Any,
        };
        arriving = arriving.union(&kinds);
    }
    visiting.pop();
    let kinds = stage.config.emits_given(&arriving);
    resolved.insert(&stage.name, kinds.clone());
    kinds
}
