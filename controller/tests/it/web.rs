//! The web portal over HTTP, as a browser speaks it (forms, cookies,
//! redirects not followed): activation links, sign-in and sign-out,
//! anti-forgery tokens, session fixation, throttling, the profile's
//! tokens and SSH keys, the admin's approval queues (account requests,
//! large leases; nodes, with maintenance and power, and the audit log),
//! the calendar, the hardware catalog, and the user's leases (list, page,
//! its forms, and its live progress stream followed through a simulated
//! deploy). What a user clicks through is tested in a real browser too
//! (`tests/web/`, Playwright).

use std::collections::BTreeMap;

use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::config::Config;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use super::harness::{DEADLINE, TestContext, at, wait_until};

/// A browser without a script: keeps cookies, follows no redirect.
pub(super) struct Browser {
    base: String,
    client: reqwest::Client,
    pub(super) cookies: BTreeMap<String, String>,
}

/// A page as the browser got it.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) status: StatusCode,
    pub(super) location: Option<String>,
    /// `Set-Cookie` lines, as sent.
    set_cookies: Vec<String>,
    /// `Cache-Control`, if any.
    cache_control: Option<String>,
    pub(super) text: String,
}

impl Page {
    /// The value of a hidden field (`name="NAME" value="..."`).
    pub(super) fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.text.find(&marker).unwrap_or_else(|| panic!("no field {name} in {}", self.text)) + marker.len();
        self.text[start..].split('"').next().unwrap_or_default().to_owned()
    }

    fn cookie_line(&self, name: &str) -> Option<&str> {
        self.set_cookies.iter().map(String::as_str).find(|l| l.starts_with(&format!("{name}=")))
    }
}

