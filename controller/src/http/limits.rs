//! Every error answer JSON, including those written before a handler runs.
//!
//! [`json_errors`] turns any error answer (status 400 and up) that is not
//! JSON into `{"error":{"code","message"}}`: the empty 404/405/416 of
//! `ServeDir` under `/boot/files/` and `/images/`, and whatever a layer or
//! extractor answers in plain text. A handler whose error body is meant for
//! a non-HTTP-API client (the iPXE script telling firmware that its MAC is
//! unknown) marks its answer with [`KeepBody`].
//!
//! [`request_limits`] refuses an over-long request URI (414) or request
//! headers (431) with a JSON error. hyper has its own limits (a 65,534-byte
//! URI, 100 headers, a ~400 KiB read buffer) and answers them itself, at the
//! connection, with an empty body; this layer's limits are lower, so a
//! client meets this layer's JSON answer first.
//!
//! [`harden`] puts both on a router, outermost; apply it to every listener's
//! router (the API, and the boot/agent one).

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The longest request URI (path and query) taken.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most request header bytes taken (names, values and separators).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most request headers taken.
pub const MAX_HEADERS: usize = 64;

/// Marks an error answer whose body must reach its client as it is.
#[derive(Clone, Copy, Debug)]
pub struct KeepBody;

/// Wraps `router` in [`request_limits`] and [`json_errors`].
pub fn harden<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(middleware::from_fn(json_errors)).layer(middleware::from_fn(request_limits))
}

/// 414 or 431 (JSON) for a request over this server's limits.
pub async fn request_limits(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let uri_bytes = uri.path_and_query().map_or(0, |pq| pq.as_str().len()) + uri.authority().map_or(0, |a| a.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return refuse(StatusCode::URI_TOO_LONG, "uri_too_long", format!("the request URI is {uri_bytes} bytes; at most {MAX_URI_BYTES}"));
    }
    let (count, bytes) = header_size(req.headers());
    if count > MAX_HEADERS {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request has {count} headers; at most {MAX_HEADERS}"),
        );
    }
    if bytes > MAX_HEADER_BYTES {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers are {bytes} bytes; at most {MAX_HEADER_BYTES}"),
        );
    }
    next.run(req).await
}

/// How many headers, and their size as sent (`name: value\r\n`).
fn header_size(headers: &HeaderMap) -> (usize, usize) {
    headers.iter().fold((0, 0), |(n, bytes), (name, value)| (n + 1, bytes + name.as_str().len() + value.len() + 4))
}

fn refuse(status: StatusCode, code: &'static str, message: String) -> Response {
    tracing::debug!(status = status.as_u16(), %message, "request refused before routing");
    ApiError { status, code, message, earliest_start: None }.into_response()
}

/// Rewrites a non-JSON error answer as a JSON one, keeping the headers a
/// client needs to act on it (`Allow`, `Content-Range`, `Retry-After`,
/// `WWW-Authenticate`).
pub async fn json_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers())
        || response.extensions().get::<KeepBody>().is_some()
    {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", format!("nothing at {path}")),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", format!("{path} does not take that method")),
        StatusCode::RANGE_NOT_SATISFIABLE => ("range_not_satisfiable", "the requested range is outside the file".to_owned()),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body too large".to_owned()),
        StatusCode::UNAUTHORIZED => ("unauthorized", "authentication required".to_owned()),
        StatusCode::FORBIDDEN => ("forbidden", "not allowed".to_owned()),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests; try again later".to_owned()),
        s if s.is_server_error() => ("internal", "internal error".to_owned()),
        s => ("bad_request", format!("request refused ({})", s.canonical_reason().unwrap_or("client error"))),
    };
    let mut answer = ApiError { status, code, message, earliest_start: None }.into_response();
    for name in [header::ALLOW, header::CONTENT_RANGE, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = response.headers().get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_size_counts_what_is_sent() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "a".parse().expect("value"));
        h.append(header::ACCEPT, "bc".parse().expect("value"));
        assert_eq!(header_size(&h), (2, "host: a\r\n".len() + "accept: bc\r\n".len()));
    }

    #[test]
    fn json_content_types() {
        for (ct, json) in
            [("application/json", true), ("Application/JSON; charset=utf-8", true), ("text/plain", false), ("application/jsonx", false)]
        {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().expect("value"));
            assert_eq!(is_json(&h), json, "{ct}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
