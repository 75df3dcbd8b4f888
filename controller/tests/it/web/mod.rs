//! The web portal over HTTP, as a browser speaks it (forms, cookies,
//! redirects not followed): activation links, sign-in and sign-out,
//! anti-forgery tokens, session fixation, throttling, the profile's
//! tokens and SSH keys, the admin's approval queues (account requests,
//! large leases; nodes, with maintenance and power, and the audit log),
//! the calendar, the hardware catalog, and the user's leases (list, page,
//! its forms, and its live progress stream followed through a simulated
//! deploy). What a user clicks through is tested in a real browser too
//! (`tests/web/`, Playwright).
//!
//! This module holds the browser of these tests (`Browser`, `Page`) and
//! the helpers several pages' tests share; each page's tests are in the
//! module of its name.

use std::collections::BTreeMap;

use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::config::Config;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use super::harness::{DEADLINE, TestContext, at, wait_until};

mod admin;
mod book;
mod calendar;
mod hardware;
mod leases;
mod sign_in;
mod usage;

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

/// A public account request (the API's form), its id.
pub(super) async fn account_request(ctx: &TestContext, name: &str) -> i64 {
    let ask = json!({"name": name, "email": format!("{name}@uni.example"), "affiliation": "Université de Nantes", "status": "student",
        "project": "p-robots", "motivation": "Benchmarking ROS 2 planners on GPUs for my thesis."});
    let sent = ctx.request(reqwest::Method::POST, "/api/v1/account-requests", None, Some(&ask)).await.expect(202);
    sent["id"].as_i64().expect("id")
}

pub(super) async fn request_state(ctx: &TestContext, id: i64) -> Value {
    ctx.get(&format!("/api/v1/account-requests/{id}"), &ctx.admin).await.expect(200)
}

/// The fixtures' nodes, and leases above 10 node-hours waiting for an
/// admin (at least an hour before their start).
pub(super) async fn with_approval_threshold() -> TestContext {
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

/// A portal page is well under 200 KB.
pub(super) const PAGE_BUDGET: usize = 200 * 1024;

/// `text` encoded for a URL's query.
pub(super) fn query(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `text` as askama writes it in a page (HTML-escaped).
pub(super) fn escaped(text: &str) -> String {
    text.replace('&', "&#38;").replace('<', "&#60;").replace('>', "&#62;").replace('"', "&#34;").replace('\'', "&#39;")
}

/// A BMC URL of the admin pages' tests: its password must never show.
pub(super) fn bmc_of(i: u8) -> String {
    format!("ipmi://root:s3cret-pw-{i}@10.9.2.{i}:623")
}

pub(super) async fn node_with_bmc(
    ctx: &TestContext,
    name: &str,
    cluster: &str,
    i: u8,
) -> std::sync::Arc<ferrum_controller::power::sim::SimBmc> {
    ctx.enrol_with_sim_bmc(name, cluster, &format!("02:00:00:00:0c:0{i}"), &bmc_of(i)).await
}

/// No BMC password nor URL in a page.
#[track_caller]
pub(super) fn no_bmc_secret(page: &Page) {
    assert!(!page.text.contains("s3cret"), "a BMC password in {}", page.text);
    assert!(!page.text.contains("ipmi://"), "a BMC URL in {}", page.text);
}

/// The lease page's form posted with the session's token.
pub(super) async fn lease_form(browser: &mut Browser, csrf: &str, path: &str, fields: &[(&str, &str)]) -> Page {
    let mut form = vec![("csrf", csrf)];
    form.extend_from_slice(fields);
    browser.post(path, &form).await
}

pub(super) const LEASE_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

/// One Server-Sent Event: its name and data.
pub(super) fn sse_events(text: &str) -> Vec<(String, String)> {
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

pub(super) const DESK_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIbVmR/TNyE+Jq3F4nDVz6LVYq4x6VaBZqdv0cfk9Sg0 alice@desk";

/// The ids of the SSH keys a booking page offers, in its order.
pub(super) fn offered_keys(page: &Page) -> Vec<String> {
    let marker = "name=\"key\" value=\"";
    page.text.match_indices(marker).map(|(at, _)| page.text[at + marker.len()..].split('"').next().unwrap_or_default().to_owned()).collect()
}

/// The booking form posted with the session's token.
/// The booking form sent with `action` (`check` or `book`) and `fields`.
pub(super) async fn book_form(browser: &mut Browser, csrf: &str, action: &str, fields: &[(&str, &str)]) -> Page {
    let mut form = vec![("csrf", csrf), ("action", action)];
    form.extend_from_slice(fields);
    browser.post("/book", &form).await
}

/// The message beside a field of a page (`<p class="error" id="FIELD-error">`).
pub(super) fn error_beside(page: &Page, field: &str) -> String {
    let marker = format!("<p class=\"error\" id=\"{field}-error\">");
    let at = page.text.find(&marker).unwrap_or_else(|| panic!("no error beside {field}: {}", page.text)) + marker.len();
    page.text[at..].split("</p>").next().unwrap_or_default().to_owned()
}
