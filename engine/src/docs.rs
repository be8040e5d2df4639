//! The stage reference, generated from the registered config types.
//!
//! Field names, types, defaults and descriptions come from each config's JSON
//! schema (its serde attributes and doc comments), so the reference cannot
//! drift from the code (the Benthos idea: one spec drives parsing and docs).

use std::fmt::Write;

use serde_json::Value;

use crate::event::Event;
use crate::registry::Registry;

fn type_name(schema: &Value) -> String {
    if let Some(format @ ("duration" | "decimal")) = schema.get("format").and_then(Value::as_str) {
        return format.to_owned();
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return format!("`{}`", reference.rsplit('/').next().unwrap_or(reference));
    }
    if let Some(options) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        let names: Vec<String> = options
            .iter()
            .filter(|o| o.get("type").and_then(Value::as_str) != Some("null"))
            .map(type_name)
            .collect();
        return names.join(" or ");
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect(),
        _ => Vec::new(),
    };
    let Some(first) = types.first() else {
        return "value".into();
    };
    match *first {
        "array" => format!(
            "list of {}",
            schema.get("items").map(type_name).unwrap_or_else(|| "values".into())
        ),
        "object" => match schema.get("additionalProperties") {
            Some(values) if values.is_object() => format!("map of {}", type_name(values)),
            _ => "struct".into(),
        },
        "integer" => "integer".into(),
        "number" => "number".into(),
        "string" => "string".into(),
        "boolean" => "boolean".into(),
        other => other.into(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn fields_table(out: &mut String, schema: &Value) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        out.push_str("No fields of its own.\n\n");
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| field | type | default | description |\n|---|---|---|---|\n");
    for (name, field) in properties {
        let default = if required.contains(&name.as_str()) {
            "required".to_owned()
        } else {
            match field.get("default") {
                Some(Value::Null) | None => "—".to_owned(),
                Some(value) => format!("`{value}`"),
            }
        };
        let description = field
            .get("description")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        let _ = writeln!(out, "| `{name}` | {} | {default} | {description} |", type_name(field));
    }
    out.push('\n');
}

fn definitions(out: &mut String, schema: &Value) {
    let Some(defs) = schema.get("$defs").and_then(Value::as_object) else {
        return;
    };
    for (name, def) in defs {
        let _ = writeln!(
            out,
            "**`{name}`**{}\n",
            def.get("description")
                .and_then(Value::as_str)
                .map(|d| format!(" — {}", one_line(d)))
                .unwrap_or_default()
        );
        if let Some(variants) = def.get("oneOf").or_else(|| def.get("anyOf")).and_then(Value::as_array) {
            for variant in variants {
                let description = variant
                    .get("description")
                    .and_then(Value::as_str)
                    .map(|d| format!(" — {}", one_line(d)))
                    .unwrap_or_default();
                if let Some(name) = variant.get("const").and_then(Value::as_str) {
                    let _ = writeln!(out, "- `{name}`{description}");
                } else if let Some(names) = variant.get("enum").and_then(Value::as_array) {
                    for name in names.iter().filter_map(Value::as_str) {
                        let _ = writeln!(out, "- `{name}`{description}");
                    }
                } else if let Some(properties) = variant.get("properties").and_then(Value::as_object) {
                    for (tag, inner) in properties {
                        let inner_text = match inner.get("properties").and_then(Value::as_object) {
                            Some(fields) => fields.keys().map(|k| format!("{k}: …")).collect::<Vec<_>>().join(", "),
                            None => type_name(inner),
                        };
                        let _ = writeln!(out, "- `{tag}({inner_text})`{description}");
                    }
                }
            }
            out.push('\n');
        } else if let Some(values) = def.get("enum").and_then(Value::as_array) {
            let names: Vec<String> = values
                .iter()
                .filter_map(Value::as_str)
                .map(|v| format!("`{v}`"))
                .collect();
            let _ = writeln!(out, "One of {}.\n", names.join(", "));
        } else if def.get("properties").is_some() {
            fields_table(out, def);
        }
    }
}

/// One kind: heading, description, its fields, and the types they use.
fn kind_section(out: &mut String, kind: &str, schema: &Value) {
    let _ = writeln!(out, "### `{kind}`\n");
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", one_line(description));
    }
    fields_table(out, schema);
    definitions(out, schema);
}

/// Markdown reference of every stage and resource kind in `registry`.
pub fn reference<E: Event>(registry: &Registry<E>, intro: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Pipeline reference\n\n<!-- Generated by `{}` from the stage config types; do not edit by hand. -->\n",
        registry.command("docs")
    );
    let _ = writeln!(out, "{intro}\n");
    out.push_str("## Fields every stage has\n\n");
    out.push_str(&crate::pipeline_file::stage_fields_table());
    out.push('\n');
    out.push_str("Durations are text: `\"250ms\"`, `\"30s\"`, `\"5m\"`, `\"2h\"`, `\"7d\"`. Decimal numbers are read from their text, never through a float.\n\n");
    out.push_str("## Stage kinds\n\n");
    out.push_str("Where each kind's code is: a file (`.rs`) or a folder of that name.\n\n");
    out.push_str("| kind | code |\n|---|---|\n");
    for kind in registry.stage_kinds() {
        let location = registry.stage_location(kind).unwrap_or_default();
        let _ = writeln!(out, "| [`{kind}`](#{}) | `{location}` |", kind.to_lowercase());
    }
    out.push('\n');
    for kind in registry.stage_kinds() {
        if let Some(schema) = registry.stage_schema(kind) {
            kind_section(&mut out, kind, schema.as_value());
        }
    }
    let resource_kinds: Vec<_> = registry.resource_kinds().collect();
    if !resource_kinds.is_empty() {
        out.push_str("## Resource kinds\n\n");
        for kind in resource_kinds {
            if let Some(schema) = registry.resource_schema(kind) {
                kind_section(&mut out, kind, schema.as_value());
            }
        }
    }
    out.push('\n');
    out.push_str(crate::pipeline_test::REFERENCE);
    out
}
