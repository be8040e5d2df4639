//! The router and its OpenAPI 3.1 document, built together from the handlers'
//! `#[utoipa::path]` attributes and the body types, so they cannot drift.

use std::sync::OnceLock;

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::context::ApiState;
use super::error::ErrorBody;
use super::{alerts, analytics, candles, fluctuation, meta, rates, stream};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fxflow API",
        description = "Current and historic FX rates (quotes and exact cross rates), currency conversion, \
alert rules with live firing streams, and the health of the pipelines serving them.\n\n\
Prices are exact decimals written as JSON strings. Pairs are in market convention (EUR/USD, USD/JPY); \
in paths write them `EURUSD`, `EUR-USD` or `EUR_USD`, in either orientation. \
Changes need `Authorization: Bearer <key>`. Every error is `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        license(name = "Apache-2.0"),
    ),
    tags(
        (name = "rates", description = "Current and historic rates, candles, currencies, conversion"),
        (name = "analytics", description = "Volatility computed from the rates"),
        (name = "alerts", description = "Alert rules and their firings"),
        (name = "streams", description = "Live Server-Sent Events"),
        (name = "meta", description = "What runs, its health, metrics and this document"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys),
)]
struct ApiDoc;

/// A condition or trigger takes only the fields of its `type` (the server
/// refuses any other, even `null`); utoipa does not carry serde's
/// `deny_unknown_fields` into enum variants, so it is said here.
struct ClosedVariants;

impl Modify for ClosedVariants {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        use utoipa::openapi::RefOr;
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in ["ConditionSpec", "TriggerSpec"] {
            if let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut(name) {
                for variant in &mut one_of.items {
                    if let RefOr::T(Schema::Object(object)) = variant {
                        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
                    }
                }
            }
        }
    }
}

struct BearerKeys;

impl Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key of the stage's `keys`"))
                    .build(),
            ),
        );
    }
}

/// Every route of the API, and the document describing them.
pub fn router() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    let (router, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meta::index))
        .routes(routes!(rates::list))
        .routes(routes!(rates::one))
        .routes(routes!(rates::history))
        .routes(routes!(candles::candles))
        .routes(routes!(analytics::volatility))
        .routes(routes!(rates::currencies))
        .routes(routes!(rates::convert))
        .routes(routes!(fluctuation::fluctuation))
        .routes(routes!(alerts::create, alerts::list))
        .routes(routes!(alerts::history))
        .routes(routes!(alerts::backtest))
        .routes(routes!(alerts::get, alerts::delete))
        .routes(routes!(stream::rates))
        .routes(routes!(stream::alerts))
        .routes(routes!(meta::health))
        .routes(routes!(meta::ready))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::stats))
        .routes(routes!(meta::openapi))
        .routes(routes!(meta::docs))
        .split_for_parts();
    // The body schemas are collected from the routes above, after the derive's modifiers ran.
    let (router, mut document) = (router, document);
    ClosedVariants.modify(&mut document);
    (router, document)
}

/// A created rule's id leads to reading and deleting it: OpenAPI links, for
/// clients and for the fuzz test's stateful phase (create, read, delete).
/// Added to the JSON: utoipa 5.5 writes a link's `operationId` as `operation_id`.
fn add_rule_links(document: &mut serde_json::Value) {
    let Some(created) = document.pointer_mut("/paths/~1alerts/post/responses/201") else {
        return;
    };
    let link = |operation: &str| {
        serde_json::json!({
            "operationId": operation,
            "parameters": {"id": "$response.body#/id"},
            "description": "The rule just created",
        })
    };
    created["links"] = serde_json::json!({
        "GetTheRule": link("getAlert"),
        "DeleteTheRule": link("deleteAlert"),
    });
}

/// The routes a `private` API answers only with a key (besides the alert routes).
pub fn is_data_route(route: &str) -> bool {
    [
        "/rates",
        "/currencies",
        "/convert",
        "/fluctuation",
        "/analytics/",
        "/stream/rates",
        "/v1",
        "/v2",
    ]
    .iter()
    .any(|prefix| route.starts_with(prefix))
}

/// The document of a `private` API: every data operation needs the key, and
/// says so with its 401 and 403 answers.
fn make_private(document: &mut serde_json::Value) {
    let refusal = |text: &str| {
        serde_json::json!({
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        })
    };
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !is_data_route(path) {
            continue;
        }
        for operation in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            operation["security"] = serde_json::json!([{"api_key": []}]);
            let responses = &mut operation["responses"];
            responses["401"] = refusal("No API key, or a malformed Authorization header");
            responses["403"] = refusal("Unknown API key");
        }
    }
}

/// The OpenAPI document (the same for every API stage).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| router().1)
}

/// The document as pretty JSON (served on `/openapi.json`, written to docs/API.md's source).
pub fn document_json() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| served(false)).clone()
}

