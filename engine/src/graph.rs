//! Renders a pipeline as a DOT or mermaid graph (`fxflow graph`).

use std::fmt::Write;

use crate::event::Event;
use crate::pipeline_file::PipelineSpec;
use crate::stage::{Shape, ERROR_OUTPUT};

fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: sources as houses, sinks as inverted houses, dead-letter edges dashed.
pub fn to_dot<E: Event>(spec: &PipelineSpec<E>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", quote(&spec.name));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [fontname=\"Helvetica\"];");
    for stage in &spec.stages {
        let shape = match stage.shape() {
            Shape::Source => "house",
            Shape::Transform => "box",
            Shape::Sink => "invhouse",
        };
        let _ = writeln!(
            out,
            "  \"{}\" [shape={shape}, label=\"{}\\n{}\"];",
            quote(&stage.name),
            quote(&stage.name),
            quote(&stage.kind)
        );
    }
    for stage in &spec.stages {
        for input in &stage.inputs {
            let style = if input.output == ERROR_OUTPUT {
                " [style=dashed, label=\"errors\"]"
            } else if stage.shape() == Shape::Source {
                " [style=dotted, label=\"watched\"]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\"{style};",
                quote(&input.stage),
                quote(&stage.name)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart, for Markdown documents.
pub fn to_mermaid<E: Event>(spec: &PipelineSpec<E>) -> String {
    let id = |name: &str| name.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let mut out = String::from("flowchart LR\n");
    for stage in &spec.stages {
        let (open, close) = match stage.shape() {
            Shape::Source => ("[/", "/]"),
            Shape::Transform => ("[", "]"),
            Shape::Sink => ("[\\", "\\]"),
        };
        let _ = writeln!(
            out,
            "  {}{open}\"{}<br/>{}\"{close}",
            id(&stage.name),
            stage.name,
            stage.kind
        );
    }
    for stage in &spec.stages {
        for input in &stage.inputs {
            let arrow = if input.output == ERROR_OUTPUT {
                "-. errors .->"
            } else if stage.shape() == Shape::Source {
                "-. watched .->"
            } else {
                "-->"
            };
            let _ = writeln!(out, "  {} {arrow} {}", id(&input.stage), id(&stage.name));
        }
    }
    out
}
