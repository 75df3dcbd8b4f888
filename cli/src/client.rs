//! The HTTP side of `ferrum`: one [`Client`] that sends authenticated
//! requests to the controller's `/api/v1` and turns every failure into a
//! [`CliError`] whose [`CliError::exit_code`] scripts can rely on.
//!
//! Exit codes (also printed by `ferrum --help`):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other error (bad input file, server error, unexpected answer) |
//! | 2 | usage error: bad flags or arguments (clap's own code), or a request the server refused as invalid (400: bad filter, start in the past, ...) |
//! | 3 | conflict: the slot is taken (409, the earliest possible start is printed), or the lease's state forbids the action |
//! | 4 | not authorised: no token, or the server refused it (401, 403) |
//! | 5 | not found (404) |
//! | 6 | cannot reach the server |
//!
//! This module knows nothing about tables or commands; it must never log or
//! print the token (its `Debug` redacts it).

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use ferrum_api::{API_BASE, ErrorBody, ErrorDetail};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::times::format_time;

/// Exit codes, documented in the module doc and in `ferrum --help`.
pub mod exit {
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFLICT: u8 = 3;
    pub const UNAUTHORISED: u8 = 4;
    pub const NOT_FOUND: u8 = 5;
    pub const UNREACHABLE: u8 = 6;
    pub const FAILED: u8 = 7;
}

/// The `Exit codes` section of `ferrum --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other error (bad input file, server error, unexpected answer)
  2  usage error: bad flags or arguments, or a request the server refused
     as invalid (400: bad filter, start in the past, ...)
  3  conflict: the slot is taken (the earliest possible start is printed),
     or the lease's state forbids the action (e.g. cancel after its start)
  4  not authorised: no token, or the server refused it (401, 403)
  5  not found (404)
  6  cannot reach the server (check --url / FERRUM_URL and that ferrumd runs)
  7  a deployment waited for (--wait) ended without every node deployed";

/// The failures that have their own exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error body (or at least an error status).
    #[error("{}", api_message(*.status, .detail))]
    Api { status: StatusCode, detail: ErrorDetail },
    /// No TCP connection, TLS failure or no answer in time.
    #[error(
        "cannot reach the ferrum server at {url}: {reason}\n\
         hint: check --url / FERRUM_URL (now from the {origin}) and that `ferrumd` is running there"
    )]
    Unreachable { url: String, origin: String, reason: String },
    /// No token in any source.
    #[error("no API token: pass --token, set FERRUM_TOKEN, or put `token = \"...\"` in {config}")]
    NoToken { config: String },
    /// The command line cannot be read as asked, which only the server's
    /// answers could tell (a local time at a site that does not exist).
    #[error("{0}")]
    Usage(String),
    /// The CLI itself refuses because of the resource's state.
    #[error("{0}")]
    StateConflict(String),
    /// What was waited for ended badly (a deployment failed on some node).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { status, .. } => match *status {
                StatusCode::CONFLICT => exit::CONFLICT,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => exit::UNAUTHORISED,
                StatusCode::NOT_FOUND => exit::NOT_FOUND,
                // The input is wrong (a bad filter, a start in the past):
                // retrying the same command cannot help.
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => exit::USAGE,
                _ => exit::OTHER,
            },
            CliError::Unreachable { .. } => exit::UNREACHABLE,
            CliError::NoToken { .. } => exit::UNAUTHORISED,
            CliError::Usage(_) => exit::USAGE,
            CliError::StateConflict(_) => exit::CONFLICT,
            CliError::Failed(_) => exit::FAILED,
        }
    }
}

/// The exit code for any error a command returned.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    err.chain().find_map(|e| e.downcast_ref::<CliError>()).map_or(exit::OTHER, CliError::exit_code)
}

fn api_message(status: StatusCode, detail: &ErrorDetail) -> String {
    let ErrorDetail { code, message, earliest_start } = detail;
    let mut text = match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            format!("the server rejected the request ({code}): {message}")
        }
        StatusCode::UNAUTHORIZED => format!(
            "the server did not accept the token ({code}): {message}\n\
             hint: check --token / FERRUM_TOKEN / the config file"
        ),
        StatusCode::FORBIDDEN => format!("not allowed ({code}): {message}"),
        StatusCode::NOT_FOUND => format!("not found: {message}"),
        StatusCode::CONFLICT => format!("conflict: {message}"),
        s if s.is_server_error() => format!("server error ({}, {code}): {message}", s.as_u16()),
        s => format!("unexpected answer {} ({code}): {message}", s.as_u16()),
    };
    if let Some(start) = earliest_start {
        let start = format_time(*start);
        text.push_str(&format!("\nearliest possible start: {start}\nhint: retry with --start {start}"));
    }
    text
}

