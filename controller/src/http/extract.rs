//! Request extractors whose every failure is a JSON 400 (or 401/413) that
//! says what to fix, never axum's plain-text rejections: the body, the
//! query, the path, and the bearer token.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::app::{Actor, App};

/// A JSON body: an object (every request body of the API is one; serde
/// alone would also take an array of the fields in order). A number with
/// no fractional part is an integer, as JSON Schema says (`5.0` where an
/// integer is expected is taken as `5`).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        decode_object(json_value(req, state).await?).map(Body)
    }
}

/// The body as JSON, whatever its shape.
async fn json_value<S: Send + Sync>(req: Request, state: &S) -> Result<serde_json::Value, ApiError> {
    axum::Json::<serde_json::Value>::from_request(req, state).await.map(|axum::Json(v)| v).map_err(json_rejection)
}

/// A JSON object decoded as `T` (integral numbers read as integers, as
/// JSON Schema says), through axum's own decoding, whose errors name the
/// field.
fn decode_object<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    integral_numbers_as_integers(&mut value);
    let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
    axum::Json::<T>::from_bytes(&bytes).map(|axum::Json(v)| v).map_err(json_rejection)
}

fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // The i64 range; the cast is exact inside it.
            #[allow(clippy::cast_possible_truncation)]
            if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            // serde_path_to_error's text: "<path>: <what>"; drop axum's preamble.
            let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.body_text());
            ApiError::bad_request(format!("invalid request body: {detail}"))
        }
        JsonRejection::JsonSyntaxError(e) => {
            let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.body_text());
            ApiError::bad_request(format!("request body is not valid JSON: {detail}"))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::bad_request("send the body as JSON with 'Content-Type: application/json'"),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
            message: "request body too large".into(),
            earliest_start: None,
        },
        other => ApiError::bad_request(format!("cannot read request body: {}", other.body_text())),
    }
}

/// Query parameters.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let detail = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_else(|| e.body_text());
                Err(ApiError::bad_request(format!("invalid query parameters: {detail}")))
            }
            Err(other) => Err(ApiError::bad_request(format!("invalid query parameters: {}", other.body_text()))),
        }
    }
}

/// Path parameters.
#[derive(Debug)]
pub struct PathParam<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParam<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParam(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::bad_request(format!("invalid path: {}", e.body_text()))),
            Err(other) => Err(ApiError::bad_request(format!("invalid path: {}", other.body_text()))),
        }
    }
}

/// A JSON body that may be left out (no body, an empty one or `null`):
/// then `T::default()`. For endpoints that took no body before.
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<T, S> FromRequest<S> for OptionalBody<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req.headers().get(axum::http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0")
            || (req.headers().get(axum::http::header::CONTENT_TYPE).is_none()
                && req.headers().get(axum::http::header::TRANSFER_ENCODING).is_none()
                && req.headers().get(axum::http::header::CONTENT_LENGTH).is_none());
        if empty {
            return Ok(OptionalBody(T::default()));
        }
        // `null` is the same as no body.
        match json_value(req, state).await? {
            serde_json::Value::Null => Ok(OptionalBody(T::default())),
            value => decode_object(value).map(OptionalBody),
        }
    }
}

/// The caller, from `Authorization: Bearer <token>`. A read-only token is
/// refused (403) on every method but `GET` and `HEAD`.
#[derive(Debug)]
pub struct Caller(pub Actor);

/// The token of `Authorization: Bearer <token>`, if there is one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty())
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer(parts) else {
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
                message: "missing API token: send 'Authorization: Bearer <token>'".into(),
                earliest_start: None,
            });
        };
        let who = app.authenticate(token).await.map_err(ApiError::from)?;
        if who.read_only && !matches!(parts.method, Method::GET | Method::HEAD) {
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                message: format!("this token is read-only: it may only read (GET), not {}; use a full token", parts.method),
                earliest_start: None,
            });
        }
        Ok(Caller(who.actor))
    }
}