/// The document a `private` API serves.
pub fn private_document_json() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| served(true)).clone()
}

fn served(private: bool) -> String {
    let mut value = serde_json::to_value(document()).unwrap_or_default();
    add_rule_links(&mut value);
    if private {
        make_private(&mut value);
    }
    serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The API reference as Markdown (docs/API.md): the guide, then every
/// operation and schema of the OpenAPI document.
pub fn markdown() -> String {
    use std::fmt::Write as _;
    let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!-- Generated by `fxflow docs --api` from the OpenAPI document; do not edit. -->\n"
    );
    out.push_str(include_str!("assets/api-guide.md"));
    let _ = writeln!(out, "\n## Reference\n");
    let _ = writeln!(out, "| method | path | summary |\n|---|---|---|");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let _ = writeln!(
                out,
                "| {} | `{path}` | {} |",
                method.to_uppercase(),
                one_line(op["summary"].as_str().unwrap_or_default())
            );
        }
    }
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            let _ = writeln!(out, "\n### {} `{path}`\n", method.to_uppercase());
            if let Some(summary) = op["summary"].as_str() {
                let _ = writeln!(out, "{summary}");
            }
            if let Some(description) = op["description"].as_str() {
                let _ = writeln!(out, "\n{description}");
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                let _ = writeln!(out, "\nNeeds `Authorization: Bearer <key>`.");
            }
            if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
                let _ = writeln!(out, "\n| parameter | in | type | description |\n|---|---|---|---|");
                for p in params {
                    let _ = writeln!(
                        out,
                        "| `{}`{} | {} | {} | {} |",
                        p["name"].as_str().unwrap_or_default(),
                        if p["required"].as_bool() == Some(true) {
                            " *"
                        } else {
                            ""
                        },
                        p["in"].as_str().unwrap_or_default(),
                        type_of(&p["schema"]),
                        one_line(p["description"].as_str().unwrap_or_default())
                    );
                }
            }
            if let Some(body) = op["requestBody"]["content"]["application/json"]["schema"].as_object() {
                let _ = writeln!(out, "\nBody: {}", type_of(&serde_json::Value::Object(body.clone())));
            }
            let _ = writeln!(out, "\n| status | meaning | body |\n|---|---|---|");
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                let bodies: Vec<String> = response["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(mime, c)| format!("{} ({mime})", type_of(&c["schema"])))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {status} | {} | {} |",
                    one_line(response["description"].as_str().unwrap_or_default()),
                    bodies.join(", ")
                );
            }
        }
    }
    let _ = writeln!(out, "\n## Schemas");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        let _ = writeln!(out, "\n### {name}\n");
        if let Some(description) = schema["description"].as_str() {
            let _ = writeln!(out, "{}\n", one_line(description));
        }
        if let Some(variants) = schema["oneOf"].as_array() {
            let _ = writeln!(out, "One of:\n");
            for v in variants {
                let fields: Vec<String> = v["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, s)| format!("`{k}`: {}", type_of(s)))
                    .collect();
                let label = if fields.is_empty() {
                    type_of(v)
                } else {
                    fields.join(", ")
                };
                let _ = writeln!(
                    out,
                    "- {label}{}",
                    v["description"]
                        .as_str()
                        .map(|d| format!(" — {}", one_line(d)))
                        .unwrap_or_default()
                );
            }
            continue;
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str())
            .collect();
        if let Some(properties) = schema["properties"].as_object() {
            let _ = writeln!(out, "| field | type | description |\n|---|---|---|");
            for (field, s) in properties {
                let _ = writeln!(
                    out,
                    "| `{field}`{} | {} | {} |",
                    if required.contains(&field.as_str()) {
                        ""
                    } else {
                        " (optional)"
                    },
                    type_of(s),
                    one_line(s["description"].as_str().unwrap_or_default())
                );
            }
        } else if let Some(values) = schema["enum"].as_array() {
            let names: Vec<String> = values
                .iter()
                .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
                .collect();
            let _ = writeln!(out, "One of {}.", names.join(", "));
        } else {
            let _ = writeln!(out, "{}", type_of(schema));
        }
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// A schema in a few words: `RateView`, `string (date-time)`, `AlertView[]`.
fn type_of(schema: &serde_json::Value) -> String {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    if let Some(variants) = schema["oneOf"].as_array() {
        return variants.iter().map(type_of).collect::<Vec<_>>().join(" or ");
    }
    let kind = match &schema["type"] {
        serde_json::Value::String(t) => t.clone(),
        serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect::<Vec<_>>().join(" or "),
        _ => "object".into(),
    };
    if kind.starts_with("array") {
        return format!("{}[]", type_of(&schema["items"]));
    }
    match schema["format"].as_str() {
        Some(format) => format!("{kind} ({format})"),
        None => kind,
    }
}