impl Browser {
    pub(super) fn new(ctx: &TestContext) -> Browser {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { base: ctx.url.clone(), client, cookies: BTreeMap::new() }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let req = if cookie.is_empty() { req } else { req.header(COOKIE, cookie) };
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let cache_control = resp.headers().get(CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let set_cookies: Vec<String> =
            resp.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
        for line in &set_cookies {
            let (pair, attributes) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Only the attributes say "removed": a random hex value may
            // hold "1970" too (it did, about one run in ten).
            let removal = value.is_empty() || attributes.contains("Max-Age=0") || attributes.contains("1970");
            if removal {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let text = resp.text().await.expect("body");
        Page { status, location, set_cookies, cache_control, text }
    }

    pub(super) async fn get(&mut self, path: &str) -> Page {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    pub(super) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.client.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    /// A streamed answer (Server-Sent Events), with the session's cookies;
    /// read it with [`next_events`].
    pub(super) async fn stream(&mut self, path: &str) -> reqwest::Response {
        let cookie = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        self.client.get(format!("{}{path}", self.base)).header(COOKIE, cookie).send().await.expect("request sent")
    }

    /// A page, or the first event of a stream (which does not end while
    /// something moves): its status and what came until the first blank
    /// line.
    pub(super) async fn first_event(&mut self, path: &str) -> Page {
        let mut resp = self.stream(path).await;
        let status = resp.status();
        let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut text = String::new();
        let read = async {
            while let Some(chunk) = resp.chunk().await.expect("a chunk") {
                text.push_str(&String::from_utf8_lossy(&chunk));
                if text.contains("\n\n") {
                    break;
                }
            }
        };
        tokio::time::timeout(super::harness::DEADLINE, read).await.expect("a first event in time");
        Page { status, location, set_cookies: Vec::new(), cache_control: None, text }
    }

    /// Signs in through the form (which the browser loads first).
    pub(super) async fn sign_in(&mut self, name: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        let token = form.field("form_token");
        self.post("/login", &[("form_token", &token), ("next", "/"), ("name", name), ("password", password)]).await
    }

    /// Sets a password through an activation link.
    pub(super) async fn activate(&mut self, url: &str, password: &str) -> Page {
        let path = url.split_once("/activate/").map(|(_, t)| format!("/activate/{t}")).expect("an activation URL");
        let form = self.get(&path).await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.text);
        let token = form.field("form_token");
        self.post(&path, &[("form_token", &token), ("password", password), ("confirm", password)]).await
    }
}

pub(super) async fn activation_url(ctx: &TestContext, user: &str) -> String {
    let link = ctx.post(&format!("/api/v1/users/{user}/activation-link"), &ctx.admin, json!({})).await.expect(201);
    assert_eq!(link["user"], user);
    let url = link["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&format!("{}/activate/ferrum_", ctx.url)), "{url}");
    url
}

pub(super) const PASSWORD: &str = "correct horse battery";

/// A browser signed in as `user` (whose password it sets first).
pub(super) async fn signed_in(ctx: &TestContext, user: &str) -> Browser {
    let mut browser = Browser::new(ctx);
    assert_eq!(browser.activate(&activation_url(ctx, user).await, PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.sign_in(user, PASSWORD).await.status, StatusCode::SEE_OTHER);
    browser
}

#[tokio::test]
async fn a_user_sets_a_password_once_signs_in_and_out() {
    let ctx = TestContext::empty().await;
    let alice = ctx.user("alice", "p-vision").await;
    // Admins only make links.
    ctx.post("/api/v1/users/alice/activation-link", &alice, json!({})).await.error(403, "forbidden");
    let first = activation_url(&ctx, "alice").await;
    let url = activation_url(&ctx, "alice").await;
    let mut browser = Browser::new(&ctx);
    // A newer link replaces the older one.
    let old = first.split_once("/activate/").map(|(_, t)| format!("/activate/{t}")).expect("path");
    assert_eq!(browser.get(&old).await.status, StatusCode::NOT_FOUND);

    let path = url.split_once("/activate/").map(|(_, t)| format!("/activate/{t}")).expect("path");
    let form = browser.get(&path).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text.contains("alice"), "the page names the user: {}", form.text);
    let token = form.field("form_token");
    // Refusals come back on the page, in words.
    let short = browser.post(&path, &[("form_token", &token), ("password", "short"), ("confirm", "short")]).await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.text.contains("password: at least 10 characters"), "{}", short.text);
    let token = short.field("form_token");
    let differ = browser.post(&path, &[("form_token", &token), ("password", PASSWORD), ("confirm", "correct horse battery!")]).await;
    assert!(differ.text.contains("the two passwords differ"), "{}", differ.text);
    let token = differ.field("form_token");
    let set = browser.post(&path, &[("form_token", &token), ("password", PASSWORD), ("confirm", PASSWORD)]).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.text);
    assert_eq!(set.location.as_deref(), Some("/login?activated=alice"));
    // The link works once.
    assert_eq!(browser.get(&path).await.status, StatusCode::NOT_FOUND);

    // A wrong password: 401, the same words whether the name exists or not.
    let wrong = browser.sign_in("alice", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("wrong user name or password"), "{}", wrong.text);
    let nobody = browser.sign_in("nobody", PASSWORD).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    assert!(nobody.text.contains("wrong user name or password"), "{}", nobody.text);

    // Session fixation: a session id planted before sign-in is never adopted.
    browser.cookies.insert("ferrum_session".into(), "ferrum_planted".into());
    let signed = browser.sign_in("alice", PASSWORD).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.text);
    let line = signed.cookie_line("ferrum_session").expect("a session cookie").to_owned();
    assert!(line.contains("HttpOnly") && line.contains("SameSite=Lax") && line.contains("Path=/"), "{line}");
    assert!(!line.contains("Secure"), "http:// portal: no Secure flag ({line})");
    let session = browser.cookies["ferrum_session"].clone();
    assert_ne!(session, "ferrum_planted");
    let home = browser.get("/").await;
    assert!(home.text.contains("Welcome, alice"), "{}", home.text);
    assert!(home.text.contains("p-vision"), "{}", home.text);
    let csp = reqwest::get(format!("{}/", ctx.url)).await.expect("home");
    let policy = csp.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");

    // The API never takes the session cookie.
    let api = reqwest::Client::new()
        .get(format!("{}/api/v1/users/me", ctx.url))
        .header(COOKIE, format!("ferrum_session={session}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);

    // Sign-out ends the session on the server, not only in this browser.
    let csrf = home.field("csrf");
    let out = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let mut replay = Browser::new(&ctx);
    replay.cookies.insert("ferrum_session".into(), session);
    let after = replay.get("/profile").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location.as_deref(), Some("/login?next=%2Fprofile"));
    // A form posted once the session ended: sign in, then home (its
    // address takes POST only).
    let late = replay.post("/profile/tokens", &[("csrf", &csrf), ("name", "laptop")]).await;
    assert_eq!((late.status, late.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login?next=%2F")));
}

#[tokio::test]
async fn forms_without_their_anti_forgery_token_change_nothing() {
    let ctx = TestContext::empty().await;
    let alice = ctx.user("alice", "p-vision").await;
    let url = activation_url(&ctx, "alice").await;
    let mut browser = Browser::new(&ctx);
    assert_eq!(browser.activate(&url, PASSWORD).await.status, StatusCode::SEE_OTHER);

    // A sign-in form posted from elsewhere has no form cookie: refused.
    let mut elsewhere = Browser::new(&ctx);
    let forged = elsewhere.post("/login", &[("form_token", "x"), ("next", "/"), ("name", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.text.contains("did not come from this site"), "{}", forged.text);
    assert!(forged.cookie_line("ferrum_session").is_none());

    assert_eq!(browser.sign_in("alice", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let before = ctx.get("/api/v1/users/alice/tokens", &alice).await.expect(200).as_array().map(Vec::len);
    for csrf in ["", "ferrum_guess"] {
        let refused = browser.post("/profile/tokens", &[("csrf", csrf), ("name", "stolen")]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    }
    assert_eq!(ctx.get("/api/v1/users/alice/tokens", &alice).await.expect(200).as_array().map(Vec::len), before);

    // With the session's token: created, shown once, and it works.
    let profile = browser.get("/profile").await;
    let csrf = profile.field("csrf");
    let made = browser.post("/profile/tokens", &[("csrf", &csrf), ("name", "laptop"), ("expires_in", "30d")]).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let start = made.text.find("<code id=\"new-token\">").expect("the token shown") + "<code id=\"new-token\">".len();
    let secret = made.text[start..].split('<').next().expect("token text").to_owned();
    assert_eq!(ctx.get("/api/v1/users/me", &secret).await.expect(200)["name"], "alice");
    assert!(!browser.get("/profile").await.text.contains(&secret), "a token is shown once");
    // A bad lifetime is said beside the form.
    let bad = browser.post("/profile/tokens", &[("csrf", &csrf), ("expires_in", "soon")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.text.contains("<p class=\"error\" role=\"alert\" id=\"token-expires-error\">expires_in: "),
        "beside its field: {}",
        bad.text
    );
    assert!(bad.text.contains("value=\"soon\" aria-invalid=\"true\" aria-describedby=\"token-expires-error\""), "as typed: {}", bad.text);
}

#[tokio::test]
async fn sign_in_is_throttled_per_account_and_per_address() {
    let mut config = Config::default();
    config.web.login_burst_per_account = 3;
    config.web.login_burst_per_address = 5;
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    ctx.user("alice", "p-vision").await;
    ctx.user("bob", "p-vision").await;
    let mut browser = Browser::new(&ctx);
    assert_eq!(browser.activate(&activation_url(&ctx, "alice").await, PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.activate(&activation_url(&ctx, "bob").await, PASSWORD).await.status, StatusCode::SEE_OTHER);
    for _ in 0..3 {
        assert_eq!(browser.sign_in("alice", "guess guess guess").await.status, StatusCode::UNAUTHORIZED);
    }
    // Alice's account is out of attempts, even with her password.
    let held = browser.sign_in("alice", PASSWORD).await;
    assert_eq!(held.status, StatusCode::TOO_MANY_REQUESTS, "{}", held.text);
    assert!(held.text.contains("too many sign-in attempts: try again in"), "{}", held.text);
    // Bob, from the same address, still signs in, then the address is out too.
    assert_eq!(browser.sign_in("bob", PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.sign_in("bob", PASSWORD).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn ssh_keys_are_checked_fingerprinted_and_private() {
    let ctx = TestContext::empty().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    // A real key, fingerprinted by ssh-keygen as the reference.
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f"])
        .arg(&key_file)
        .status()
        .expect("ssh-keygen runs");
    assert!(made.success());
    let public = std::fs::read_to_string(key_file.with_extension("pub")).expect("public key");
    let listed = std::process::Command::new("ssh-keygen").arg("-lf").arg(key_file.with_extension("pub")).output().expect("ssh-keygen -l");
    let expected = String::from_utf8_lossy(&listed.stdout).split_whitespace().nth(1).expect("fingerprint").to_owned();

    let key = ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"name": "laptop", "public_key": public})).await.expect(201);
    assert_eq!(key["fingerprint"], expected.as_str());
    assert_eq!(key["public_key"], public.trim());
    let again = ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"public_key": public})).await.error(409, "conflict");
    assert!(again.contains(&expected), "{again}");
    let bad = ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"public_key": "ssh-ed25519 AAAAnot-base64"})).await;
    assert!(bad.error(400, "bad_request").starts_with("public_key: not an OpenSSH public key"));
    // Nobody else's business.
    ctx.get("/api/v1/users/alice/ssh-keys", &bob).await.error(403, "forbidden");
    ctx.post("/api/v1/users/alice/ssh-keys", &bob, json!({"public_key": public})).await.error(403, "forbidden");
    let id = key["id"].as_i64().expect("id");
    ctx.delete(&format!("/api/v1/users/alice/ssh-keys/{id}"), &bob).await.error(403, "forbidden");
    ctx.delete(&format!("/api/v1/users/bob/ssh-keys/{id}"), &bob).await.error(404, "not_found");
    let keys = ctx.get("/api/v1/users/alice/ssh-keys", &alice).await.expect(200);
    assert_eq!(keys.as_array().map(Vec::len), Some(1));

    // The profile page lists it; removing it there needs the session's token.
    let mut browser = Browser::new(&ctx);
    assert_eq!(browser.activate(&activation_url(&ctx, "alice").await, PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.sign_in("alice", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let profile = browser.get("/profile").await;
    assert!(profile.text.contains(&expected), "{}", profile.text);
    let csrf = profile.field("csrf");
    assert_eq!(browser.post(&format!("/profile/keys/{id}/delete"), &[("csrf", "")]).await.status, StatusCode::FORBIDDEN);
    assert_eq!(browser.post(&format!("/profile/keys/{id}/delete"), &[("csrf", &csrf)]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(ctx.get("/api/v1/users/alice/ssh-keys", &alice).await.expect(200), json!([]));
    // A bad key pasted in the form is said beside it.
    let pasted = browser.post("/profile/keys", &[("csrf", &csrf), ("public_key", "hello")]).await;
    assert_eq!(pasted.status, StatusCode::BAD_REQUEST);
    assert!(pasted.text.contains("id=\"key-text-error\">public_key: not an OpenSSH public key"), "beside its field: {}", pasted.text);
    assert!(pasted.text.contains("aria-describedby=\"key-text-error\">hello</textarea>"), "what was pasted stays: {}", pasted.text);
}

#[tokio::test]
async fn a_disabled_users_session_stops_and_unknown_pages_are_pages() {
    let ctx = TestContext::empty().await;
    ctx.user("alice", "p-vision").await;
    let mut browser = Browser::new(&ctx);
    assert_eq!(browser.activate(&activation_url(&ctx, "alice").await, PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.sign_in("alice", PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/profile").await.status, StatusCode::OK);
    ctx.post("/api/v1/users/alice/disable", &ctx.admin, json!({"reason": "left the lab"})).await.expect(200);
    assert_eq!(browser.get("/profile").await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.sign_in("alice", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    // A portal path nothing answers is a page; an API path stays JSON.
    let missing = browser.get("/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text.contains("<h1>Not found</h1>"), "{}", missing.text);
    let api = ctx.get("/api/v1/nothing", &ctx.admin).await;
    assert_eq!(api.error(404, "not_found"), "no endpoint at /api/v1/nothing (see /api/v1/openapi.json)");
}

#[tokio::test]
async fn an_account_request_is_paperless_from_form_to_first_sign_in() {
    let smtp = super::smtp::Smtp::start().await;
    let mut config = Config::default();
    config.mail.smtp_url = Some(smtp.url());
    config.mail.from = "ferrum <ferrum@testbed.example>".into();
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let mut browser = Browser::new(&ctx);

    let form = browser.get("/request-account").await;
    assert_eq!(form.status, StatusCode::OK);
    let fields = |token: &str, status: &str| {
        vec![
            ("form_token".to_owned(), token.to_owned()),
            ("name".to_owned(), "carol".to_owned()),
            ("email".to_owned(), "carol@uni.example".to_owned()),
            ("affiliation".to_owned(), "Université de Nantes".to_owned()),
            ("status".to_owned(), status.to_owned()),
            ("project".to_owned(), "p-robots".to_owned()),
            ("motivation".to_owned(), "Benchmarking ROS 2 planners on GPUs for my thesis.".to_owned()),
        ]
    };
    let post = async |browser: &mut Browser, fields: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        browser.post("/request-account", &pairs).await
    };
    // A refusal keeps what was typed and says what to fix.
    let refused = post(&mut browser, fields(&form.field("form_token"), "")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text.contains("<p class=\"error\" role=\"alert\" id=\"status-error\">status: choose what you are</p>\n<select id=\"status\" name=\"status\" required aria-invalid=\"true\" aria-describedby=\"status-error\">"), "beside its field: {}", refused.text);
    assert!(refused.text.contains("Université de Nantes"), "typed values are kept: {}", refused.text);
    // The application's refusal too, beside the field it names.
    let mut bad_mail = fields(&refused.field("form_token"), "student");
    bad_mail[2].1 = "carol-at-uni".to_owned();
    let refused = post(&mut browser, bad_mail).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text.contains("id=\"email-error\">email: "), "{}", refused.text);
    assert!(refused.text.contains("value=\"carol-at-uni\" aria-invalid=\"true\" aria-describedby=\"email-error\""), "{}", refused.text);
    let sent = post(&mut browser, fields(&refused.field("form_token"), "student")).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    assert!(sent.text.contains("We sent a mail to carol@uni.example"), "{}", sent.text);

    // The mail's link confirms the address; following it alone does not.
    let mail = smtp.wait_for("carol@uni.example", "/verify-email/").await;
    assert!(mail.contains("From: ferrum <ferrum@testbed.example>"), "{mail}");
    let verify = super::smtp::link(&mail, &format!("{}/verify-email/", ctx.url));
    let path = verify.trim_start_matches(&ctx.url).to_owned();
    let requests = ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200);
    assert_eq!(requests[0]["status"], "student");
    assert!(requests[0].get("email_verified_at").is_none(), "{requests}");
    let page = browser.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200)[0].get("email_verified_at").is_none());
    let confirmed = browser.post(&path, &[("form_token", &page.field("form_token"))]).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text);
    assert!(confirmed.text.contains("carol@uni.example is confirmed"), "{}", confirmed.text);
    let request = ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200)[0].clone();
    assert!(request["email_verified_at"].is_string(), "{request}");
    let again = browser.get(&path).await;
    assert_eq!(browser.post(&path, &[("form_token", &again.field("form_token"))]).await.status, StatusCode::NOT_FOUND);

    // Approval mails the activation link (the admin's answer does not hold it).
    let approved = ctx.post(&format!("/api/v1/account-requests/{}/approve", request["id"]), &ctx.admin, json!({})).await.expect(201);
    assert!(approved.get("activation_url").is_none(), "mailed, not shown: {approved}");
    let mail = smtp.wait_for("carol@uni.example", "/activate/").await;
    let url = super::smtp::link(&mail, &format!("{}/activate/", ctx.url));
    assert_eq!(browser.activate(&url, PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.sign_in("carol", PASSWORD).await.status, StatusCode::SEE_OTHER);
    let home = browser.get("/").await;
    assert!(home.text.contains("Welcome, carol") && home.text.contains("p-robots"), "{}", home.text);
}

#[tokio::test]
async fn without_a_mail_server_the_admin_is_given_the_activation_link() {
    let ctx = TestContext::empty().await;
    let mut browser = Browser::new(&ctx);
    let form = browser.get("/request-account").await;
    let sent = browser
        .post(
            "/request-account",
            &[
                ("form_token", &form.field("form_token")),
                ("name", "dan"),
                ("email", "dan@startup.example"),
                ("affiliation", "Robotix SAS"),
                ("status", "startup"),
                ("project", "p-robotix"),
                ("motivation", "Evaluating an FPGA accelerator before we buy it."),
            ],
        )
        .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
    assert!(sent.text.contains("An admin decides on your request"), "{}", sent.text);
    let request = ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200)[0].clone();
    assert_eq!(request["status"], "startup");
    let approved = ctx.post(&format!("/api/v1/account-requests/{}/approve", request["id"]), &ctx.admin, json!({})).await.expect(201);
    let url = approved["activation_url"].as_str().expect("the link, for the admin to pass on").to_owned();
    assert_eq!(browser.activate(&url, PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.sign_in("dan", PASSWORD).await.status, StatusCode::SEE_OTHER);
}

/// A public account request (the API's form), its id.
async fn account_request(ctx: &TestContext, name: &str) -> i64 {
    let ask = json!({"name": name, "email": format!("{name}@uni.example"), "affiliation": "Université de Nantes", "status": "student",
        "project": "p-robots", "motivation": "Benchmarking ROS 2 planners on GPUs for my thesis."});
    let sent = ctx.request(reqwest::Method::POST, "/api/v1/account-requests", None, Some(&ask)).await.expect(202);
    sent["id"].as_i64().expect("id")
}

async fn request_state(ctx: &TestContext, id: i64) -> Value {
    ctx.get(&format!("/api/v1/account-requests/{id}"), &ctx.admin).await.expect(200)
}

#[tokio::test]
async fn an_admin_decides_account_requests_in_the_portal() {
    let ctx = TestContext::empty().await;
    ctx.user("alice", "p-vision").await;
    let erin = account_request(&ctx, "erin").await;
    let fred = account_request(&ctx, "fred").await;
    let mut admin = signed_in(&ctx, "admin").await;
    assert!(admin.get("/").await.text.contains("<a href=\"/admin\">Admin</a>"), "admins have the Admin entry");
    let index = admin.get("/admin").await;
    assert_eq!(index.status, StatusCode::OK, "{}", index.text);
    assert!(index.text.contains("Account requests</a>: 2 waiting") && index.text.contains("0 waiting"), "{}", index.text);
    let queue = admin.get("/admin/account-requests").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text);
    for fact in [
        &format!("Request {erin}: erin") as &str,
        "<dd>erin@uni.example</dd>",
        "<dt>E-mail confirmed</dt><dd>no: no mail server is configured</dd>",
        "Université de Nantes",
        "<dd>Student</dd>",
        "<dd>p-robots</dd>",
        "Benchmarking ROS 2 planners on GPUs for my thesis.",
        "2026-",
    ] {
        assert!(queue.text.contains(fact), "{fact} in {}", queue.text);
    }
    let csrf = queue.field("csrf");
    // Each page shows the session's token masked afresh (pages are
    // gzipped: no fixed secret in them); every masking of it is accepted.
    let remasked = admin.get("/admin/account-requests").await.field("csrf");
    assert_ne!(csrf, remasked);

    // Users have no Admin entry, get a 403 page in words, and their forms
    // (with their own session's token) change nothing.
    let mut alice = signed_in(&ctx, "alice").await;
    let home = alice.get("/").await;
    assert!(home.text.contains("Welcome, alice") && !home.text.contains("/admin"), "{}", home.text);
    for (path, why) in [
        ("/admin", "this operation is for admins"),
        ("/admin/account-requests", "account requests are decided by admins and by the managers of the projects asked for"),
        ("/admin/leases", "this operation is for admins"),
    ] {
        let refused = alice.get(path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert!(refused.text.contains("<h1>Not allowed</h1>") && refused.text.contains(why), "{}", refused.text);
        assert!(!refused.text.contains("erin"), "{}", refused.text);
    }
    let her_csrf = home.field("csrf");
    let refused = alice.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", &her_csrf)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let refused = alice.post(&format!("/admin/account-requests/{erin}/reject"), &[("csrf", &her_csrf), ("reason", "no")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    // Without the session's anti-forgery token, not even an admin's form.
    for token in ["", "ferrum_guess"] {
        let forged = admin.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", token)]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
        assert!(forged.text.contains("did not come from this site"), "{}", forged.text);
    }
    assert_eq!(request_state(&ctx, erin).await["state"], "pending");

    // A rejection needs a reason: said beside the field, the request stays.
    let empty = admin.post(&format!("/admin/account-requests/{fred}/reject"), &[("csrf", &csrf), ("reason", "  ")]).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.text);
    assert!(empty.text.contains(&format!("id=\"reject-{fred}-error\">reason: 1 to 1000 characters of text</p>")), "{}", empty.text);
    assert!(empty.text.contains(&format!("aria-describedby=\"reject-{fred}-error\"")), "{}", empty.text);
    assert_eq!(request_state(&ctx, fred).await["state"], "pending");
    let rejected =
        admin.post(&format!("/admin/account-requests/{fred}/reject"), &[("csrf", &remasked), ("reason", "no such thesis")]).await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER, "{}", rejected.text);
    assert_eq!(rejected.location.as_deref(), Some(format!("/admin/account-requests?rejected={fred}").as_str()));
    let after = admin.get(rejected.location.as_deref().expect("location")).await;
    assert!(after.text.contains(&format!("Request {fred} rejected.")) && !after.text.contains("Request {fred}: fred"), "{}", after.text);
    let fred_row = request_state(&ctx, fred).await;
    assert_eq!((fred_row["state"].as_str(), fred_row["reason"].as_str()), (Some("rejected"), Some("no such thesis")));

    // Approval without a mail server: the admin is given the activation
    // link (kept out of caches), never the first API token.
    let approved = admin.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert_eq!(approved.cache_control.as_deref(), Some("no-store"));
    assert!(approved.text.contains("User <strong>erin</strong> is created, in project <strong>p-robots</strong>"), "{}", approved.text);
    assert!(approved.text.contains("No mail server is configured"), "{}", approved.text);
    let start = approved.text.find("<code id=\"activation-url\">").expect("the link shown") + "<code id=\"activation-url\">".len();
    let url = approved.text[start..].split('<').next().expect("link text").to_owned();
    assert!(url.starts_with(&format!("{}/activate/ferrum_", ctx.url)), "{url}");
    assert_eq!(approved.text.matches("ferrum_").count(), 1, "the link, nothing else (the session's token is masked): {}", approved.text);
    assert_eq!(request_state(&ctx, erin).await["state"], "approved");
    // Deciding again: the queue, with why at its top.
    let again = admin.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("this account request was already decided"), "{}", again.text);
    assert!(again.text.contains("No account request is waiting."), "{}", again.text);

    let mut erin_browser = Browser::new(&ctx);
    assert_eq!(erin_browser.activate(&url, PASSWORD).await.status, StatusCode::SEE_OTHER);
    assert_eq!(erin_browser.sign_in("erin", PASSWORD).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_project_manager_decides_the_requests_to_join_it_in_the_portal() {
    let ctx = TestContext::empty().await;
    ctx.user("lea", "p-robots").await;
    ctx.patch("/api/v1/projects/p-robots", &ctx.admin, json!({"manager": "lea"})).await.expect(200);
    let erin = account_request(&ctx, "erin").await;
    let ask = json!({"name": "zoe", "email": "zoe@uni.example", "affiliation": "Nantes", "project": "p-new", "motivation": "A new project of mine."});
    ctx.request(reqwest::Method::POST, "/api/v1/account-requests", None, Some(&ask)).await.expect(202);

    // Her home page points to the queue, which shows her project's request
    // only, without the admin's links.
    let mut lea = signed_in(&ctx, "lea").await;
    let home = lea.get("/").await;
    assert!(
        home.text.contains("<a href=\"/admin/account-requests\">1 account request to join it</a> waits for your decision"),
        "{}",
        home.text
    );
    assert!(!home.text.contains("<a href=\"/admin\">"), "no Admin entry: {}", home.text);
    let queue = lea.get("/admin/account-requests").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text);
    assert!(queue.text.contains(&format!("Request {erin}: erin")), "{}", queue.text);
    assert!(!queue.text.contains("zoe") && !queue.text.contains("/admin/leases"), "{}", queue.text);
    let approved = lea.post(&format!("/admin/account-requests/{erin}/approve"), &[("csrf", &queue.field("csrf"))]).await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert!(approved.text.contains("User <strong>erin</strong> is created, in project <strong>p-robots</strong>"), "{}", approved.text);
    assert_eq!(request_state(&ctx, erin).await["state"], "approved");
    assert!(lea.get("/").await.text.contains("0 account requests to join it</a> wait for your decision"));
}

#[tokio::test]
async fn an_approval_in_the_portal_mails_the_activation_link() {
    let smtp = super::smtp::Smtp::start().await;
    let mut config = Config::default();
    config.mail.smtp_url = Some(smtp.url());
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let id = account_request(&ctx, "gina").await;
    let mut admin = signed_in(&ctx, "admin").await;
    let queue = admin.get("/admin/account-requests").await;
    assert!(queue.text.contains("<dd>gina@uni.example</dd>\n<dt>E-mail confirmed</dt><dd>not yet</dd>"), "{}", queue.text);
    // Gina follows the mail's link: the queue says so.
    let mail = smtp.wait_for("gina@uni.example", "/verify-email/").await;
    let path = super::smtp::link(&mail, &format!("{}/verify-email/", ctx.url)).trim_start_matches(&ctx.url).to_owned();
    let mut gina = Browser::new(&ctx);
    let form = gina.get(&path).await;
    assert_eq!(gina.post(&path, &[("form_token", &form.field("form_token"))]).await.status, StatusCode::OK);
    let queue = admin.get("/admin/account-requests").await;
    assert!(queue.text.contains("<dt>E-mail confirmed</dt><dd>yes, on 2026-"), "{}", queue.text);
    let approved = admin.post(&format!("/admin/account-requests/{id}/approve"), &[("csrf", &queue.field("csrf"))]).await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert!(approved.text.contains("The link where gina sets their password was mailed to gina@uni.example."), "{}", approved.text);
    assert!(!approved.text.contains("/activate/"), "mailed, not shown: {}", approved.text);
    let mail = smtp.wait_for("gina@uni.example", "/activate/").await;
    let url = super::smtp::link(&mail, &format!("{}/activate/", ctx.url));
    assert_eq!(gina.activate(&url, PASSWORD).await.status, StatusCode::SEE_OTHER);
}

/// The fixtures' nodes, and leases above 10 node-hours waiting for an
/// admin (at least an hour before their start).
async fn with_approval_threshold() -> TestContext {
    let policy = ferrum_controller::config::PolicyConfig {
        approval_threshold_node_hours: 10.0,
        approval_notice: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let ctx = TestContext::empty_configured(Config { policy, ..Config::default() }, std::sync::Arc::new(SimConductor)).await;
    ctx.import_fixtures().await;
    ctx.wait_nodes_available(10).await;
    ctx
}

#[tokio::test]
async fn an_admin_decides_waiting_leases_in_the_portal() {
    let ctx = with_approval_threshold().await;
    let alice = ctx.user("alice", "p-vision").await;
    // 2 nodes x 6h = 12 node-hours > 10: waits for an admin.
    let big = json!({"name": "big-run", "nodes": {"names": ["chifflot-1", "chifflot-2"]}, "start": at(chrono::Duration::hours(2)), "duration": "6h"});
    let big = ctx.post("/api/v1/leases", &alice, big).await.expect(201);
    assert_eq!(big["state"], "awaiting_approval");
    let big = big["id"].as_i64().expect("id");
    let other = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 3}, "duration": "4h"})).await.expect(201);
    let other = other["id"].as_i64().expect("id");
    let state = async |id: i64| ctx.lease(id, &alice).await;

    let mut admin = signed_in(&ctx, "admin").await;
    let queue = admin.get("/admin/leases").await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.text);
    for fact in [
        &format!("Lease {big} (big-run) by alice") as &str,
        "<dd>alice, project p-vision</dd>",
        "<dd>2: chifflot-1, chifflot-2</dd>",
        "<dd>12</dd>",
        "12 node-hours is above the approval threshold of 10 node-hours",
        &format!("Lease {other} by alice"),
    ] {
        assert!(queue.text.contains(fact), "{fact} in {}", queue.text);
    }
    let csrf = queue.field("csrf");

    // A user: 403, and her own session's token changes nothing.
    let mut user = signed_in(&ctx, "alice").await;
    let her_csrf = user.get("/").await.field("csrf");
    for decision in ["approve", "reject"] {
        let refused = user.post(&format!("/admin/leases/{big}/{decision}"), &[("csrf", &her_csrf)]).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    }
    // No anti-forgery token: refused.
    let forged = admin.post(&format!("/admin/leases/{big}/approve"), &[("reason", "ok")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    assert_eq!(state(big).await["state"], "awaiting_approval");

    // A note the application refuses is said beside its field, as typed.
    let bad = admin.post(&format!("/admin/leases/{big}/approve"), &[("csrf", &csrf), ("reason", "fine\u{202e}")]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    assert!(bad.text.contains(&format!("id=\"approve-{big}-error\">reason: ")), "{}", bad.text);
    assert!(bad.text.contains(&format!("aria-describedby=\"approve-{big}-error\"")), "{}", bad.text);
    assert_eq!(state(big).await["state"], "awaiting_approval");

    let approved = admin.post(&format!("/admin/leases/{big}/approve"), &[("csrf", &csrf), ("reason", "fine for the paper")]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.text);
    assert_eq!(approved.location.as_deref(), Some(format!("/admin/leases?approved={big}").as_str()));
    let lease = state(big).await;
    assert_eq!((lease["state"].as_str(), lease["reason"].as_str()), (Some("pending"), Some("approved by admin: fine for the paper")));
    let after = admin.get(approved.location.as_deref().expect("location")).await;
    assert!(after.text.contains(&format!("Lease {big} approved: it starts on time.")), "{}", after.text);
    assert!(!after.text.contains(&format!("Lease {big} (big-run)")), "it left the queue: {}", after.text);

    let rejected = admin.post(&format!("/admin/leases/{other}/reject"), &[("csrf", &csrf), ("reason", "")]).await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER, "{}", rejected.text);
    let lease = state(other).await;
    assert_eq!((lease["state"].as_str(), lease["reason"].as_str()), (Some("rejected"), Some("rejected by admin")));
    // A lease decided already: the queue, with why at its top.
    let again = admin.post(&format!("/admin/leases/{big}/reject"), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("No lease is waiting."), "{}", again.text);
}

/// A portal page is well under 200 KB.
const PAGE_BUDGET: usize = 200 * 1024;

/// `text` encoded for a URL's query.
fn query(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `text` as askama writes it in a page (HTML-escaped).
fn escaped(text: &str) -> String {
    text.replace('&', "&#38;").replace('<', "&#60;").replace('>', "&#62;").replace('"', "&#34;").replace('\'', "&#39;")
}

#[tokio::test]
async fn the_hardware_catalog_shows_each_clusters_facts_to_signed_in_users() {
    let ctx = TestContext::with_fixtures().await;
    ctx.user("alice", "p-vision").await;
    // Signed out: the sign-in page, then back; no "Hardware" entry.
    let mut anonymous = Browser::new(&ctx);
    let away = anonymous.get("/hardware").await;
    assert_eq!((away.status, away.location.as_deref()), (StatusCode::SEE_OTHER, Some("/login?next=%2Fhardware")));
    assert!(!anonymous.get("/").await.text.contains("href=\"/hardware\""));

    let mut alice = signed_in(&ctx, "alice").await;
    assert!(alice.get("/").await.text.contains("<a href=\"/hardware\">Hardware</a>"), "the navigation has Hardware");
    let catalog = alice.get("/hardware").await;
    assert_eq!(catalog.status, StatusCode::OK, "{}", catalog.text);
    assert!(catalog.text.len() < PAGE_BUDGET, "{} bytes", catalog.text.len());
    assert!(catalog.text.contains("<a href=\"/hardware\" aria-current=\"page\">Hardware</a>"));
    let section = |name: &str| -> String {
        let start = catalog.text.find(&format!("id=\"cluster-{name}\"")).unwrap_or_else(|| panic!("no cluster {name}: {}", catalog.text));
        catalog.text[start..].split("</section>").next().unwrap_or_default().to_owned()
    };
    let chifflot = section("chifflot");
    for fact in [
        "<dt>Nodes</dt><dd>8</dd>",
        "<dt>By state</dt><dd>8 available</dd>",
        "<dd>Intel Xeon Gold 6126 (Skylake-SP)</dd>",
        "<dd>24 (2 CPUs × 12)</dd>",
        "<dd>192 GiB</dd>",
        "2 × Tesla P100-PCIE-16GB (16 GiB each) on 6 nodes; 2 × Tesla V100-PCIE-32GB (32 GiB each) on 2 nodes",
        "<dt>FPGAs and other accelerators</dt><dd>none</dd>",
        "Gbit/s Ethernet",
        "<dt>Exotic</dt><dd>no</dd>",
    ] {
        assert!(chifflot.contains(fact), "chifflot: {fact} in {chifflot}");
    }
    let servan = section("servan");
    for fact in ["<dd>2</dd>", "<dd>128 GiB</dd>", "1 × Alveo U200 (fpga)", "<dt>GPUs</dt><dd>none</dd>", "yes: prototype hardware"] {
        assert!(servan.contains(fact), "servan: {fact} in {servan}");
    }
    assert!(catalog.text.contains("Site grenoble (2 nodes)") && catalog.text.contains("Site lille (8 nodes)"), "{}", catalog.text);
    // The helpers offer the clusters and GPU models there are.
    for option in ["<option value=\"chifflot\">", "<option value=\"servan\">", "<option value=\"Tesla V100-PCIE-32GB\">"] {
        assert!(catalog.text.contains(option), "{option}");
    }
    // The scripts are files of this origin (the CSP refuses inline ones):
    // the shared live count first, then the builder that uses it.
    assert!(
        catalog
            .text
            .contains("<script src=\"/static/filter-count.js\" defer></script>\n<script src=\"/static/hardware.js\" defer></script>")
    );
    let script = reqwest::get(format!("{}/static/filter-count.js", ctx.url)).await.expect("script");
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(script.text().await.expect("text").contains("/hardware/_count"));
    let script = reqwest::get(format!("{}/static/hardware.js", ctx.url)).await.expect("script");
    assert!(script.text().await.expect("text").contains("window.ferrumFilterCount("));

    // A cluster's page: its nodes in natural order, each with its state.
    let cluster = alice.get("/hardware/chifflot").await;
    assert_eq!(cluster.status, StatusCode::OK, "{}", cluster.text);
    assert!(cluster.text.len() < PAGE_BUDGET);
    let rows: Vec<&str> = cluster.text.match_indices("<a href=\"/hardware/nodes/").map(|(i, _)| &cluster.text[i + 25..i + 36]).collect();
    assert_eq!(rows.len(), 8, "{}", cluster.text);
    assert!(rows[0].starts_with("chifflot-1\"") && rows[7].starts_with("chifflot-8\""), "{rows:?}");
    assert!(cluster.text.contains("<td>available</td><td>192 GiB</td><td>2 × Tesla V100-PCIE-32GB (32 GiB each)</td>"), "{}", cluster.text);
    // Its calendar, and a node's, are a link away (the calendar takes the
    // same filter language).
    assert!(cluster.text.contains("<a href=\"/calendar?filter=cluster+%3D+%27chifflot%27\">"), "{}", cluster.text);
    let node = alice.get("/hardware/nodes/chifflot-3").await;
    assert!(node.text.contains("<a href=\"/calendar?filter=host+%3D+%27chifflot-3%27\">"), "{}", node.text);
    let calendar = alice.get("/calendar?filter=host+%3D+%27chifflot-3%27").await;
    assert_eq!(calendar.status, StatusCode::OK, "{}", calendar.text);
    assert!(calendar.text.contains("chifflot-3") && !calendar.text.contains("chifflot-4"), "{}", calendar.text);
    let unknown = alice.get("/hardware/nowhere").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.text.contains("there is no cluster &#39;nowhere&#39;"), "{}", unknown.text);
    assert_eq!(alice.get("/hardware/nodes/nowhere-1").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_filter_builder_counts_what_the_api_counts_and_says_why_a_filter_is_wrong() {
    let ctx = TestContext::with_fixtures().await;
    let token = ctx.user("alice", "p-vision").await;
    let mut alice = signed_in(&ctx, "alice").await;
    for filter in [
        "gpu_count >= 2 AND cluster IN ('chifflot')",
        "gpu_model LIKE '%V100%'",
        "exotic",
        "memnode >= 150000 AND NOT exotic",
        "cluster = 'chifflot' OR accel_type = 'fpga'",
        "gpu_count > 2",
    ] {
        let api = ctx.get(&format!("/api/v1/nodes?filter={}", query(filter)), &token).await.expect(200);
        let expected = api.as_array().expect("nodes").len();
        let counted = alice.get(&format!("/hardware/_count?filter={}", query(filter))).await;
        assert_eq!(counted.status, StatusCode::OK, "{filter}: {}", counted.text);
        let counted: Value = serde_json::from_str(&counted.text).expect("JSON");
        assert_eq!(counted["count"], expected, "{filter}");
        // Without the script: the button asks the same of the page.
        let page = alice.get(&format!("/hardware?filter={}", query(filter))).await;
        assert_eq!(page.status, StatusCode::OK, "{filter}: {}", page.text);
        assert!(page.text.contains(&format!("Matching nodes: {expected} of 10.")), "{filter}: {}", page.text);
        assert!(page.text.contains(&format!("value=\"{}\"", escaped(filter))), "the filter stays in its field: {}", page.text);
    }
    let some = alice.get(&format!("/hardware?filter={}", query("gpu_model = 'Tesla V100-PCIE-32GB'"))).await;
    assert!(some.text.contains("<dt>Nodes</dt><dd>8; 2 match the filter (<a href=\"/hardware/chifflot?filter="), "{}", some.text);
    let listed = alice.get(&format!("/hardware/chifflot?filter={}", query("gpu_model = 'Tesla V100-PCIE-32GB'"))).await;
    assert!(listed.text.contains("2 of 8 nodes match"), "{}", listed.text);
    assert_eq!(listed.text.matches("<a href=\"/hardware/nodes/").count(), 2, "{}", listed.text);

    // A wrong filter: the parser's words beside the field, kept as typed.
    let typo = "gpu_cont >= 2";
    let api = ctx.get(&format!("/api/v1/nodes?filter={}", query(typo)), &token).await.error(400, "invalid_filter");
    let counted = alice.get(&format!("/hardware/_count?filter={}", query(typo))).await;
    assert_eq!(counted.status, StatusCode::BAD_REQUEST);
    let counted: Value = serde_json::from_str(&counted.text).expect("JSON");
    assert_eq!(counted["error"], api.as_str());
    assert_eq!(api, "filter: at position 1: unknown property 'gpu_cont'");
    let page = alice.get(&format!("/hardware?filter={}", query(typo))).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.text.contains("class=\"error\">filter: at position 1: unknown property &#39;gpu_cont&#39;</p>"), "{}", page.text);
    assert!(page.text.contains("aria-invalid=\"true\""), "{}", page.text);
    assert!(page.text.contains(&format!("value=\"{}\"", escaped(typo))), "{}", page.text);
    for (bad, words) in
        [("gpu_count >=", "expected a value"), ("(exotic", "to close the '(' at position 1"), ("exotic & gpu_count > 1", "write AND")]
    {
        let counted = alice.get(&format!("/hardware/_count?filter={}", query(bad))).await;
        assert_eq!(counted.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(counted.text.contains(words), "{bad}: {}", counted.text);
    }

    // The helpers write their conditions into the filter; a changed one
    // replaces its own, and the text typed stays.
    let first = alice.get("/hardware?filter=NOT+exotic&cluster=chifflot&min_gpus=2&min_memory=&gpu_model=").await;
    let composed = "NOT exotic AND cluster = 'chifflot' AND gpu_count >= 2";
    assert!(first.text.contains(&format!("value=\"{}\"", escaped(composed))), "{}", first.text);
    assert!(first.text.contains("Matching nodes: 8 of 10."), "{}", first.text);
    assert!(first.text.contains("<option value=\"chifflot\" selected>"), "{}", first.text);
    assert!(first.text.contains("name=\"prev_cluster\" value=\"chifflot\""), "{}", first.text);
    let changed = alice
        .get(&format!(
            "/hardware?filter={}&cluster=chifflot&min_gpus=2&gpu_model={}&min_memory=&prev_cluster=chifflot&prev_min_gpus=2",
            query(composed),
            query("Tesla V100-PCIE-32GB")
        ))
        .await;
    let composed = format!("{composed} AND gpu_model = 'Tesla V100-PCIE-32GB'");
    assert!(changed.text.contains(&format!("value=\"{}\"", escaped(&composed))), "{}", changed.text);
    assert!(changed.text.contains("Matching nodes: 2 of 10."), "{}", changed.text);
    let servan = alice.get(&format!("/hardware?filter={}&cluster=servan&prev_cluster=chifflot&prev_min_gpus=2", query(&composed))).await;
    let composed = "NOT exotic AND gpu_model = 'Tesla V100-PCIE-32GB' AND cluster = 'servan'";
    assert!(servan.text.contains(&format!("value=\"{}\"", escaped(composed))), "{}", servan.text);
    assert!(servan.text.contains("Matching nodes: 0 of 10."), "{}", servan.text);

    // The count takes a session; the API a token.
    let mut anonymous = Browser::new(&ctx);
    let refused = anonymous.get("/hardware/_count?filter=exotic").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(serde_json::from_str::<Value>(&refused.text).expect("JSON")["error"], "sign in again to count nodes");
}

#[tokio::test]
async fn a_node_page_shows_its_reference_beside_its_report_with_the_differences_marked() {
    let ctx = TestContext::with_fixtures().await;
    let alice_token = ctx.user("alice", "p-vision").await;
    ctx.user("bob", "p-other").await;
    // The agent found one GPU and 128 GiB where the reference says two
    // and 192 GiB.
    let store = ctx.store().await;
    let node = store.get_node("chifflot-7").await.expect("chifflot-7");
    let report = json!({"schema_version": 1, "agent_version": "test",
        "processor": {"other_description": "Intel(R) Xeon(R) Gold 6126 CPU @ 2.60GHz"},
        "architecture": {"nb_procs": 2, "nb_cores": 24, "nb_threads": 48}, "main_memory": {"ram_size": 137_438_953_472u64},
        "gpu_devices": {"nvidia0": {"model": "Tesla V100-PCIE-32GB", "vendor": "NVIDIA", "pci_address": "0000:3b:00.0", "vendor_id": "10de", "device_id": "1db6"}},
        "network_adapters": [{"device": "ens5f0", "mac": "3c:fd:fe:c1:70:90", "rate": 25_000_000_000u64}],
        "pci_ids_source": {"origin": "embedded"}});
    assert!(store.store_inventory(node.id, 1, &report.to_string(), 0).await.expect("stored"));
    // Alice's lease on it, in two hours.
    let lease = json!({"nodes": {"names": ["chifflot-7"]}, "duration": "1h", "start": at(chrono::Duration::hours(2))});
    let lease = ctx.post("/api/v1/leases", &alice_token, lease).await.expect(201)["id"].as_i64().expect("id");

    let mut alice = signed_in(&ctx, "alice").await;
    let page = alice.get("/hardware/nodes/chifflot-7").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.len() < PAGE_BUDGET, "{} bytes", page.text.len());
    assert!(page.text.contains("<a href=\"/hardware\" aria-current=\"true\">Hardware</a>"));
    let api = ctx.get("/api/v1/nodes/chifflot-7/inventory", &alice_token).await.expect(200);
    let differences = api["differences"].as_array().expect("differences");
    assert_eq!(differences.len(), 4, "GPU count, RAM, the disks, a NIC's MAC: {differences:?}");
    assert!(page.text.contains("✗ 4 differences from the reference"), "{}", page.text);
    for d in differences {
        let message = d["message"].as_str().expect("message");
        assert!(page.text.contains(&format!("<li>{}</li>", escaped(message))), "{message} in {}", page.text);
    }
    // Each differing row is marked in words, not by colour alone.
    for row in [
        "<tr class=\"differs\"><th scope=\"row\">RAM</th><td>192 GiB</td><td>128 GiB</td><td>✗ differs</td></tr>",
        "<tr class=\"differs\"><th scope=\"row\">Count</th><td>2</td><td>1</td><td>✗ differs</td></tr>",
        "<tr class=\"agrees\"><th scope=\"row\">Cores</th><td>24</td><td>24</td><td>✓ agrees</td></tr>",
    ] {
        assert!(page.text.contains(row), "{row} in {}", page.text);
    }
    assert!(page.text.contains("<td>Tesla V100-PCIE-32GB, 32 GiB</td><td>Tesla V100-PCIE-32GB, NVIDIA at 0000:3b:00.0</td>"));
    // State, events, the lease, the properties a filter sees.
    assert!(page.text.contains("<dt>State</dt><dd>available</dd>"), "{}", page.text);
    // (The admin's import shows as the admin's, its reason for admins.)
    assert!(page.text.contains("<td>enrolling</td><td>available</td><td>system</td>"), "{}", page.text);
    assert!(page.text.contains("<td>admin</td><td>(shown to admins only)</td>"), "{}", page.text);
    assert!(page.text.contains(&format!("<td>default</td><td>pending</td><td>yours (lease {lease})</td>")), "{}", page.text);
    assert!(page.text.contains("<th scope=\"row\"><code>gpu_model</code></th><td><code>&#39;Tesla V100-PCIE-32GB&#39;</code></td>"));
    // Bob sees that the node is taken, not by whom.
    let mut bob = signed_in(&ctx, "bob").await;
    let seen = bob.get("/hardware/nodes/chifflot-7").await;
    assert!(seen.text.contains("<td>pending</td><td>another user&#39;s</td>"), "{}", seen.text);
    assert!(!seen.text.contains("alice") && !seen.text.contains(&format!("lease {lease}")), "{}", seen.text);
    // No report yet: the reference alone, nothing marked.
    let bare = alice.get("/hardware/nodes/chifflot-1").await;
    assert!(bare.text.contains("No agent has reported this node's hardware yet"), "{}", bare.text);
    assert!(!bare.text.contains("class=\"differs\"") && !bare.text.contains("class=\"agrees\""), "{}", bare.text);
    assert!(!bare.text.contains("Reported by the agent") && bare.text.contains("<td>192 GiB</td>"), "{}", bare.text);
}

#[tokio::test]
async fn the_catalog_of_a_whole_grid5000_stays_well_under_its_page_budget() {
    let ctx = TestContext::empty().await;
    ctx.user("alice", "p-vision").await;
    // 940 nodes in 59 clusters over 12 sites, as big as Grid'5000.
    let dir = tempfile::tempdir().expect("tempdir");
    ferrum_controller::reference::synthesize_tree(&super::harness::fixtures(), dir.path(), 940).expect("a synthesized tree");
    let nodes = ferrum_controller::reference::read_tree(dir.path()).expect("readable");
    let upload = ferrum_api::NodeImport {
        nodes: nodes
            .into_iter()
            .map(|d| ferrum_api::ReferenceNode { site: d.site, cluster: d.cluster, description: d.reference })
            .collect(),
    };
    ctx.post("/api/v1/nodes/import", &ctx.admin, serde_json::to_value(&upload).expect("json")).await.expect(200);
    let mut alice = signed_in(&ctx, "alice").await;
    for path in ["/hardware", "/hardware?filter=gpu_count+%3E%3D+2&min_memory=64", "/hardware/chifflot3", "/hardware/nodes/chifflot3-16"] {
        let page = alice.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        assert!(page.text.len() < PAGE_BUDGET / 2, "{path}: {} bytes", page.text.len());
    }
    let catalog = alice.get("/hardware").await;
    assert_eq!(catalog.text.matches("class=\"item cluster\"").count(), 59);
}

/// The calendar page draws what `GET /api/v1/calendar` shows the same
/// user (others' leases as busy time, nameless), finds the slot
/// `/availability` finds, books it in one click, and says a refusal beside
/// the field it concerns.
#[tokio::test]
async fn the_calendar_draws_the_api_view_and_books_the_earliest_slot() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob_token = ctx.user("bob", "p-other").await;
    let lease =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-7", "chifflot-8"]}, "duration": "3h"})).await.expect(201);
    let lease = lease["id"].as_i64().expect("id");

    let mut bob = signed_in(&ctx, "bob").await;
    let chart = bob.get("/calendar?filter=cluster%3D%27chifflot%27").await;
    assert_eq!(chart.status, StatusCode::OK, "{}", chart.text);
    assert!(chart.text.contains("<svg id=\"gantt\""), "{}", chart.text);
    assert!(chart.text.contains("chifflot (8 nodes)"), "{}", chart.text);
    assert_eq!(chart.text.matches("<title>Busy: ").count(), 2, "alice's lease, on her two nodes, nameless: {}", chart.text);
    assert!(!chart.text.contains("alice") && !chart.text.contains(&format!("Lease {lease}")), "{}", chart.text);
    assert!(chart.text.contains("None of your leases falls in this window."));
    let mut alice_browser = signed_in(&ctx, "alice").await;
    let hers = alice_browser.get("/calendar").await;
    assert_eq!(hers.text.matches(&format!("<title>Lease {lease} of alice (yours): ")).count(), 2, "{}", hers.text);
    assert!(hers.text.contains(&format!("<a href=\"#lease-{lease}\">")), "her bars link to her table");
    assert!(
        hers.text.contains(&format!("<tr id=\"lease-{lease}\"><td><a href=\"/leases/{lease}\">Lease {lease}</a></td>")),
        "{}",
        hers.text
    );

    // Find a slot: the API's first slot, drawn on its two nodes.
    let v100 = "gpu_model LIKE '%V100%'";
    let api =
        ctx.get("/api/v1/availability?count=2&duration=1h&filter=gpu_model%20LIKE%20'%25V100%25'&limit=1", &bob_token).await.expect(200);
    assert_eq!(api["slots"][0]["nodes"], json!(["chifflot-7", "chifflot-8"]));
    let find = "/calendar?count=2&duration=1h&filter=gpu_model+LIKE+%27%25V100%25%27";
    let found = bob.get(find).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert!(found.text.contains("on chifflot-7, chifflot-8."), "{}", found.text);
    assert_eq!(found.text.matches("<rect class=\"slot\"").count(), 2);
    let start = found.field("start");
    assert_eq!(start, at(chrono::Duration::hours(3)), "the API's slot: {api}");
    // Or on the booking page, which gets the nodes and the duration.
    assert!(
        found.text.contains("<a href=\"/book?names=chifflot-7%2Cchifflot-8&#38;duration=1h\">Or on the booking page"),
        "{}",
        found.text
    );
    let form = bob.get("/book?names=chifflot-7%2Cchifflot-8&duration=1h").await;
    assert!(form.text.contains("value=\"chifflot-7,chifflot-8\""), "{}", form.text);
    // What the policy will say, before booking.
    for line in ["<li>2 node-hours: 2 node(s) for 1h.</li>", "<li>Project p-other has no quota.</li>", "<li>It needs no admin"] {
        assert!(found.text.contains(line), "{line}: {}", found.text);
    }

    // Book it: a lease of bob's, on those nodes, at that time.
    let form = |csrf: &str| {
        [
            ("csrf", csrf.to_owned()),
            ("nodes", found.field("nodes")),
            ("start", start.clone()),
            ("duration", "1h".into()),
            ("filter", v100.into()),
            ("zoom", "week".into()),
        ]
    };
    let form = form(&found.field("csrf"));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let booked = bob.post("/calendar/book", &pairs).await;
    assert_eq!(booked.status, StatusCode::SEE_OTHER, "{}", booked.text);
    let location = booked.location.expect("a redirect");
    let id: i64 = location.split("booked=").nth(1).and_then(|v| v.parse().ok()).expect("the lease booked");
    let lease = ctx.lease(id, &bob_token).await;
    assert_eq!(lease["nodes"], json!(["chifflot-7", "chifflot-8"]));
    assert_eq!(lease["start"], at(chrono::Duration::hours(3)).replace("+00:00", "Z"));
    let shown = bob.get(location.trim_start_matches(&ctx.url)).await;
    assert!(shown.text.contains(&format!("Lease {id} is booked")), "{}", shown.text);
    // The same slot again is taken: said, and the next one offered.
    let again = bob.post("/calendar/book", &pairs).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("not booked: "), "{}", again.text);
    assert_eq!(again.field("start"), at(chrono::Duration::hours(4)));
    // Without the session's token, nothing is booked.
    let forged: Vec<(&str, &str)> = pairs.iter().map(|&(k, v)| if k == "csrf" { (k, "") } else { (k, v) }).collect();
    assert_eq!(bob.post("/calendar/book", &forged).await.status, StatusCode::FORBIDDEN);

    // A quota the slot does not fit: the policy's refusal is said (the
    // API's words and status), the chart stays, no slot is offered.
    ctx.patch("/api/v1/projects/p-other", &ctx.admin, json!({"quota_node_hours": 1})).await.expect(200);
    let refused = bob.get(find).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .text
            .contains("<p class=\"error\" role=\"alert\">policy &#39;quota&#39;: project &#39;p-other&#39; has 0 of 1 node-hours left"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("<svg id=\"gantt\""));
    assert!(!refused.text.contains("Book these nodes"), "a refused slot is not offered");
    // A member of two projects chooses one: the preview runs the policy of
    // the one chosen (not offered without a choice, nor over its quota).
    ctx.user("carol", "p-vision").await;
    ctx.post("/api/v1/projects/p-other/members", &ctx.admin, json!({"user": "carol"})).await.expect(200);
    let mut carol = signed_in(&ctx, "carol").await;
    let unchosen = carol.get(find).await;
    assert!(unchosen.text.contains("<label for=\"project\">For project</label>"), "{}", unchosen.text);
    assert!(unchosen.text.contains("Not offered: project: you belong to several projects"), "{}", unchosen.text);
    let over = carol.get(&format!("{find}&project=p-other")).await;
    let at = over.text.find("<p class=\"error\" id=\"policy-refusal\">Not offered: policy &#39;quota&#39;").expect("the quota's refusal");
    assert!(!over.text[at..].contains("Book these nodes"));
    let fine = carol.get(&format!("{find}&project=p-vision")).await;
    assert!(fine.text.contains("<li>Project p-vision has no quota.</li>"), "{}", fine.text);
    assert_eq!(fine.field("project"), "p-vision");

    // Bad input is said beside its field.
    for (path, field, words) in [
        ("/calendar?filter=gpus+%3E%3E+2", "filter", "filter"),
        ("/calendar?count=two&duration=1h", "count", "count: a whole number of nodes"),
        ("/calendar?count=2&duration=soon", "duration", "duration"),
        ("/calendar?from=yesterday", "from", "from: a date, YYYY-MM-DD"),
    ] {
        let refused = bob.get(path).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}: {}", refused.text);
        let marker = format!("<p class=\"error\" id=\"{field}-error\">");
        let at = refused.text.find(&marker).unwrap_or_else(|| panic!("{path}: no error beside {field}: {}", refused.text));
        assert!(refused.text[at..].starts_with(&format!("{marker}{words}")), "{path}: {}", &refused.text[at..at + 200]);
        assert!(refused.text.contains("<svg id=\"gantt\""), "{path}: the chart is still drawn");
    }
}

/// A BMC URL of the admin pages' tests: its password must never show.
fn bmc_of(i: u8) -> String {
    format!("ipmi://root:s3cret-pw-{i}@10.9.2.{i}:623")
}

async fn node_with_bmc(ctx: &TestContext, name: &str, cluster: &str, i: u8) -> std::sync::Arc<ferrum_controller::power::sim::SimBmc> {
    ctx.enrol_with_sim_bmc(name, cluster, &format!("02:00:00:00:0c:0{i}"), &bmc_of(i)).await
}

/// No BMC password nor URL in a page.
#[track_caller]
fn no_bmc_secret(page: &Page) {
    assert!(!page.text.contains("s3cret"), "a BMC password in {}", page.text);
    assert!(!page.text.contains("ipmi://"), "a BMC URL in {}", page.text);
}

#[tokio::test]
async fn the_admin_sees_every_node_with_its_state_reason_power_and_lease() {
    use ferrum_controller::power::PowerError;
    let ctx = TestContext::empty().await;
    let dead = node_with_bmc(&ctx, "sim-1", "sim", 1).await;
    let suspect = node_with_bmc(&ctx, "sim-2", "sim", 2).await;
    node_with_bmc(&ctx, "sim-3", "sim", 3).await;
    ctx.post("/api/v1/nodes", &ctx.admin, json!({"name": "lab-1", "site": "lab", "cluster": "other", "macs": ["02:00:00:00:0d:01"]}))
        .await
        .expect(201);
    ctx.wait_nodes_available(4).await;
    // sim-1's BMC stops answering (dead), sim-2's refuses its password
    // (suspect); alice holds sim-3.
    dead.fail_with(Some(PowerError::Unreachable { bmc: "10.9.2.1:623".into(), tries: 1 }));
    suspect.fail_with(Some(PowerError::Auth { bmc: "10.9.2.2:623".into() }));
    ctx.post("/api/v1/nodes/sim-1/power", &ctx.admin, json!({"action": "status"})).await.error(502, "bmc_error");
    ctx.post("/api/v1/nodes/sim-2/power", &ctx.admin, json!({"action": "status"})).await.error(502, "bmc_error");
    assert_eq!((ctx.node_state("sim-1").await, ctx.node_state("sim-2").await), ("dead".to_owned(), "suspect".to_owned()));
    let alice = ctx.user("alice", "p-vision").await;
    let lease =
        ctx.post("/api/v1/leases", &alice, json!({"name": "run", "nodes": {"names": ["sim-3"]}, "duration": "1h"})).await.expect(201);
    let lease = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(lease, &alice, "active").await;

    let mut admin = signed_in(&ctx, "admin").await;
    let index = admin.get("/admin").await;
    assert!(index.text.contains("4 in all, 2 suspect or dead, 0 in maintenance."), "{}", index.text);
    let list = admin.get("/admin/nodes").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    no_bmc_secret(&list);
    let row = |page: &Page, node: &str| {
        let start = page.text.find(&format!("<tr id=\"node-{node}\">")).unwrap_or_else(|| panic!("no row of {node} in {}", page.text));
        page.text[start..].split("</tr>").next().unwrap_or_default().to_owned()
    };
    let sim1 = row(&list, "sim-1");
    assert!(sim1.contains("<td>dead</td>"), "{sim1}");
    assert!(sim1.contains("no answer from BMC 10.9.2.1:623 after 1 tries ("), "{sim1}");
    let sim2 = row(&list, "sim-2");
    assert!(sim2.contains("<td>suspect</td>") && sim2.contains("BMC 10.9.2.2:623 refused the credentials"), "{sim2}");
    let sim3 = row(&list, "sim-3");
    assert!(sim3.contains(&format!("lease {lease} (run) of alice, active until")), "{sim3}");
    let lab1 = row(&list, "lab-1");
    assert!(lab1.contains("<td>available</td>") && lab1.contains("<td>no BMC</td>") && lab1.contains("<td>none</td>"), "{lab1}");
    assert!(list.text.contains("All 4 nodes"), "{}", list.text);

    // Filters, on the server.
    let dead_only = admin.get("/admin/nodes?state=dead").await;
    assert!(dead_only.text.contains("node-sim-1") && !dead_only.text.contains("node-sim-2"), "{}", dead_only.text);
    assert!(dead_only.text.contains("1 of 4 nodes, state dead"), "{}", dead_only.text);
    let other = admin.get("/admin/nodes?cluster=other&state=").await;
    assert!(other.text.contains("node-lab-1") && !other.text.contains("node-sim-"), "{}", other.text);
    let none = admin.get("/admin/nodes?cluster=other&state=dead").await;
    assert!(none.text.contains("No node matches."), "{}", none.text);
    let wrong = admin.get("/admin/nodes?state=asleep").await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.text.contains("state: one of enrolling, available"), "{}", wrong.text);

    // A node's page: the same facts, its events, no BMC secret.
    let page = admin.get("/admin/nodes/sim-1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    no_bmc_secret(&page);
    assert!(page.text.contains("<dt>State</dt><dd>dead</dd>"), "{}", page.text);
    assert!(page.text.contains("available → dead"), "{}", page.text);
    assert_eq!(admin.get("/admin/nodes/nowhere").await.status, StatusCode::NOT_FOUND);

    // Users: the 403 page, and their own token changes nothing.
    let held = ctx.node_state("sim-3").await;
    let mut user = signed_in(&ctx, "alice").await;
    let her_csrf = user.get("/").await.field("csrf");
    for path in ["/admin/nodes", "/admin/nodes/sim-3", "/admin/audit"] {
        let refused = user.get(path).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}: {}", refused.text);
    }
    let refused = user.post("/admin/nodes/sim-3/power", &[("csrf", &her_csrf), ("action", "off")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    let refused = user.post("/admin/nodes/sim-3/maintenance", &[("csrf", &her_csrf), ("enabled", "true"), ("reason", "mine")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(ctx.node_state("sim-3").await, held);
    let events = ctx.get("/api/v1/nodes/sim-3/events", &ctx.admin).await.expect(200);
    assert!(!events.to_string().contains("mine"), "{events}");
}

#[tokio::test]
async fn the_admin_puts_a_node_in_maintenance_and_powers_it_from_the_portal() {
    // A short wait for the BMC: a held one leaves the request queued.
    let mut config = Config::default();
    config.power.request_wait = std::time::Duration::from_millis(200);
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(SimConductor)).await;
    let bmc = node_with_bmc(&ctx, "sim-1", "sim", 1).await;
    ctx.post("/api/v1/nodes", &ctx.admin, json!({"name": "lab-1", "site": "lab", "cluster": "other", "macs": ["02:00:00:00:0d:01"]}))
        .await
        .expect(201);
    ctx.wait_nodes_available(2).await;
    let mut admin = signed_in(&ctx, "admin").await;
    let mut pages = Vec::new();

    let page = admin.get("/admin/nodes/sim-1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.text.contains("Start maintenance"), "{}", page.text);
    let csrf = page.field("csrf");
    let maintenance = "/admin/nodes/sim-1/maintenance";

    // Without the session's token: refused, nothing changes.
    let forged = admin.post(maintenance, &[("enabled", "true"), ("reason", "forged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    assert_eq!(ctx.node_state("sim-1").await, "available");
    // Without a reason: the application's words beside the field.
    let bare = admin.post(maintenance, &[("csrf", &csrf), ("enabled", "true"), ("reason", " ")]).await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST, "{}", bare.text);
    assert!(bare.text.contains("id=\"maintenance-error\">reason: say why"), "{}", bare.text);
    assert!(bare.text.contains("aria-describedby=\"maintenance-error\""), "{}", bare.text);

    let on = admin.post(maintenance, &[("csrf", &csrf), ("enabled", "true"), ("reason", "disk swap")]).await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.text);
    assert_eq!(on.location.as_deref(), Some("/admin/nodes/sim-1?maintenance=on"));
    assert_eq!(ctx.node_state("sim-1").await, "maintenance");
    let page = admin.get("/admin/nodes/sim-1?maintenance=on").await;
    assert!(page.text.contains("sim-1 is in maintenance now: no new lease gets it."), "{}", page.text);
    assert!(page.text.contains("End maintenance") && page.text.contains("<dt>Maintenance</dt><dd>yes</dd>"), "{}", page.text);
    let listed = admin.get("/admin/nodes?state=maintenance").await;
    assert!(listed.text.contains("<td>maintenance</td><td>disk swap (admin, "), "{}", listed.text);
    pages.extend([page, listed]);
    let off = admin.post(maintenance, &[("csrf", &csrf), ("enabled", "false"), ("reason", "disk swapped")]).await;
    assert_eq!(off.location.as_deref(), Some("/admin/nodes/sim-1?maintenance=off"));
    assert_eq!(ctx.node_state("sim-1").await, "available");

    // Power: a BMC slow to answer leaves the request queued; the page
    // says so, and on reload how it ended.
    let power = "/admin/nodes/sim-1/power";
    let forged = admin.post(power, &[("action", "cycle")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    let odd = admin.post(power, &[("csrf", &csrf), ("action", "reboot")]).await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST, "{}", odd.text);
    assert!(odd.text.contains("id=\"power-error\">action: one of on, off, soft-off, cycle, status"), "{}", odd.text);
    assert!(bmc.operations().is_empty(), "{:?}", bmc.operations());
    bmc.hold(true);
    let asked = admin.post(power, &[("csrf", &csrf), ("action", "cycle")]).await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.text);
    let outcome = asked.location.expect("the node page");
    assert!(outcome.starts_with("/admin/nodes/sim-1?power="), "{outcome}");
    let id = outcome.rsplit('=').next().expect("id").to_owned();
    let waiting = admin.get(&outcome).await;
    assert!(waiting.text.contains(&format!("Power request {id} (power cycle) of sim-1 is ")), "{}", waiting.text);
    assert!(waiting.text.contains("Reload this page to see how it ends."), "{}", waiting.text);
    bmc.hold(false);
    let done = wait_until("the cycle done, on reload", DEADLINE, async || {
        let page = admin.get(&outcome).await;
        if page.text.contains(&format!("Power request {id} (power cycle) of sim-1 is done at ")) { Ok(page) } else { Err(page.text) }
    })
    .await;
    assert!(done.text.contains(": the power is on."), "{}", done.text);
    assert_eq!(bmc.operations(), ["cycle"]);
    pages.extend([waiting, done]);
    // No BMC: the refusal in words, beside the buttons.
    let lab = admin.get("/admin/nodes/lab-1").await;
    assert!(lab.text.contains("This node has no BMC"), "{}", lab.text);
    let nobmc = admin.post("/admin/nodes/lab-1/power", &[("csrf", &csrf), ("action", "on")]).await;
    assert_eq!(nobmc.status, StatusCode::CONFLICT, "{}", nobmc.text);
    assert!(nobmc.text.contains("id=\"power-error\">node &#39;lab-1&#39; has no BMC"), "{}", nobmc.text);

    // The audit log: both maintenance changes and the power request,
    // newest first, filtered on the server.
    let audit = admin.get("/admin/audit").await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    let at = |text: &str| audit.text.find(text).unwrap_or_else(|| panic!("{text} in {}", audit.text));
    let (power_at, off_at, on_at) = (
        at("operation: cycle; request: "),
        at("maintenance: false; reason: disk swapped</td>"),
        at("maintenance: true; reason: disk swap</td>"),
    );
    assert!(power_at < off_at && off_at < on_at, "newest first: {}", audit.text);
    assert!(audit.text.contains("<a href=\"/admin/nodes/sim-1\">node/sim-1</a>"), "{}", audit.text);
    let filtered = admin.get("/admin/audit?action=node.maintenance&target=node%2Fsim-1&actor=admin&from=2000-01-01").await;
    assert!(filtered.text.contains("2 entries, newest first"), "{}", filtered.text);
    assert!(!filtered.text.contains("operation: cycle"), "{}", filtered.text);
    let past = admin.get("/admin/audit?to=2000-01-01").await;
    assert!(past.text.contains("No entry matches."), "{}", past.text);
    let wrong = admin.get("/admin/audit?from=last+week").await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.text.contains("id=\"audit-error\">from: a time in UTC"), "{}", wrong.text);
    pages.extend([audit, filtered]);

    // Paged back by id: 50 a page, the filters kept.
    for i in 0..30 {
        for enabled in [true, false] {
            let body = json!({"enabled": enabled, "reason": format!("round {i}")});
            ctx.post("/api/v1/nodes/lab-1/maintenance", &ctx.admin, body).await.expect(200);
        }
    }
    let first = admin.get("/admin/audit?target=node%2Flab-1").await;
    assert!(first.text.contains("50 entries, newest first"), "{}", first.text);
    let marker = "<a href=\"/admin/audit?target=node%2Flab-1&#38;before=";
    let start = first.text.find(marker).unwrap_or_else(|| panic!("an older page in {}", first.text)) + marker.len();
    let before: String = first.text[start..].chars().take_while(char::is_ascii_digit).collect();
    let older = admin.get(&format!("/admin/audit?target=node%2Flab-1&before={before}")).await;
    // 60 changes and the node's enrolment: 11 older ones.
    assert!(older.text.contains("11 entries, older ones, newest first"), "{}", older.text);
    assert!(older.text.contains("reason: round 0</td>") && older.text.contains("node.add"), "{}", older.text);
    assert!(!older.text.contains("Older entries"), "{}", older.text);
    assert!(older.text.contains("Newest entries"), "{}", older.text);
    pages.extend([first, older]);
    for page in &pages {
        no_bmc_secret(page);
    }
}

/// The usage page: month by month per project, user, cluster or GPU model,
/// as the API reports it to the same user (only their projects), with a
/// CSV of the same figures; a bad value is said on the page.
#[tokio::test]
async fn the_usage_page_shows_the_apis_figures_to_whom_the_api_would() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    ctx.user("bob", "p-other").await;
    let lease =
        ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-7", "chifflot-8"]}, "duration": "3h"})).await.expect(201);
    ctx.wait_lease_state(lease["id"].as_i64().expect("id"), &alice, "active").await;
    ctx.advance(chrono::Duration::hours(2));
    let api = ctx.get("/api/v1/usage?group_by=project", &alice).await.expect(200);
    assert_eq!(api["rows"][0]["key"], "p-vision");
    let api_hours = api["rows"][0]["node_hours"].as_f64().expect("node_hours");
    assert!(api_hours >= 4.0, "{api}");

    let mut page = signed_in(&ctx, "alice").await;
    let usage = page.get("/usage").await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    assert!(
        usage.text.contains("<th scope=\"col\" class=\"num\">2026-06</th>")
            && usage.text.contains("<th scope=\"col\" class=\"num\">2026-11</th>"),
        "six months"
    );
    let row = format!("<tr><th scope=\"row\">p-vision</th>{}<td class=\"num\">{api_hours:.1}</td>", "<td class=\"num\">0.0</td>".repeat(5));
    assert!(usage.text.contains(&row), "{row} in {}", usage.text);
    assert!(usage.text.contains("<title>p-vision, 2026-11: "), "the chart's bar");
    let by_user = page.get("/usage?group_by=user&months=1").await;
    assert!(by_user.text.contains(&format!("<tr><th scope=\"row\">alice</th><td class=\"num\">{api_hours:.1}</td>")), "{}", by_user.text);
    let csv = page.get("/usage?group_by=project&months=1&format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    let mut lines = csv.text.lines();
    assert_eq!(lines.next(), Some("key,month,node_hours,gpu_hours,node_seconds,gpu_seconds"));
    let line = lines.next().expect("p-vision's line");
    assert!(line.starts_with(&format!("p-vision,2026-11,{api_hours}")), "{line}");

    // Bob sees his projects only, as the API would say.
    let mut bob = signed_in(&ctx, "bob").await;
    let his = bob.get("/usage").await;
    assert!(!his.text.contains("p-vision") && his.text.contains("No use recorded"), "{}", his.text);
    let refused = bob.get("/usage?project=p-vision").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.text.contains("p-vision"), "the refusal names it: {}", refused.text);
    let bad = bob.get("/usage?months=99").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text.contains("months: a whole number from 1 to 24"), "{}", bad.text);
}

/// The lease page's form posted with the session's token.
async fn lease_form(browser: &mut Browser, csrf: &str, path: &str, fields: &[(&str, &str)]) -> Page {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    browser.post(path, &form).await
}

const LEASE_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

#[tokio::test]
async fn my_leases_are_listed_shown_extended_released_cancelled_and_redeployed() {
    let ctx = TestContext::with_fixtures().await;
    let bmc = node_with_bmc(&ctx, "sim-1", "sim", 1).await;
    ctx.wait_nodes_available(11).await;
    let alice = ctx.user("alice", "p-vision").await;
    let bob = ctx.user("bob", "p-other").await;
    let tiny = json!({"name": "tiny", "version": 1, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
        "sha256": "ab".repeat(32), "size": 50_331_648u64, "root_partition": 1, "visibility": "public"});
    ctx.post("/api/v1/environments", &ctx.admin, tiny).await.expect(201);
    let create = async |token: &str, body: Value| ctx.post("/api/v1/leases", token, body).await.expect(201)["id"].as_i64().expect("id");
    let running = create(&alice, json!({"name": "paper-run", "nodes": {"names": ["chifflot-1", "chifflot-2"]}, "duration": "2h"})).await;
    let later =
        create(&alice, json!({"nodes": {"names": ["chifflot-3"]}, "start": at(chrono::Duration::hours(5)), "duration": "1h"})).await;
    let over = create(&alice, json!({"name": "short-one", "nodes": {"names": ["chifflot-4"]}, "duration": "1h"})).await;
    ctx.wait_lease_state(running, &alice, "active").await;
    ctx.wait_lease_state(over, &alice, "active").await;
    ctx.delete(&format!("/api/v1/leases/{over}"), &alice).await.expect(200);
    ctx.wait_lease_state(over, &alice, "finished").await;
    // Bob's lease starts two hours after alice's running one ends.
    let bobs = create(&bob, json!({"nodes": {"names": ["chifflot-1"]}, "start": at(chrono::Duration::hours(4)), "duration": "1h"})).await;

    let mut browser = signed_in(&ctx, "alice").await;
    let list = browser.get("/leases").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(list.text.contains("<a href=\"/leases\" aria-current=\"page\">Leases</a>"), "in the navigation: {}", list.text);
    let (now_part, past_part) = list.text.split_once("<h2>Past 30 days</h2>").expect("two parts");
    let running_at = now_part.find(&format!("<a href=\"/leases/{running}\">Lease {running}</a>")).expect("the running lease");
    let later_at = now_part.find(&format!("<a href=\"/leases/{later}\">Lease {later}</a>")).expect("the upcoming lease");
    assert!(running_at < later_at, "running first: {now_part}");
    assert!(now_part.contains("<td>paper-run</td>") && now_part.contains(">active</span>"), "{now_part}");
    assert!(
        past_part.contains(&format!("<a href=\"/leases/{over}\">Lease {over}</a>")) && past_part.contains("<td>finished</td>"),
        "{past_part}"
    );
    assert!(!list.text.contains(&format!("Lease {bobs}<")), "not bob's: {}", list.text);
    // An admin sees their own by default, everyone's on asking.
    let mut admin = signed_in(&ctx, "admin").await;
    let own = admin.get("/leases").await;
    assert!(own.text.contains("No running or upcoming lease: ") && own.text.contains("Show every user"), "{}", own.text);
    let all = admin.get("/leases?all=1").await;
    for id in [running, later, over, bobs] {
        assert!(all.text.contains(&format!("<a href=\"/leases/{id}\">Lease {id}</a>")), "{id}: {}", all.text);
    }
    assert!(all.text.contains("<td>bob</td>") && all.text.contains("<td>alice</td>"), "owners named: {}", all.text);
    // A user asking for all gets hers.
    assert!(!browser.get("/leases?all=1").await.text.contains(&format!("Lease {bobs}<")));

    // The page of one: its facts, no deployment yet, the forms that apply.
    let shown = browser.get(&format!("/leases/{running}")).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    for fact in [
        &format!("<h1>Lease {running} (paper-run)</h1>") as &str,
        "<dd id=\"lease-state\">active</dd>",
        "<dd>p-vision</dd>",
        "<dd>2: <a href=\"/hardware/nodes/chifflot-1\">chifflot-1</a>, <a href=\"/hardware/nodes/chifflot-2\">chifflot-2</a></dd>",
        &format!("<dd>{}</dd>", "2026-11-23 10:00 UTC"),
        "No deployment on this lease.",
        &format!("action=\"/leases/{running}/extend\""),
        &format!("Release lease {running}</button>"),
        &format!("action=\"/leases/{running}/deploy\""),
        "Root's SSH keys: none: add yours",
        &format!("<a href=\"/leases/{running}\">Refresh</a>"),
        "<script src=\"/static/lease.js\" defer></script>",
    ] {
        assert!(shown.text.contains(fact), "{fact} in {}", shown.text);
    }
    let csrf = shown.field("csrf");
    let upcoming = browser.get(&format!("/leases/{later}")).await;
    assert!(upcoming.text.contains(&format!("Cancel lease {later}</button>")), "{}", upcoming.text);
    assert!(!upcoming.text.contains("action=\"/leases/{later}/deploy\""), "no deploy before it starts");
    let past = browser.get(&format!("/leases/{over}")).await;
    assert!(past.text.contains("nothing can be changed") && past.text.contains("released by alice"), "{}", past.text);

    // Extend: refusals beside the form, as typed, then +1h.
    let extend = format!("/leases/{running}/extend");
    let end_of = async |id: i64| ctx.lease(id, &alice).await["end"].as_str().expect("end").to_owned();
    for (typed, status, words) in [
        ("soon", StatusCode::BAD_REQUEST, "end: a time in UTC"),
        ("+1000d", StatusCode::BAD_REQUEST, "end: "),
        ("+3h", StatusCode::CONFLICT, "its nodes are booked before"),
    ] {
        let refused = lease_form(&mut browser, &csrf, &extend, &[("end", typed)]).await;
        assert_eq!(refused.status, status, "{typed}: {}", refused.text);
        let marker = "<p class=\"error\" role=\"alert\" id=\"extend-error\">";
        let at = refused.text.find(marker).unwrap_or_else(|| panic!("{typed}: no error beside the form: {}", refused.text));
        assert!(refused.text[at + marker.len()..].starts_with(words), "{typed}: {}", &refused.text[at..]);
        assert!(refused.text.contains(&format!("value=\"{}\"", escaped(typed))), "typed kept: {typed}");
        assert_eq!(end_of(running).await, "2026-11-23T10:00:00Z");
    }
    let extended = lease_form(&mut browser, &csrf, &extend, &[("end", "+1h")]).await;
    assert_eq!(extended.status, StatusCode::SEE_OTHER, "{}", extended.text);
    assert_eq!(extended.location.as_deref(), Some(format!("/leases/{running}?done=extended").as_str()));
    assert_eq!(end_of(running).await, "2026-11-23T11:00:00Z");
    let after = browser.get(extended.location.as_deref().expect("location")).await;
    assert!(
        after.text.contains("Extended: the new end is below.") && after.text.contains("<dd>2026-11-23 11:00 UTC</dd>"),
        "{}",
        after.text
    );
    let at_time = lease_form(&mut browser, &csrf, &extend, &[("end", "2026-11-23 11:30")]).await;
    assert_eq!(at_time.status, StatusCode::SEE_OTHER, "{}", at_time.text);
    assert_eq!(end_of(running).await, "2026-11-23T11:30:00Z");

    // Bob: alice's lease is the API's 404, from the page and from every
    // form, even with his own session's token; nothing changes.
    let mut bob_browser = signed_in(&ctx, "bob").await;
    let api_says = ctx.get(&format!("/api/v1/leases/{running}"), &bob).await.error(404, "not_found");
    let bob_csrf = bob_browser.get("/leases").await.field("csrf");
    let seen = bob_browser.get(&format!("/leases/{running}")).await;
    assert_eq!(seen.status, StatusCode::NOT_FOUND, "{}", seen.text);
    assert!(seen.text.contains(&escaped(&api_says)), "{api_says} in {}", seen.text);
    assert!(!seen.text.contains("paper-run") && !seen.text.contains("chifflot-1"), "{}", seen.text);
    assert_eq!(bob_browser.first_event(&format!("/leases/{running}/events")).await.status, StatusCode::NOT_FOUND);
    for (action, fields) in [("extend", &[("end", "+1h")] as &[(&str, &str)]), ("end", &[]), ("deploy", &[("environment", "tiny")])] {
        let path = format!("/leases/{running}/{action}");
        let refused = lease_form(&mut bob_browser, &bob_csrf, &path, fields).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{action}: {}", refused.text);
        assert!(refused.text.contains(&escaped(&api_says)), "{action}: {}", refused.text);
        // Alice's token is not his to send: refused as forged.
        let forged = lease_form(&mut bob_browser, &csrf, &path, fields).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{action}: {}", forged.text);
    }
    let lease = ctx.lease(running, &alice).await;
    assert_eq!((lease["state"].as_str(), lease["end"].as_str()), (Some("active"), Some("2026-11-23T11:30:00Z")));
    assert!(ctx.get(&format!("/api/v1/leases/{running}/deployments"), &alice).await.expect(200).as_array().expect("list").is_empty());

    // Redeploy: an unknown environment is said beside the form; the
    // profile's keys go with a known one.
    let deploy = format!("/leases/{running}/deploy");
    let unknown = lease_form(&mut browser, &csrf, &deploy, &[("environment", "nope")]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
    assert!(
        unknown.text.contains("<p class=\"error\" role=\"alert\" id=\"deploy-error\">no environment &#39;nope&#39; that you can see"),
        "{}",
        unknown.text
    );
    assert!(unknown.text.contains("value=\"nope\""), "{}", unknown.text);
    let not_yet = lease_form(&mut browser, &csrf, &format!("/leases/{later}/deploy"), &[("environment", "tiny")]).await;
    assert_eq!(not_yet.status, StatusCode::CONFLICT, "{}", not_yet.text);
    assert!(
        not_yet.text.contains(&format!("id=\"deploy-error\">lease {later} is pending; deployments run on active leases")),
        "{}",
        not_yet.text
    );
    ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"public_key": LEASE_KEY})).await.expect(201);
    // The deployment runs on a node whose BMC is held: it stays at its
    // first power action for as long as the test needs it running.
    let held = create(&alice, json!({"nodes": {"names": ["sim-1"]}, "duration": "1h"})).await;
    ctx.wait_lease_state(held, &alice, "active").await;
    bmc.hold(true);
    let deploy = format!("/leases/{held}/deploy");
    let deployed = lease_form(&mut browser, &csrf, &deploy, &[("environment", "tiny")]).await;
    assert_eq!(deployed.status, StatusCode::SEE_OTHER, "{}", deployed.text);
    let list = ctx.get(&format!("/api/v1/leases/{held}/deployments"), &alice).await.expect(200);
    let id = list[0]["id"].as_i64().expect("a deployment");
    assert_eq!(deployed.location, Some(format!("/leases/{held}?done=deployed&deployment={id}#deployment-{id}")));
    let page = browser.get(&format!("/leases/{held}?done=deployed&deployment={id}")).await;
    for fact in [
        &format!("Deployment {id} started: its progress is below.") as &str,
        &format!("<h3>Deployment {id}: tiny (version 1)</h3>"),
        &format!("<dd id=\"deployment-{id}-state\">running</dd>"),
        &format!("<code>{}</code>", "ab".repeat(32)),
        &format!("<tr id=\"op-{id}-sim-1\"><th scope=\"row\">sim-1</th><td data-field=\"state\">running</td>"),
        "data-live=\"true\"",
        "Root's SSH keys: the key of your profile.",
    ] {
        assert!(page.text.contains(fact), "{fact} in {}", page.text);
    }
    // A second one while the first runs: the conflict in words, beside
    // the form.
    let again = lease_form(&mut browser, &csrf, &deploy, &[("environment", "tiny")]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert!(again.text.contains("id=\"deploy-error\">node &#39;sim-1&#39; is being deployed"), "{}", again.text);
    assert_eq!(ctx.get(&format!("/api/v1/leases/{held}/deployments"), &alice).await.expect(200).as_array().map(Vec::len), Some(1));
    bmc.hold(false);

    // Release the running one, cancel the upcoming one.
    let released = lease_form(&mut browser, &csrf, &format!("/leases/{running}/end"), &[]).await;
    assert_eq!(released.location, Some(format!("/leases/{running}?done=released")), "{}", released.text);
    assert!(["ending", "finished"].contains(&ctx.lease(running, &alice).await["state"].as_str().unwrap_or_default()));
    let cancelled = lease_form(&mut browser, &csrf, &format!("/leases/{later}/end"), &[]).await;
    assert_eq!(cancelled.location, Some(format!("/leases/{later}?done=cancelled")), "{}", cancelled.text);
    assert_eq!(ctx.lease(later, &alice).await["state"], "cancelled");
    let shown = browser.get(&format!("/leases/{later}?done=cancelled")).await;
    assert!(shown.text.contains("Cancelled: its nodes are free again.") && shown.text.contains("cancelled by alice"), "{}", shown.text);
    // No anti-forgery token: nothing happens.
    assert_eq!(browser.post(&format!("/leases/{bobs}/end"), &[]).await.status, StatusCode::FORBIDDEN);
}

/// One Server-Sent Event: its name and data.
fn sse_events(text: &str) -> Vec<(String, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut name = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            (!data.is_empty()).then(|| (name, data.join("\n")))
        })
        .collect()
}

/// A deployment asked from the lease page, followed live: the events
/// stream says each node's phase as it goes, then its end with the ssh
/// line, and `end`; the profile's key is on the node's disk.
#[tokio::test]
async fn a_lease_page_follows_its_deployment_live_over_server_sent_events() {
    use super::sim_agent::{self, SimNode};
    let ctx = TestContext::with_sim_nodes(Config::default()).await;
    let node = SimNode::enrol(&ctx, "sim-live").await;
    ctx.wait_nodes_available(1).await;
    sim_agent::publish_image(&ctx, "sim", 1 << 20).await;
    let alice = ctx.user("alice", "p-sim").await;
    ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"public_key": LEASE_KEY})).await.expect(201);
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["sim-live"]}, "duration": "1h"})).await.expect(201);
    let lease = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(lease, &alice, "active").await;

    let mut browser = signed_in(&ctx, "alice").await;
    // Nothing runs: one event, then `end`, and the stream closes.
    let idle = browser.stream(&format!("/leases/{lease}/events")).await;
    assert_eq!(idle.status(), StatusCode::OK);
    let kind = idle.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(kind.as_deref(), Some("text/event-stream"));
    let text = tokio::time::timeout(super::harness::DEADLINE, idle.text()).await.expect("the stream ends").expect("body");
    let events = sse_events(&text);
    assert_eq!(events.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["progress", "end"], "{text}");
    let first: Value = serde_json::from_str(&events[0].1).expect("JSON");
    assert_eq!(first, json!({"lease_state": "active", "moving": false, "deployments": []}));

    let csrf = browser.get(&format!("/leases/{lease}")).await.field("csrf");
    let deployed = lease_form(&mut browser, &csrf, &format!("/leases/{lease}/deploy"), &[("environment", "sim")]).await;
    assert_eq!(deployed.status, StatusCode::SEE_OTHER, "{}", deployed.text);
    let mut live = browser.stream(&format!("/leases/{lease}/events")).await;
    assert_eq!(live.status(), StatusCode::OK);
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = live.chunk().await.expect("a chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(super::harness::DEADLINE, read)
        .await
        .unwrap_or_else(|_| panic!("the stream ends with the deployment; so far: {text}; the node's journal: {:?}", node.journal()));
    let events = sse_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"end"), "{text}");
    let progress: Vec<Value> =
        events.iter().filter(|(n, _)| n == "progress").map(|(_, d)| serde_json::from_str(d).expect("JSON")).collect();
    assert!(progress.len() >= 2, "{text}");
    let first = &progress[0]["deployments"][0]["nodes"][0];
    assert_eq!((first["node"].as_str(), first["state"].as_str()), (Some("sim-live"), Some("running")), "{text}");
    assert!(first["elapsed"].as_str().is_some_and(|e| e.ends_with(" s")), "{first}");
    let phases: Vec<&str> = progress.iter().filter_map(|p| p["deployments"][0]["nodes"][0]["phase"].as_str()).collect();
    let deploy_phases = ["boot_ramdisk", "wait_agent", "write_image", "install_keys", "boot_system", "ssh_check", "finished"];
    assert!(phases.iter().all(|p| deploy_phases.contains(p)), "{phases:?}");
    let last = &progress[progress.len() - 1];
    assert_eq!(last["moving"], false, "{last}");
    assert_eq!(last["deployments"][0]["state"], "done", "{last}");
    let op = &last["deployments"][0]["nodes"][0];
    let ssh = format!("ssh root@{}", node.ip());
    assert_eq!(
        (op["phase"].as_str(), op["written"].as_str(), op["ssh"].as_str()),
        (Some("finished"), Some("1.0 of 1.0 MiB"), Some(ssh.as_str())),
        "{op}"
    );

    // The page: the ssh line to copy, the profile's key on the disk.
    let page = browser.get(&format!("/leases/{lease}")).await;
    assert!(
        page.text.contains(&format!("<pre class=\"ssh\" tabindex=\"0\" aria-label=\"Commands to log in\">{ssh}\n</pre>")),
        "{}",
        page.text
    );
    assert!(page.text.contains("data-live=\"false\""), "{}", page.text);
    let (_, keys) = node.written().expect("an image on the disk");
    assert_eq!(keys[0], LEASE_KEY, "{keys:?}");
}

