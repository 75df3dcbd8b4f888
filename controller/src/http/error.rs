//! The one place where application errors become HTTP answers.
//!
//! | error | status | code |
//! |---|---|---|
//! | bad input (body, query, path, filter, rule of the request) | 400 | `bad_request`, `invalid_filter`, `unsatisfiable` |
//! | no or unknown token | 401 | `unauthorized` |
//! | not allowed (role, project) | 403 | `forbidden` |
//! | unknown resource, or another user's lease | 404 | `not_found` |
//! | slot taken, state forbids it, name taken | 409 | `conflict` (+ `earliest_start`) |
//! | body too large | 413 | `payload_too_large` |
//! | anything else | 500 | `internal` (details in the log only) |
//!
//! Client errors are logged at debug level; internal errors at error level
//! with their whole cause chain, and the client sees only "internal error".

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferrum_api::{ErrorBody, ErrorDetail};

use crate::app::AppError;
use crate::model::time::from_seconds;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub earliest_start: Option<i64>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into(), earliest_start: None }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let (status, code) = match &e {
            AppError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code),
            AppError::Unauthenticated | AppError::SignInRefused(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            AppError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            AppError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        let earliest_start = match &e {
            AppError::Conflict { earliest_start, .. } => *earliest_start,
            _ => None,
        };
        if status.is_client_error() {
            tracing::debug!(status = status.as_u16(), error = %e, "request refused");
        }
        ApiError { status, code, message: e.to_string(), earliest_start }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail { code: self.code.to_owned(), message: self.message, earliest_start: self.earliest_start.map(from_seconds) },
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
