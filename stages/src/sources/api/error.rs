//! The API's one error type: every failure maps to a status and the body
//! `{"error": {"code", "message", "details"}}` here, in one place.
//!
//! Bad input is always a 4xx with a code a client can branch on and a message
//! a person can act on; 5xx is kept for the server's own trouble (a store that
//! does not answer is 503, a bug 500).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// Every error code the API answers with: stable, machine-readable, listed
/// in the OpenAPI document so clients can branch on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a backtest over more than 366 days, or more stored samples than one request may read.
    BacktestTooLarge,
    /// 413: the body is larger than `limits.max_body`.
    BodyTooLarge,
    /// 403: an unknown API key, or an API without keys.
    Forbidden,
    /// 500: a bug; logged with the request id.
    InternalError,
    /// 400: a cursor (`after`, `before`) the API never issued.
    InvalidCursor,
    /// 400: a malformed query or path parameter; `details` names it.
    InvalidParameter,
    /// 400: `from` after `to`.
    InvalidRange,
    /// 400: the body is not JSON.
    MalformedJson,
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 404: no rate of the pair has been seen yet.
    NoRate,
    /// 404: the live page has no such file.
    NoSuchAsset,
    /// 404: no such path.
    NoSuchEndpoint,
    /// 400: `limit` above `limits.max_page`.
    PageTooLarge,
    /// 503: a rule change was not accepted downstream in time.
    PipelineUnavailable,
    /// 409: the tenant holds as many rules (or webhooks) as it may.
    QuotaExceeded,
    /// 429: too many requests (per address, per key, or failed authentications); see `Retry-After`.
    RateLimited,
    /// 400: `/convert` with `to` equal to `from`.
    SameCurrency,
    /// 409: a rule of the pipeline file, changed only there.
    SharedRule,
    /// 503: the pipeline is stopping.
    ShuttingDown,
    /// 503: the history store does not answer.
    StoreUnavailable,
    /// 503: as many stream clients as `limits.stream_clients` are connected.
    TooManyStreams,
    /// 401: no API key, or a malformed `Authorization` header.
    Unauthorized,
    /// 404: no such currency, or one that is not monitored.
    UnknownCurrency,
    /// 404: no such pair (a currency against itself), or one that is not monitored.
    UnknownPair,
    /// 404: no such rule of the caller's tenant.
    UnknownRule,
    /// 400: the body could not be read.
    UnreadableBody,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 400: `interval` on the history route: bars come from `/rates/{pair}/candles`.
    UseCandles,
    /// 422: a well-formed body with invalid content; `details` names each field.
    ValidationFailed,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 29] = [
        ErrorCode::BacktestTooLarge,
        ErrorCode::BodyTooLarge,
        ErrorCode::Forbidden,
        ErrorCode::InternalError,
        ErrorCode::InvalidCursor,
        ErrorCode::InvalidParameter,
        ErrorCode::InvalidRange,
        ErrorCode::MalformedJson,
        ErrorCode::MethodNotAllowed,
        ErrorCode::NoRate,
        ErrorCode::NoSuchAsset,
        ErrorCode::NoSuchEndpoint,
        ErrorCode::PageTooLarge,
        ErrorCode::PipelineUnavailable,
        ErrorCode::QuotaExceeded,
        ErrorCode::RateLimited,
        ErrorCode::SameCurrency,
        ErrorCode::SharedRule,
        ErrorCode::ShuttingDown,
        ErrorCode::StoreUnavailable,
        ErrorCode::TooManyStreams,
        ErrorCode::Unauthorized,
        ErrorCode::UnknownCurrency,
        ErrorCode::UnknownPair,
        ErrorCode::UnknownRule,
        ErrorCode::UnreadableBody,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::UseCandles,
        ErrorCode::ValidationFailed,
    ];

    /// The code as it appears in bodies (`validation_failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BacktestTooLarge => "backtest_too_large",
            ErrorCode::BodyTooLarge => "body_too_large",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::InvalidCursor => "invalid_cursor",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::InvalidRange => "invalid_range",
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::NoRate => "no_rate",
            ErrorCode::NoSuchAsset => "no_such_asset",
            ErrorCode::NoSuchEndpoint => "no_such_endpoint",
            ErrorCode::PageTooLarge => "page_too_large",
            ErrorCode::PipelineUnavailable => "pipeline_unavailable",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SameCurrency => "same_currency",
            ErrorCode::SharedRule => "shared_rule",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::TooManyStreams => "too_many_streams",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnknownCurrency => "unknown_currency",
            ErrorCode::UnknownPair => "unknown_pair",
            ErrorCode::UnknownRule => "unknown_rule",
            ErrorCode::UnreadableBody => "unreadable_body",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UseCandles => "use_candles",
            ErrorCode::ValidationFailed => "validation_failed",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: one of [`ErrorCode`].
    pub code: ErrorCode,
    /// For people: what is wrong and how to fix it.
    pub message: String,
    /// The fields at fault (empty when the request as a whole is).
    pub details: Vec<FieldError>,
}

/// One problem with one field of the request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// Where: `condition.threshold`, `query.limit`, `path.pair`.
    #[schema(example = "condition.threshold")]
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<FieldError>,
    /// For 429: seconds until a retry can succeed.
    pub retry_after: Option<u64>,
    /// For 401: the `WWW-Authenticate` challenge.
    pub challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            challenge: false,
        }
    }

    pub fn with_details(mut self, details: Vec<FieldError>) -> Self {
        self.details = details;
        self
    }

    /// 400: a malformed request (bad query parameter, unparsable body).
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 for one query or path parameter.
    pub fn invalid_parameter(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::bad_request(ErrorCode::InvalidParameter, format!("{field}: {message}"))
            .with_details(vec![FieldError::new(field, message)])
    }

    /// 422: well-formed JSON whose content is not acceptable.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::ValidationFailed, message).with_details(details)
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message);
        e.challenge = true;
        e
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 409: the caller's tenant holds as much as it may.
    pub fn quota_exceeded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::QuotaExceeded, message)
    }

    pub fn rate_limited(retry_after: u64, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, message);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    /// 503: a dependency (store, cache, pipeline) does not answer.
    pub fn unavailable(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::warn!(error = %error, "Store query failed.");
        ApiError::unavailable(
            ErrorCode::StoreUnavailable,
            format!("the history store did not answer: {error}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"fxflow\""),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_written_as_its_name_and_listed_in_the_document() {
        let document = serde_json::to_value(super::super::openapi::document()).unwrap();
        let listed: Vec<String> = document["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("the document lists the error codes")
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(listed.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert!(listed.iter().any(|l| l == code.as_str()), "{code:?} listed");
        }
    }
}
