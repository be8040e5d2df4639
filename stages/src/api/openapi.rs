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
use super::{alerts, meta, rates, stream};

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
        (name = "rates", description = "Current and historic rates, currencies, conversion"),
        (name = "alerts", description = "Alert rules and their firings"),
        (name = "streams", description = "Live Server-Sent Events"),
        (name = "meta", description = "What runs, its health, metrics and this document"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerKeys),
)]
struct ApiDoc;

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
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meta::index))
        .routes(routes!(rates::list))
        .routes(routes!(rates::one))
        .routes(routes!(rates::history))
        .routes(routes!(rates::currencies))
        .routes(routes!(rates::convert))
        .routes(routes!(alerts::create, alerts::list))
        .routes(routes!(alerts::history))
        .routes(routes!(alerts::get, alerts::delete))
        .routes(routes!(stream::rates))
        .routes(routes!(stream::alerts))
        .routes(routes!(meta::health))
        .routes(routes!(meta::ready))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::stats))
        .routes(routes!(meta::openapi))
        .routes(routes!(meta::docs))
        .split_for_parts()
}

/// The OpenAPI document (the same for every API stage).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| router().1)
}

/// The document as pretty JSON (served on `/openapi.json`, written to docs/API.md's source).
pub fn document_json() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
    .clone()
}