/// Pages are gzipped when the browser asks for it (the calendar of a site
/// is large), and sent as they are otherwise.
#[tokio::test]
async fn pages_are_compressed_when_the_browser_asks() {
    use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING};
    let ctx = TestContext::with_fixtures().await;
    ctx.user("alice", "p-vision").await;
    let browser = signed_in(&ctx, "alice").await;
    let cookie = browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let calendar = async |encoding: &str| {
        let answer = ctx
            .client
            .get(format!("{}/calendar?zoom=month", ctx.url))
            .header(COOKIE, &cookie)
            .header(ACCEPT_ENCODING, encoding)
            .send()
            .await
            .expect("the calendar");
        assert_eq!(answer.status(), StatusCode::OK);
        let encoded = answer.headers().get(CONTENT_ENCODING).map(|v| v.to_str().unwrap_or_default().to_owned());
        (encoded, answer.bytes().await.expect("a body").len())
    };
    let (plain_encoding, plain) = calendar("identity").await;
    let (gzip_encoding, gzipped) = calendar("gzip").await;
    assert_eq!((plain_encoding, gzip_encoding.as_deref()), (None, Some("gzip")));
    assert!(gzipped * 2 < plain, "gzip {gzipped} bytes against {plain}");
}

const DESK_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIbVmR/TNyE+Jq3F4nDVz6LVYq4x6VaBZqdv0cfk9Sg0 alice@desk";

