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

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `validation_failed`, `not_found`, `unauthorized`, ...
    #[schema(example = "validation_failed")]
    pub code: &'static str,
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
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    /// For 429: seconds until a retry can succeed.
    pub retry_after: Option<u64>,
    /// For 401: the `WWW-Authenticate` challenge.
    pub challenge: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 for one query or path parameter.
    pub fn invalid_parameter(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::bad_request("invalid_parameter", format!("{field}: {message}"))
            .with_details(vec![FieldError::new(field, message)])
    }

    /// 422: well-formed JSON whose content is not acceptable.
    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message).with_details(details)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        e.challenge = true;
        e
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 409: the caller's tenant holds as much as it may.
    pub fn quota_exceeded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "quota_exceeded", message)
    }

    pub fn rate_limited(retry_after: u64, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    /// 503: a dependency (store, cache, pipeline) does not answer.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::warn!(error = %error, "Store query failed.");
        ApiError::unavailable(
            "store_unavailable",
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
