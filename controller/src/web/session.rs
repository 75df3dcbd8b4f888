//! Browser sessions and forms: the session cookie, the signed-in caller
//! of a page, anti-forgery (CSRF) tokens, and the client's address.
//!
//! - `ferrum_session`: the session token (`HttpOnly`, `SameSite=Lax`,
//!   `Secure` when the portal's URL is https). Lax keeps a user signed in
//!   when they follow a link from a mail; a cross-site POST never carries
//!   it.
//! - Forms of a session carry its CSRF token (`csrf`), compared in
//!   constant time. Pages show it masked with a fresh random pad each
//!   time ([`crate::app::web::mask`]): the portal's pages are gzipped and some repeat what
//!   the query said, so a fixed secret in them would leak byte by byte to
//!   whoever can make the browser ask and watch the sizes (BREACH). Forms before a session (sign-in, activation) carry a
//!   token that must equal the `ferrum_form` cookie (`SameSite=Strict`)
//!   the page set: a page of another site can neither read nor set it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

use super::WebError;
use crate::app::App;
use crate::app::web::{WebSession, unmask};

pub const SESSION_COOKIE: &str = "ferrum_session";
pub const FORM_COOKIE: &str = "ferrum_form";

/// Whether cookies must be `Secure` (the portal is served over https).
fn secure(app: &App) -> bool {
    app.config.web_base_url().starts_with("https://")
}

/// The session cookie for a new session: a browser-session cookie (no
/// `Max-Age`; the server ends the session at `[web] session_lifetime`).
pub fn session_cookie(app: &App, token: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token)).http_only(true).same_site(SameSite::Lax).secure(secure(app)).path("/").build()
}

/// The cookie that removes the session cookie.
pub fn session_removal(app: &App) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, "")).http_only(true).same_site(SameSite::Lax).secure(secure(app)).path("/").build()
}

/// A fresh form token and its cookie, for a form shown before sign-in.
pub fn form_token(app: &App) -> Result<(String, Cookie<'static>), WebError> {
    let token = crate::app::accounts::new_token().map_err(WebError::from)?;
    let cookie =
        Cookie::build((FORM_COOKIE, token.clone())).http_only(true).same_site(SameSite::Strict).secure(secure(app)).path("/").build();
    Ok((token, cookie))
}

/// Whether a posted form token is the one of the `ferrum_form` cookie.
pub fn form_token_matches(jar: &CookieJar, posted: &str) -> bool {
    jar.get(FORM_COOKIE).is_some_and(|c| !posted.is_empty() && constant_time_eq(c.value().as_bytes(), posted.as_bytes()))
}

/// Compares two secrets without stopping at the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of a page, when signed in.
#[derive(Clone, Debug)]
pub struct MaybeSignedIn(pub Option<WebSession>);

impl FromRequestParts<Arc<App>> for MaybeSignedIn {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(token) = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()).filter(|t| !t.is_empty()) else {
            return Ok(MaybeSignedIn(None));
        };
        Ok(MaybeSignedIn(app.web_session(&token).await?))
    }
}

/// The caller of a page that needs a session; without one, the answer
/// sends the browser to `/login` and back.
#[derive(Clone, Debug)]
pub struct SignedIn(pub WebSession);

impl FromRequestParts<Arc<App>> for SignedIn {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        match MaybeSignedIn::from_request_parts(parts, app).await?.0 {
            Some(session) => Ok(SignedIn(session)),
            None => {
                // Back to the page after signing in; a form posted once
                // the session ended goes home (its address takes POST only).
                let next = match parts.method {
                    axum::http::Method::GET | axum::http::Method::HEAD => parts.uri.path_and_query().map(|pq| pq.as_str().to_owned()),
                    _ => None,
                };
                Err(WebError::SignInFirst { next: next.unwrap_or_else(|| "/".into()) })
            }
        }
    }
}

impl SignedIn {
    /// Refuses a form whose CSRF token, unmasked, is not the session's.
    pub fn check_csrf(&self, posted: &str) -> Result<(), WebError> {
        match unmask(posted) {
            Some(token) if constant_time_eq(self.0.csrf_key.as_bytes(), &token) => Ok(()),
            _ => Err(WebError::Forgery),
        }
    }
}

/// The client's address: the peer's, or the last address a trusted proxy
/// added to `X-Forwarded-For` (`[web] trusted_proxies`), walking back
/// through trusted proxies.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientAddr {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| WebError::Internal(anyhow::anyhow!("no peer address on the request")))?;
        Ok(ClientAddr(client_address(peer, &parts.headers, &app.config.web.trusted_proxies)))
    }
}

/// See [`ClientAddr`].
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let trusts = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !trusts(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .map_while(|a| a.parse().ok())
        .collect();
    let mut client = peer;
    for addr in forwarded.iter().rev() {
        client = *addr;
        if !trusts(addr) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::web::mask;

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7, 10.1.1.1".parse().expect("header"));
        let proxy: IpAddr = "10.0.0.2".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        // Through two trusted proxies: the first untrusted address.
        assert_eq!(client_address(proxy, &headers, &trusted), "203.0.113.7".parse::<IpAddr>().expect("ip"));
        // A client that sends the header itself is not believed.
        assert_eq!(client_address(stranger, &headers, &trusted), stranger);
        // Nothing trusted: the peer.
        assert_eq!(client_address(proxy, &headers, &[]), proxy);
        // A forged address before the proxies' is not reached.
        headers.insert("x-forwarded-for", "1.2.3.4, 203.0.113.7".parse().expect("header"));
        assert_eq!(client_address(proxy, &headers, &trusted), "203.0.113.7".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn masked_tokens_differ_each_time_and_unmask_to_the_secret() {
        let secret = "ferrum_0123456789abcdef";
        let (a, b) = (mask(secret), mask(secret));
        assert_ne!(a, b, "a fresh pad each time");
        assert!(!a.contains("ferrum_") && !a.contains("0123456789abcdef"), "{a}");
        assert_eq!(unmask(&a).as_deref(), Some(secret.as_bytes()));
        assert_eq!(unmask(&b).as_deref(), Some(secret.as_bytes()));
        for bad in ["", "zz", "abc", secret] {
            assert_ne!(unmask(bad).as_deref(), Some(secret.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