/// The ids of the SSH keys a booking page offers, in its order.
fn offered_keys(page: &Page) -> Vec<String> {
    let marker = "name=\"key\" value=\"";
    page.text.match_indices(marker).map(|(at, _)| page.text[at + marker.len()..].split('"').next().unwrap_or_default().to_owned()).collect()
}

/// The booking form posted with the session's token.
async fn book_form(browser: &mut Browser, csrf: &str, fields: &[(&str, &str)]) -> Page {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    browser.post("/book", &form).await
}

/// The message beside a field of a page (`<p class="error" id="FIELD-error">`).
fn error_beside(page: &Page, field: &str) -> String {
    let marker = format!("<p class=\"error\" id=\"{field}-error\">");
    let at = page.text.find(&marker).unwrap_or_else(|| panic!("no error beside {field}: {}", page.text)) + marker.len();
    page.text[at..].split("</p>").next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_booking_page_checks_then_books_a_deploy_with_the_profiles_keys() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let tiny = json!({"name": "tiny", "version": 1, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
        "sha256": "ab".repeat(32), "size": 50_331_648u64, "root_partition": 1, "visibility": "public"});
    ctx.post("/api/v1/environments", &ctx.admin, tiny).await.expect(201);
    for (name, key) in [("laptop", LEASE_KEY), ("desk", DESK_KEY)] {
        ctx.post("/api/v1/users/alice/ssh-keys", &alice, json!({"name": name, "public_key": key})).await.expect(201);
    }
    let mut browser = signed_in(&ctx, "alice").await;
    let form = browser.get("/book?count=2&duration=1h").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(form.text.contains("<a href=\"/book\" aria-current=\"page\">Book</a>"), "in the navigation: {}", form.text);
    assert!(form.text.contains("<option value=\"admin/tiny\">tiny (version 1, by admin)</option>"), "{}", form.text);
    let keys = offered_keys(&form);
    assert_eq!(keys.len(), 2, "her two keys: {}", form.text);
    let chosen = |page: &Page| keys.iter().filter(|k| page.text.contains(&format!("name=\"key\" value=\"{k}\" checked>"))).count();
    assert_eq!(chosen(&form), 2, "all chosen at first");
    assert!(form.text.contains("id=\"count\" name=\"count\" inputmode=\"numeric\" size=\"4\" value=\"2\""), "filled from the query");
    assert!(!form.text.contains("value=\"book\">Book</button>"), "no booking before a check");
    let csrf = form.field("csrf");

    // Check: where, when, what the policy says; nothing booked.
    let start = "2026-11-23T10:00";
    let laptop = keys[0].as_str();
    let fields = [
        ("count", "2"),
        ("filter", "gpu_model LIKE '%V100%'"),
        ("when", "at"),
        ("start", start),
        ("duration", "1h"),
        ("environment", "admin/tiny"),
        ("key", laptop),
        ("name", "paper-run"),
    ];
    let mut check = vec![("action", "check")];
    check.extend_from_slice(&fields);
    let checked = book_form(&mut browser, &csrf, &check).await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
    assert!(
        checked.text.contains("<p id=\"placement\">From 2026-11-23 10:00 UTC to 2026-11-23 11:00 UTC, on chifflot-7, chifflot-8.</p>"),
        "{}",
        checked.text
    );
    for line in ["<li>2 node-hours: 2 node(s) for 1h.</li>", "<li>Project p-vision has no quota.</li>", "<li>It needs no admin"] {
        assert!(checked.text.contains(line), "{line}: {}", checked.text);
    }
    assert!(checked.text.contains("value=\"book\">Book</button>"), "{}", checked.text);
    assert!(checked.text.contains("<p id=\"filter-result\" role=\"status\">Matching nodes: 2.</p>"), "counted: {}", checked.text);
    assert_eq!(chosen(&checked), 1, "the key chosen stays chosen, the other not");
    assert_eq!(ctx.get("/api/v1/leases", &alice).await.expect(200), json!([]), "a check books nothing");

    // Book: the lease is the API's, with the environment and the chosen key.
    let mut book = vec![("action", "book")];
    book.extend_from_slice(&fields);
    let booked = book_form(&mut browser, &csrf, &book).await;
    assert_eq!(booked.status, StatusCode::SEE_OTHER, "{}", booked.text);
    let location = booked.location.expect("a redirect");
    let id: i64 = location.strip_prefix("/leases/").and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("{location}"));
    let lease = ctx.lease(id, &alice).await;
    assert_eq!(lease["nodes"], json!(["chifflot-7", "chifflot-8"]));
    assert_eq!(lease["start"], "2026-11-23T10:00:00Z");
    assert_eq!(lease["end"], "2026-11-23T11:00:00Z");
    assert_eq!((&lease["type"], &lease["name"], &lease["state"]), (&json!("deploy"), &json!("paper-run"), &json!("pending")));
    assert_eq!(lease["deploy"], json!({"environment": "admin/tiny", "ssh_keys": [LEASE_KEY]}));
    let shown = browser.get(&location).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert!(shown.text.contains("<dd id=\"lease-deploys\">admin/tiny, with 1 SSH key(s), when it starts</dd>"), "{}", shown.text);

    // Without the session's token, nothing is booked.
    let forged = book_form(&mut browser, "", &book).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // Bad input is said beside its field, as typed, and nothing is booked.
    for (field, value, action, words) in [
        ("filter", "gpus >> 2", "check", "filter: "),
        ("duration", "soon", "book", "not booked: duration: "),
        ("count", "two", "book", "nodes.count: a whole number of nodes"),
        ("start", "tomorrow", "check", "start: a time in UTC"),
        ("environment", "nobody/nothing", "book", "not booked: deploy.environment: "),
    ] {
        let mut bad: Vec<(&str, &str)> = vec![("action", action)];
        bad.extend(fields.iter().map(|&(k, v)| if k == field { (k, value) } else { (k, v) }));
        let refused = book_form(&mut browser, &csrf, &bad).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{field}: {}", refused.text);
        let said = error_beside(&refused, field);
        assert!(said.starts_with(&escaped(words)) || said.starts_with(words), "{field}: {said}");
        assert!(refused.text.contains(&format!("aria-describedby=\"{field}-error\"")) || field == "filter", "{field}");
        if field != "environment" {
            assert!(refused.text.contains(&format!("value=\"{}\"", escaped(value))), "{field} as typed: {}", refused.text);
        }
        assert!(!refused.text.contains("value=\"book\">Book</button>"), "{field}");
    }
    assert_eq!(ctx.get("/api/v1/leases", &alice).await.expect(200).as_array().map(Vec::len), Some(1), "only the lease booked");
}