/// A decoded answer and the exact text it was decoded from, for `--json`.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub value: T,
    pub raw: String,
}

/// An authenticated connection to one controller.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    url_origin: String,
    token: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base.as_str()).field("token", &"<redacted>").finish()
    }
}

/// Query string of a request without parameters.
#[derive(Debug, Serialize)]
pub struct NoQuery {}

impl Client {
    /// `base` is the server's root URL (`http://host:8750`); a trailing
    /// `/api/v1` is tolerated. `url_origin` names where it came from, for
    /// error hints.
    pub fn new(base: &str, url_origin: &str, token: String) -> Result<Self> {
        let base = parse_base(base).with_context(|| format!("invalid server URL `{base}` (from the {url_origin})"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("ferrum-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Client { http, base, url_origin: url_origin.to_owned(), token })
    }

    /// The server's root URL, as shown to people.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The URL of an API resource: `segments` are percent-encoded, so a node
    /// name can never escape its path segment.
    pub fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(API_BASE.split('/').filter(|s| !s.is_empty()));
            path.extend(segments);
        }
        url
    }

    pub async fn get<T: DeserializeOwned, Q: Serialize + ?Sized>(&self, segments: &[&str], query: &Q) -> Result<Answer<T>> {
        let url = self.endpoint(segments);
        self.execute(Method::GET, &url, self.http.get(url.clone()).query(query)).await
    }

    /// A GET whose answer is not JSON (CSV exports): its text.
    pub async fn get_text<Q: Serialize + ?Sized>(&self, segments: &[&str], query: &Q) -> Result<String> {
        let url = self.endpoint(segments);
        self.execute_text(self.http.get(url).query(query)).await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize + ?Sized>(&self, segments: &[&str], body: &B) -> Result<Answer<T>> {
        let url = self.endpoint(segments);
        self.execute(Method::POST, &url, self.http.post(url.clone()).json(body)).await
    }

    pub async fn put<T: DeserializeOwned, B: Serialize + ?Sized>(&self, segments: &[&str], body: &B) -> Result<Answer<T>> {
        let url = self.endpoint(segments);
        self.execute(Method::PUT, &url, self.http.put(url.clone()).json(body)).await
    }

    pub async fn patch<T: DeserializeOwned, B: Serialize + ?Sized>(&self, segments: &[&str], body: &B) -> Result<Answer<T>> {
        let url = self.endpoint(segments);
        self.execute(Method::PATCH, &url, self.http.patch(url.clone()).json(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<Answer<T>> {
        let url = self.endpoint(segments);
        self.execute(Method::DELETE, &url, self.http.delete(url.clone())).await
    }

    /// `GET /healthz` (outside the API base, no token needed).
    pub async fn health(&self) -> Result<Answer<ferrum_api::Health>> {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("healthz");
        }
        self.execute(Method::GET, &url, self.http.get(url.clone())).await
    }

    async fn execute<T: DeserializeOwned>(&self, method: Method, url: &Url, request: RequestBuilder) -> Result<Answer<T>> {
        let what = format!("{method} {}", url.path());
        let raw = self.execute_text(request).await?;
        let value = serde_json::from_str(&raw)
            .with_context(|| format!("unexpected answer from the server to {what} (is it the same ferrum version?)"))?;
        Ok(Answer { value, raw })
    }

    /// Sends a request; the answer's text, or the error it carries.
    async fn execute_text(&self, request: RequestBuilder) -> Result<String> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        let raw = response.text().await.map_err(|err| self.transport_error(&err))?;
        if !status.is_success() {
            return Err(CliError::Api { status, detail: error_detail(status, &raw) }.into());
        }
        Ok(raw)
    }

    fn transport_error(&self, err: &reqwest::Error) -> CliError {
        // The innermost cause says what really happened ("Connection
        // refused"); reqwest's own text repeats the URL.
        let mut reason = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            reason = cause.to_string();
            source = cause.source();
        }
        if err.is_timeout() {
            reason = format!("no answer in time ({reason})");
        }
        CliError::Unreachable { url: self.base().to_owned(), origin: self.url_origin.clone(), reason }
    }
}

fn parse_base(text: &str) -> Result<Url> {
    let trimmed = text.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(API_BASE).unwrap_or(trimmed);
    let url = Url::parse(trimmed)?;
    anyhow::ensure!(matches!(url.scheme(), "http" | "https") && url.host().is_some(), "expected http://HOST:PORT or https://HOST");
    anyhow::ensure!(url.query().is_none() && url.fragment().is_none(), "a server URL has no query or fragment");
    Ok(url)
}

/// The server's error body, or a stand-in when the answer is not ferrum's
/// (a proxy's HTML page, an empty body).
fn error_detail(status: StatusCode, raw: &str) -> ErrorDetail {
    if let Ok(body) = serde_json::from_str::<ErrorBody>(raw) {
        return body.error;
    }
    let excerpt: String = raw.trim().chars().take(200).collect();
    let message = if excerpt.is_empty() { status.canonical_reason().unwrap_or("no reason given").to_owned() } else { excerpt };
    ErrorDetail { code: format!("http_{}", status.as_u16()), message, earliest_start: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(base, "test", "t0ken".to_owned()).expect("valid base")
    }

    #[test]
    fn endpoints_encode_segments_under_the_api_base() {
        assert_eq!(client("http://h:8750").endpoint(&["nodes", "a b/c"]).as_str(), "http://h:8750/api/v1/nodes/a%20b%2Fc");
        assert_eq!(client("http://h:8750/api/v1/").endpoint(&["leases"]).as_str(), "http://h:8750/api/v1/leases");
        assert_eq!(client("https://h/ferrum/").endpoint(&["leases", "3"]).as_str(), "https://h/ferrum/api/v1/leases/3");
    }

    #[test]
    fn bad_base_urls_are_refused_with_their_origin() {
        let err = Client::new("127.0.0.1:8750", "environment", String::new()).expect_err("no scheme");
        let text = format!("{err:#}");
        assert!(text.contains("`127.0.0.1:8750`") && text.contains("environment"), "{text}");
        assert!(Client::new("ftp://h", "x", String::new()).is_err());
    }

    #[test]
    fn debug_redacts_the_token() {
        assert!(!format!("{:?}", client("http://h")).contains("t0ken"));
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        let api = |status| anyhow::Error::from(CliError::Api { status, detail: error_detail(status, "") });
        assert_eq!(exit_code(&api(StatusCode::CONFLICT)), exit::CONFLICT);
        assert_eq!(exit_code(&api(StatusCode::UNAUTHORIZED)), exit::UNAUTHORISED);
        assert_eq!(exit_code(&api(StatusCode::FORBIDDEN)), exit::UNAUTHORISED);
        assert_eq!(exit_code(&api(StatusCode::NOT_FOUND)), exit::NOT_FOUND);
        assert_eq!(exit_code(&api(StatusCode::BAD_REQUEST)), exit::USAGE);
        assert_eq!(exit_code(&api(StatusCode::INTERNAL_SERVER_ERROR)), exit::OTHER);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), exit::OTHER);
        let wrapped = anyhow::Error::from(CliError::NoToken { config: "x".into() }).context("outer");
        assert_eq!(exit_code(&wrapped), exit::UNAUTHORISED);
    }

    #[test]
    fn conflict_messages_give_the_earliest_start() {
        let raw = r#"{"error":{"code":"conflict","message":"2 nodes are not free at 2026-11-22T09:00:00Z","earliest_start":"2026-11-22T13:00:00Z"}}"#;
        let err = anyhow::Error::from(CliError::Api { status: StatusCode::CONFLICT, detail: error_detail(StatusCode::CONFLICT, raw) });
        let text = err.to_string();
        assert!(text.contains("earliest possible start: 2026-11-22T13:00:00Z"), "{text}");
        assert!(text.contains("--start 2026-11-22T13:00:00Z"), "{text}");
    }

    #[test]
    fn foreign_error_bodies_are_excerpted() {
        let detail = error_detail(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>");
        assert_eq!(detail.code, "http_502");
        assert_eq!(detail.message, "<html>bad gateway</html>");
        assert_eq!(error_detail(StatusCode::BAD_GATEWAY, "").message, "Bad Gateway");
    }
}