#[tokio::test]
async fn the_booking_preview_counts_the_quota_of_the_period_the_lease_starts_in() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    ctx.patch("/api/v1/projects/p-vision", &ctx.admin, json!({"quota_node_hours": 10})).await.expect(200);
    // 4 node-hours this month (the test's clock: 2026-11-23).
    ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 2}, "duration": "2h"})).await.expect(201);
    let mut browser = signed_in(&ctx, "alice").await;
    let csrf = browser.get("/book").await.field("csrf");
    let check = async |browser: &mut Browser, start: &str| {
        let fields = [("action", "check"), ("count", "1"), ("when", "at"), ("start", start), ("duration", "1h")];
        let page = book_form(browser, &csrf, &fields).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        page
    };
    let this_month = check(&mut browser, "2026-11-25T10:00").await;
    assert!(
        this_month
            .text
            .contains("<li>Project p-vision: 4 of its 10 node-hours booked from 2026-11-01 00:00 UTC to 2026-12-01 00:00 UTC.</li>"),
        "{}",
        this_month.text
    );
    // December's quota is untouched, whatever November holds.
    let next_month = check(&mut browser, "2026-12-02T10:00").await;
    assert!(
        next_month
            .text
            .contains("<li>Project p-vision: 0 of its 10 node-hours booked from 2026-12-01 00:00 UTC to 2027-01-01 00:00 UTC.</li>"),
        "{}",
        next_month.text
    );
}

#[tokio::test]
async fn a_booking_above_the_approval_threshold_says_it_waits_and_waits() {
    let ctx = with_approval_threshold().await;
    let alice = ctx.user("alice", "p-vision").await;
    let mut browser = signed_in(&ctx, "alice").await;
    let csrf = browser.get("/book").await.field("csrf");
    // 2 nodes x 6h = 12 node-hours > 10, as soon as possible: after the
    // approval notice.
    let fields = [("count", "2"), ("filter", "cluster = 'chifflot'"), ("when", "asap"), ("duration", "6h"), ("name", "big-run")];
    let mut check = vec![("action", "check")];
    check.extend_from_slice(&fields);
    let checked = book_form(&mut browser, &csrf, &check).await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
    assert!(
        checked.text.contains("<p id=\"placement\">From 2026-11-23 09:00 UTC to 2026-11-23 15:00 UTC, on chifflot-"),
        "{}",
        checked.text
    );
    assert!(
        checked
            .text
            .contains("<li>It waits for an admin&#39;s approval: 12 node-hours is above the approval threshold of 10 node-hours.</li>"),
        "{}",
        checked.text
    );
    let mut book = vec![("action", "book")];
    book.extend_from_slice(&fields);
    let booked = book_form(&mut browser, &csrf, &book).await;
    assert_eq!(booked.status, StatusCode::SEE_OTHER, "{}", booked.text);
    let location = booked.location.expect("a redirect");
    let id: i64 = location.strip_prefix("/leases/").and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("{location}"));
    let lease = ctx.lease(id, &alice).await;
    assert_eq!((&lease["state"], &lease["start"]), (&json!("awaiting_approval"), &json!("2026-11-23T09:00:00Z")));
    let shown = browser.get(&location).await;
    assert!(shown.text.contains("<dd id=\"lease-state\">awaiting_approval (waits for an admin"), "{}", shown.text);
    // In the admin's queue.
    let mut admin = signed_in(&ctx, "admin").await;
    let queue = admin.get("/admin/leases").await;
    assert!(queue.text.contains(&format!("Lease {id} (big-run) by alice")), "{}", queue.text);
}
