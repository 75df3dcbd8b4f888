//! Who sees what: every route of the API (the OpenAPI document's list, so a
//! new route without a row fails) × every identity (no token, a user,
//! another user, a peer of the user's project, an admin), with the status
//! each gets and, in every answer a non-admin gets, none of the names,
//! projects, BMC addresses, passwords and tokens that are not his (README
//! "Who sees what"; the rules live in `controller/src/http/views.rs`).
//!
//! To add a route: add a row to [`rows`] with its five statuses (in the
//! order of [`IDENTITIES`]); `shared` marks routes where project peers see
//! each other's names (the project's own description and usage). An answer
//! may repeat what the caller named in the path (an error saying "you are
//! not a member of project 'p'" leaks nothing). The portal's pages take a
//! browser session, not a token: their rows are in [`page_rows`], asked by
//! each identity signed in through the sign-in form.

use std::collections::BTreeSet;

use ferrum_controller::model::BmcAddress;
use serde_json::{Value, json};
use utoipa::OpenApi;

use super::harness::{DEADLINE, TestContext, wait_until};
use super::web::{Browser, signed_in};

const IDENTITIES: [&str; 5] = ["no token", "user", "other user", "project peer", "admin"];

const ALICE: &str = "alice-zq";
const BOB: &str = "bob-zq";
const CAROL: &str = "carol-zq";
const ALPHA: &str = "p-alpha-zq";
const BETA: &str = "p-beta-zq";
const DAVE: &str = "dave-zq";
const DELTA: &str = "p-delta-zq";
const ERIN: &str = "erin-zq";
const BOB_ENV: &str = "bob-env-zq";
const BMC_PASSWORD: &str = "s3cret-zq";
const REFERENCE_BMC_IP: &str = "10.66.0.1";
const REFERENCE_BMC_HOST: &str = "sim-1-bmc.zq.example";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl someone@laptop";

fn bmc_url(i: u8) -> String {
    format!("ipmi://admin:{BMC_PASSWORD}@10.77.0.{i}:623")
}

/// One route as every identity sees it.
struct Row {
    method: &'static str,
    /// The route as the OpenAPI document names it.
    route: &'static str,
    /// The path asked, with `{…}` naming things of [`World`].
    path: &'static str,
    body: Option<Value>,
    /// The status for each of [`IDENTITIES`].
    status: [u16; 5],
    /// Project peers may see each other's names here.
    shared: bool,
}

fn row(method: &'static str, route: &'static str, path: &'static str, body: Option<Value>, status: [u16; 5]) -> Row {
    Row { method, route, path, body, status, shared: false }
}

fn shared(mut r: Row) -> Row {
    r.shared = true;
    r
}

/// Reads first (the world is as seeded), then writes, in this order.
fn rows() -> Vec<Row> {
    let get = |route, path, status| row("GET", route, path, None, status);
    let empty = || Some(json!({}));
    let reason = || Some(json!({"reason": "not now"}));
    vec![
        // Reads.
        get("/healthz", "/healthz", [200, 200, 200, 200, 200]),
        get("/api/v1/openapi.json", "/api/v1/openapi.json", [200, 200, 200, 200, 200]),
        get("/api/v1/nodes", "/api/v1/nodes", [401, 200, 200, 200, 200]),
        get("/api/v1/nodes/{name}", "/api/v1/nodes/sim-1", [401, 200, 200, 200, 200]),
        get("/api/v1/nodes/{name}/events", "/api/v1/nodes/sim-1/events", [401, 200, 200, 200, 200]),
        get("/api/v1/sites", "/api/v1/sites", [401, 200, 200, 200, 200]),
        get("/api/v1/nodes/{name}/inventory", "/api/v1/nodes/sim-1/inventory", [401, 200, 200, 200, 200]),
        get("/api/v1/nodes/{name}/agent-commands", "/api/v1/nodes/sim-1/agent-commands", [401, 403, 403, 403, 200]),
        get("/api/v1/nodes/{name}/operations", "/api/v1/nodes/sim-1/operations", [401, 403, 403, 403, 200]),
        get("/api/v1/boot/unknown-macs", "/api/v1/boot/unknown-macs", [401, 403, 403, 403, 200]),
        get("/api/v1/leases", "/api/v1/leases?all=true", [401, 200, 200, 200, 200]),
        get("/api/v1/leases/{id}", "/api/v1/leases/{alice_lease}", [401, 200, 404, 404, 200]),
        get("/api/v1/leases/{id}/deployments", "/api/v1/leases/{alice_lease}/deployments", [401, 200, 404, 404, 200]),
        get("/api/v1/deployments/{id}", "/api/v1/deployments/{alice_deployment}", [401, 200, 404, 404, 200]),
        get("/api/v1/availability", "/api/v1/availability?count=1&duration=1h", [401, 200, 200, 200, 200]),
        get("/api/v1/calendar", "/api/v1/calendar", [401, 200, 200, 200, 200]),
        shared(get("/api/v1/projects", "/api/v1/projects", [401, 200, 200, 200, 200])),
        get("/api/v1/users", "/api/v1/users", [401, 403, 403, 403, 200]),
        get("/api/v1/users/me", "/api/v1/users/me", [401, 200, 200, 200, 200]),
        get("/api/v1/users/{name}/tokens", "/api/v1/users/{alice}/tokens", [401, 200, 403, 403, 200]),
        // Personal data (GDPR): one's own, or anyone's for an admin.
        get("/api/v1/users/me/export", "/api/v1/users/me/export", [401, 200, 200, 200, 200]),
        get("/api/v1/users/{name}/export", "/api/v1/users/{alice}/export", [401, 200, 403, 403, 200]),
        get("/api/v1/environments", "/api/v1/environments", [401, 200, 200, 200, 200]),
        get("/api/v1/environments/{name}", "/api/v1/environments/tiny", [401, 200, 200, 200, 200]),
        shared(get("/api/v1/usage", "/api/v1/usage?group_by=user&from=2026-11-01T00:00:00Z", [401, 200, 200, 200, 200])),
        shared(get("/api/v1/usage/records", "/api/v1/usage/records?from=2026-11-01T00:00:00Z", [401, 200, 200, 200, 200])),
        get("/api/v1/audit", "/api/v1/audit", [401, 403, 403, 403, 200]),
        shared(get("/api/v1/projects/{name}/quota", "/api/v1/projects/{alpha}/quota", [401, 200, 403, 200, 200])),
        get("/api/v1/account-requests", "/api/v1/account-requests", [401, 403, 403, 403, 200]),
        get("/api/v1/account-requests/{id}", "/api/v1/account-requests/{request}", [401, 403, 403, 403, 200]),
        // Writes (after every read; each row sees the previous rows' effects).
        row("POST", "/api/v1/nodes", "/api/v1/nodes", empty(), [401, 400, 400, 400, 400]),
        row("POST", "/api/v1/nodes/import", "/api/v1/nodes/import", empty(), [401, 400, 400, 400, 400]),
        row("POST", "/api/v1/nodes/{name}/maintenance", "/api/v1/nodes/sim-3/maintenance", empty(), [401, 400, 400, 400, 400]),
        row("POST", "/api/v1/nodes/{name}/repaired", "/api/v1/nodes/sim-3/repaired", empty(), [401, 400, 400, 400, 400]),
        row(
            "POST",
            "/api/v1/nodes/{name}/power",
            "/api/v1/nodes/sim-1/power",
            Some(json!({"action": "status"})),
            [401, 200, 403, 403, 200],
        ),
        row("PUT", "/api/v1/nodes/{name}/boot-device", "/api/v1/nodes/sim-1/boot-device", empty(), [401, 400, 400, 400, 400]),
        row("PUT", "/api/v1/nodes/{name}/boot-target", "/api/v1/nodes/sim-1/boot-target", empty(), [401, 400, 400, 400, 400]),
        row("POST", "/api/v1/nodes/{name}/agent-commands", "/api/v1/nodes/sim-1/agent-commands", empty(), [401, 400, 400, 400, 400]),
        row("POST", "/api/v1/leases", "/api/v1/leases", empty(), [401, 400, 400, 400, 400]),
        row("PATCH", "/api/v1/leases/{id}", "/api/v1/leases/{alice_lease}", empty(), [401, 400, 400, 400, 400]),
        row("DELETE", "/api/v1/leases/{id}", "/api/v1/leases/{carol_lease}", None, [401, 404, 404, 200, 200]),
        row("POST", "/api/v1/leases/{id}/approve", "/api/v1/leases/{alice_lease}/approve", empty(), [401, 403, 403, 403, 409]),
        row("POST", "/api/v1/leases/{id}/reject", "/api/v1/leases/{alice_lease}/reject", empty(), [401, 403, 403, 403, 409]),
        row("POST", "/api/v1/leases/{id}/deployments", "/api/v1/leases/{alice_lease}/deployments", empty(), [401, 400, 400, 400, 400]),
        row("DELETE", "/api/v1/deployments/{id}", "/api/v1/deployments/{alice_deployment}", None, [401, 200, 404, 404, 200]),
        row("POST", "/api/v1/projects", "/api/v1/projects", empty(), [401, 400, 400, 400, 400]),
        row("PATCH", "/api/v1/projects/{name}", "/api/v1/projects/{alpha}", empty(), [401, 403, 403, 403, 200]),
        row("POST", "/api/v1/projects/{name}/members", "/api/v1/projects/{alpha}/members", empty(), [401, 400, 400, 400, 400]),
        row("DELETE", "/api/v1/projects/{name}/members/{user}", "/api/v1/projects/{beta}/members/{bob}", None, [401, 403, 403, 403, 200]),
        row("POST", "/api/v1/users", "/api/v1/users", empty(), [401, 400, 400, 400, 400]),
        row("POST", "/api/v1/users/{name}/tokens", "/api/v1/users/{alice}/tokens", None, [401, 201, 403, 403, 201]),
        row("DELETE", "/api/v1/users/{name}/tokens/{id}", "/api/v1/users/{alice}/tokens/999999", None, [401, 404, 403, 403, 404]),
        row("POST", "/api/v1/environments", "/api/v1/environments", empty(), [401, 400, 400, 400, 400]),
        row("POST", "/api/v1/account-requests", "/api/v1/account-requests", empty(), [400, 400, 400, 400, 400]),
        row(
            "POST",
            "/api/v1/account-requests/{id}/approve",
            "/api/v1/account-requests/{request}/approve",
            empty(),
            [401, 403, 403, 403, 201],
        ),
        row(
            "POST",
            "/api/v1/account-requests/{id}/reject",
            "/api/v1/account-requests/{request}/reject",
            reason(),
            [401, 403, 403, 403, 409],
        ),
        // Dave exists once his account request is approved (above).
        row("POST", "/api/v1/users/{name}/disable", "/api/v1/users/{dave}/disable", reason(), [401, 403, 403, 403, 200]),
        row("POST", "/api/v1/users/{name}/enable", "/api/v1/users/{dave}/enable", None, [401, 403, 403, 403, 200]),
        // Portal passwords and SSH keys (issue 19).
        row("POST", "/api/v1/users/{name}/activation-link", "/api/v1/users/{alice}/activation-link", None, [401, 403, 403, 403, 201]),
        get("/api/v1/users/{name}/ssh-keys", "/api/v1/users/{alice}/ssh-keys", [401, 200, 403, 403, 200]),
        // The admin adds the key alice added already: a conflict.
        row(
            "POST",
            "/api/v1/users/{name}/ssh-keys",
            "/api/v1/users/{alice}/ssh-keys",
            Some(json!({"public_key": KEY})),
            [401, 201, 403, 403, 409],
        ),
        row("DELETE", "/api/v1/users/{name}/ssh-keys/{id}", "/api/v1/users/{alice}/ssh-keys/999999", None, [401, 404, 403, 403, 404]),
        // The boot-service table (`ferrum-pxe`) and its tokens.
        get("/api/v1/boot/hosts", "/api/v1/boot/hosts", [401, 403, 403, 403, 200]),
        row("POST", "/api/v1/boot/tokens", "/api/v1/boot/tokens", None, [401, 403, 403, 403, 201]),
        // Erasure of personal data (admin): Dave's, last, since he is gone after.
        row("POST", "/api/v1/users/{name}/erase", "/api/v1/users/{dave}/erase", None, [401, 403, 403, 403, 200]),
    ]
}

/// Routes served beside the OpenAPI document's (not in it).
fn undocumented_rows() -> Vec<Row> {
    let empty = || Some(json!({}));
    let nowhere = [404; 5];
    vec![
        row("GET", "/metrics", "/metrics", None, [200, 200, 200, 200, 200]),
        // The agent protocol and the boot service live on the boot listener
        // only (README "The provisioning network"): the API port has none
        // of them, whoever asks (their own credentials are tested in
        // agent.rs and boot.rs).
        row("POST", "/agent/v1/register", "/agent/v1/register", empty(), nowhere),
        row("POST", "/agent/v1/inventory", "/agent/v1/inventory", empty(), nowhere),
        row("GET", "/agent/v1/command", "/agent/v1/command", None, nowhere),
        row("POST", "/agent/v1/commands/{id}/progress", "/agent/v1/commands/1/progress", empty(), nowhere),
        row("POST", "/agent/v1/commands/{id}/result", "/agent/v1/commands/1/result", empty(), nowhere),
        row("GET", "/boot/ipxe", "/boot/ipxe?mac=02:00:00:00:01:02", None, nowhere),
        row("GET", "/boot/files/{file}", "/boot/files/vmlinuz", None, nowhere),
        row("GET", "/images/{path}", "/images/tiny.raw.zst", None, nowhere),
        // The portal's pages take no token (a session cookie): whoever
        // sends a bearer token gets the public page, naming nobody.
        row("GET", "/", "/", None, [200; 5]),
        row("GET", "/login", "/login", None, [200; 5]),
        row("GET", "/static/ferrum.css", "/static/ferrum.css", None, [200; 5]),
        row("GET", "/static/filter-count.js", "/static/filter-count.js", None, [200; 5]),
        row("GET", "/static/hardware.js", "/static/hardware.js", None, [200; 5]),
        row("GET", "/static/lease.js", "/static/lease.js", None, [200; 5]),
        row("GET", "/static/book.js", "/static/book.js", None, [200; 5]),
        row("GET", "/activate/{token}", "/activate/ferrum_0000", None, [404; 5]),
    ]
}

/// One portal page as every identity's browser session sees it (none,
/// then [`IDENTITIES`]' users' and the admin's).
struct PageRow {
    method: &'static str,
    /// The path asked, with `{…}` naming things of [`World`].
    path: &'static str,
    /// The form posted (`None`: a GET); `{csrf}` is the session's
    /// anti-forgery token.
    form: Option<&'static [(&'static str, &'static str)]>,
    /// The status for each of [`IDENTITIES`] (without a session: 303 to
    /// the sign-in page).
    status: [u16; 5],
}

/// The portal's pages with a session (after every row of [`rows`]; each
/// row sees the previous rows' effects).
fn page_rows() -> Vec<PageRow> {
    let get = |path, status| PageRow { method: "GET", path, form: None, status };
    let post = |path, form, status| PageRow { method: "POST", path, form: Some(form), status };
    let csrf: &'static [(&str, &str)] = &[("csrf", "{csrf}")];
    vec![
        get("/", [200, 200, 200, 200, 200]),
        get("/profile", [303, 200, 200, 200, 200]),
        get("/profile/export", [303, 200, 200, 200, 200]),
        // Forms before sign-in take the form cookie's token: posted
        // without it, they are refused whoever is signed in.
        post("/login", &[("form_token", "x"), ("name", "admin"), ("password", "guess guess guess")], [403; 5]),
        post("/activate/ferrum_0000", &[("form_token", "x"), ("password", "guess guess guess")], [403; 5]),
        get("/request-account", [200; 5]),
        post("/request-account", &[("form_token", "x"), ("name", "mallory")], [403; 5]),
        // The confirmation page asks for a button press whatever the link
        // (mail scanners open links); the press checks it.
        get("/verify-email/ferrum_0000", [200; 5]),
        post("/verify-email/ferrum_0000", &[("form_token", "x")], [403; 5]),
        // The profile's forms act on the caller's own tokens and keys only.
        post("/profile/tokens", &[("csrf", ""), ("name", "forged")], [303, 403, 403, 403, 403]),
        post("/profile/tokens", &[("csrf", "{csrf}"), ("name", "made in the portal")], [303, 201, 201, 201, 201]),
        post("/profile/tokens/1/revoke", &[("csrf", "")], [303, 403, 403, 403, 403]),
        post("/profile/tokens/999999/revoke", csrf, [303, 404, 404, 404, 404]),
        post("/profile/keys", &[("csrf", ""), ("key", "ssh-ed25519 AAAA forged")], [303, 403, 403, 403, 403]),
        post("/profile/keys/999999/delete", csrf, [303, 404, 404, 404, 404]),
        // The hardware catalog (issue 19): everything shown as the API
        // shows it (sim-1's reference without its BMC adapter, its events
        // redacted, others' leases without owner or id).
        get("/hardware", [303, 200, 200, 200, 200]),
        get("/hardware?filter=cluster+%3D+%27sim%27&cluster=sim&min_gpus=1", [303, 200, 200, 200, 200]),
        get("/hardware?filter=gpu_cont+%3E+1", [303, 400, 400, 400, 400]),
        get("/hardware/_count?filter=NOT+exotic", [401, 200, 200, 200, 200]),
        get("/hardware/_count?filter=gpu_cont", [401, 400, 400, 400, 400]),
        get("/hardware/sim", [303, 200, 200, 200, 200]),
        get("/hardware/sim?filter=host+%3D+%27sim-2%27", [303, 200, 200, 200, 200]),
        get("/hardware/nowhere", [303, 404, 404, 404, 404]),
        get("/hardware/nodes/sim-1", [303, 200, 200, 200, 200]),
        get("/hardware/nodes/sim-2", [303, 200, 200, 200, 200]),
        get("/hardware/nodes/sim-3", [303, 200, 200, 200, 200]),
        get("/hardware/nodes/nowhere-1", [303, 404, 404, 404, 404]),
        // The calendar: everyone's chart shows others' leases as busy time
        // only (the forbidden names are checked on every page).
        get("/calendar", [303, 200, 200, 200, 200]),
        get("/calendar?zoom=month&count=1&duration=1h", [303, 200, 200, 200, 200]),
        post("/calendar/book", &[("csrf", "")], [303, 403, 403, 403, 403]),
        // A booking without nodes is refused in words; bob, whom the rows
        // above took out of his project, may not book at all.
        post("/calendar/book", &[("csrf", "{csrf}"), ("nodes", ""), ("duration", "1h")], [303, 400, 403, 400, 400]),
        // The booking page: its choices are the caller's own (environments
        // they may use, their keys, their projects); "Check" books nothing,
        // a refusal is said in words; bob may not book at all.
        get("/book", [303, 200, 200, 200, 200]),
        get("/book?count=2&filter=NOT+exotic&duration=1h", [303, 200, 200, 200, 200]),
        post("/book", &[("csrf", ""), ("action", "check"), ("count", "1"), ("duration", "1h")], [303, 403, 403, 403, 403]),
        post("/book", &[("csrf", "{csrf}"), ("action", "check"), ("count", "1"), ("duration", "1h")], [303, 200, 403, 200, 200]),
        post("/book", &[("csrf", "{csrf}"), ("action", "book"), ("count", "1"), ("duration", "soon")], [303, 400, 403, 400, 400]),
        // Usage: each sees the API's report for them (the forbidden names
        // are checked on the page), a project not theirs is refused.
        get("/usage", [303, 200, 200, 200, 200]),
        get("/usage?group_by=user&months=2&format=csv", [303, 200, 200, 200, 200]),
        get("/usage?project={alpha}", [303, 200, 403, 200, 200]),
        // The admin's approval queues (issue 19).
        get("/admin", [303, 403, 403, 403, 200]),
        get("/admin/account-requests", [303, 403, 403, 403, 200]),
        get("/admin/leases", [303, 403, 403, 403, 200]),
        // Alice's lease is running: nothing to decide.
        post("/admin/leases/{alice_lease}/reject", csrf, [303, 403, 403, 403, 409]),
        // Without the session's anti-forgery token, nobody's form counts.
        post("/admin/leases/{bob_waiting}/approve", &[("csrf", "")], [303, 403, 403, 403, 403]),
        post("/admin/leases/{bob_waiting}/approve", csrf, [303, 403, 403, 403, 303]),
        post("/admin/account-requests/{erin_request}/reject", &[("csrf", "{csrf}"), ("reason", "")], [303, 403, 403, 403, 400]),
        post("/admin/account-requests/{erin_request}/approve", csrf, [303, 403, 403, 403, 201]),
        // Notifications (issue 19): each sees only their own (bob's lease
        // approval just above among them; the forbidden names are checked
        // on the page); marking read takes the session's token.
        get("/notifications", [303, 200, 200, 200, 200]),
        post("/notifications/read", &[("csrf", "")], [303, 403, 403, 403, 403]),
        post("/notifications/read", csrf, [303, 303, 303, 303, 303]),
        // My leases (issue 19): another user's lease is the API's 404,
        // from the page, its progress stream and every form.
        get("/leases", [303, 200, 200, 200, 200]),
        get("/leases?all=1", [303, 200, 200, 200, 200]),
        get("/leases/{alice_lease}", [303, 200, 404, 404, 200]),
        // Alice's deploy runs (no agent): the stream's first event.
        get("/leases/{alice_lease}/events", [303, 200, 404, 404, 200]),
        get("/leases/{carol_lease}", [303, 404, 404, 200, 200]),
        get("/leases/{carol_lease}/events", [303, 404, 404, 200, 200]),
        get("/leases/999999", [303, 404, 404, 404, 404]),
        post("/leases/{alice_lease}/extend", &[("csrf", ""), ("end", "+1h")], [303, 403, 403, 403, 403]),
        post("/leases/{alice_lease}/extend", &[("csrf", "{csrf}"), ("end", "soon")], [303, 400, 404, 404, 400]),
        post("/leases/{alice_lease}/deploy", &[("csrf", "{csrf}"), ("environment", "")], [303, 400, 404, 404, 400]),
        post("/leases/{alice_lease}/end", &[("csrf", "")], [303, 403, 403, 403, 403]),
        // Bob cancels his approved lease; the admin's end of it then
        // changes nothing.
        post("/leases/{bob_waiting}/end", csrf, [303, 404, 303, 404, 303]),
        // The admin's nodes and audit log: pages for admins only, never a
        // BMC's password (checked on every page); forms refused without
        // the session's token, a refusal said in words.
        get("/admin/nodes", [303, 403, 403, 403, 200]),
        get("/admin/nodes?state=deploying&cluster=sim", [303, 403, 403, 403, 200]),
        get("/admin/nodes?state=asleep", [303, 403, 403, 403, 400]),
        get("/admin/nodes/sim-1", [303, 403, 403, 403, 200]),
        get("/admin/nodes/sim-2?power=1", [303, 403, 403, 403, 200]),
        get("/admin/nodes/nowhere-1", [303, 403, 403, 403, 404]),
        post("/admin/nodes/sim-3/maintenance", &[("csrf", ""), ("enabled", "true"), ("reason", "forged")], [303, 403, 403, 403, 403]),
        post("/admin/nodes/sim-3/maintenance", &[("csrf", "{csrf}"), ("enabled", "true"), ("reason", "")], [303, 403, 403, 403, 400]),
        post("/admin/nodes/sim-3/maintenance", &[("csrf", "{csrf}"), ("enabled", "true"), ("reason", "fan")], [303, 403, 403, 403, 303]),
        post(
            "/admin/nodes/sim-3/maintenance",
            &[("csrf", "{csrf}"), ("enabled", "false"), ("reason", "fan ok")],
            [303, 403, 403, 403, 303],
        ),
        post("/admin/nodes/sim-3/power", &[("csrf", ""), ("action", "status")], [303, 403, 403, 403, 403]),
        post("/admin/nodes/sim-3/power", &[("csrf", "{csrf}"), ("action", "status")], [303, 403, 403, 403, 303]),
        post("/admin/nodes/nowhere-1/power", &[("csrf", "{csrf}"), ("action", "status")], [303, 403, 403, 403, 404]),
        get("/admin/audit", [303, 403, 403, 403, 200]),
        get(
            "/admin/audit?actor=admin&action=node.maintenance&target=node%2Fsim-3&from=2020-01-01&to=2100-01-01",
            [303, 403, 403, 403, 200],
        ),
        get("/admin/audit?from=soon", [303, 403, 403, 403, 400]),
        // Last: signing out (without the token, nobody is signed out).
        post("/logout", &[("csrf", "")], [303, 403, 403, 403, 403]),
        post("/logout", csrf, [303, 303, 303, 303, 303]),
    ]
}

/// The seeded world: ids and tokens the rows and checks name.
struct World {
    tokens: [Option<String>; 5],
    places: Vec<(&'static str, String)>,
}

impl World {
    fn path(&self, template: &str) -> String {
        self.places.iter().fold(template.to_owned(), |p, (k, v)| p.replace(&format!("{{{k}}}"), v))
    }
}

/// Two projects (alice and carol in alpha, bob in beta), three nodes with
/// BMCs (sim-1 with a reference whose BMC adapter has an address), an
/// admin's maintenance of sim-1 with a reason naming bob and the BMC, bob's
/// ended lease with a deploy of his private environment on sim-1, bob's
/// running lease on sim-2, alice's running lease on sim-1 with a running
/// deploy, carol's future lease on sim-3, bob's large lease awaiting
/// approval, an agent inventory of sim-1, two account requests.
async fn seed() -> (TestContext, World) {
    let mut config = ferrum_controller::config::Config::default();
    config.boot.public_url = Some("http://10.10.0.1:8750".into());
    config.policy.approval_threshold_node_hours = 10.0;
    config.policy.approval_notice = std::time::Duration::from_secs(3600);
    let ctx = TestContext::empty_configured(config, std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor)).await;
    let mut reference: Value = serde_json::from_str(
        &std::fs::read_to_string(super::harness::fixtures().join("sites/grenoble/clusters/servan/nodes/servan-1.json")).expect("fixture"),
    )
    .expect("json");
    reference["uid"] = json!("sim-1");
    reference["exotic"] = json!(false);
    for adapter in reference["network_adapters"].as_array_mut().expect("adapters") {
        if adapter["management"] == true {
            adapter["ip"] = json!(REFERENCE_BMC_IP);
            adapter["network_address"] = json!(REFERENCE_BMC_HOST);
        }
    }
    let boot_mac = reference["network_adapters"][0]["mac"].as_str().expect("a boot MAC").to_owned();
    for i in 1..=3u8 {
        ctx.bmcs.bmc(&BmcAddress::parse(&bmc_url(i)).expect("url").endpoint());
        let mac = if i == 1 { boot_mac.clone() } else { format!("02:00:00:00:01:0{i}") };
        let mut body = json!({"name": format!("sim-{i}"), "site": "lab", "cluster": "sim", "macs": [mac], "ip": format!("10.9.1.{i}"), "bmc": bmc_url(i)});
        if i == 1 {
            body["reference"] = reference.clone();
        }
        ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
    }
    ctx.wait_nodes_available(3).await;
    let admin = ctx.admin.clone();
    let alice = ctx.user(ALICE, ALPHA).await;
    let carol = ctx.user(CAROL, ALPHA).await;
    let bob = ctx.user(BOB, BETA).await;

    let reason = format!("told {BOB}: BMC 10.77.0.1:623 flaky");
    ctx.post("/api/v1/nodes/sim-1/maintenance", &admin, json!({"enabled": true, "reason": reason})).await.expect(200);
    ctx.post("/api/v1/nodes/sim-1/maintenance", &admin, json!({"enabled": false, "reason": "back"})).await.expect(200);

    let tiny = json!({"name": "tiny", "version": 1, "description": "test image", "image": "tiny.raw.zst", "format": "raw.zst",
        "sha256": "ab".repeat(32), "size": 50_331_648u64, "root_partition": 1, "visibility": "public"});
    ctx.post("/api/v1/environments", &admin, tiny.clone()).await.expect(201);
    let mut private = tiny;
    private["name"] = json!(BOB_ENV);
    private["visibility"] = json!("user");
    ctx.post("/api/v1/environments", &bob, private).await.expect(201);

    // Bob's lease of sim-1, deployed then given back.
    let lease = ctx.post("/api/v1/leases", &bob, json!({"nodes": {"names": ["sim-1"]}, "duration": "1h"})).await.expect(201);
    let bob_old = lease["id"].as_i64().expect("id");
    ctx.wait_lease_state(bob_old, &bob, "active").await;
    let d = ctx.post(&format!("/api/v1/leases/{bob_old}/deployments"), &bob, json!({"environment": BOB_ENV, "ssh_keys": [KEY]})).await;
    let d = d.expect(201)["id"].as_i64().expect("id");
    ctx.delete(&format!("/api/v1/deployments/{d}"), &bob).await.expect(200);
    ctx.delete(&format!("/api/v1/leases/{bob_old}"), &bob).await.expect(200);
    wait_until("sim-1 back after bob's lease", DEADLINE, async || {
        let state = ctx.node_state("sim-1").await;
        if state == "available" { Ok(()) } else { Err(state) }
    })
    .await;

    let lease = ctx.post("/api/v1/leases", &bob, json!({"nodes": {"names": ["sim-2"]}, "duration": "1h"})).await.expect(201);
    ctx.wait_lease_state(lease["id"].as_i64().expect("id"), &bob, "active").await;
    let lease = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["sim-1"]}, "duration": "1h"})).await.expect(201);
    let alice_lease = lease["id"].as_i64().expect("id");
    // It starts after bob's released lease, a moment from now.
    ctx.advance(chrono::Duration::minutes(1));
    ctx.wait_lease_state(alice_lease, &alice, "active").await;
    let d = ctx.post(&format!("/api/v1/leases/{alice_lease}/deployments"), &alice, json!({"environment": "tiny", "ssh_keys": [KEY]})).await;
    let alice_deployment = d.expect(201)["id"].as_i64().expect("id");
    let later = super::harness::at(chrono::Duration::hours(3));
    let lease =
        ctx.post("/api/v1/leases", &carol, json!({"nodes": {"names": ["sim-3"]}, "duration": "1h", "start": later})).await.expect(201);
    let carol_lease = lease["id"].as_i64().expect("id");
    // 2 nodes x 6h = 12 node-hours, above the threshold of 10: it waits.
    let big = json!({"nodes": {"count": 2}, "duration": "6h", "start": super::harness::at(chrono::Duration::hours(5))});
    let lease = ctx.post("/api/v1/leases", &bob, big).await.expect(201);
    assert_eq!(lease["state"], "awaiting_approval");
    let bob_waiting = lease["id"].as_i64().expect("id");

    let store = ctx.store().await;
    let sim1 = store.get_node("sim-1").await.expect("sim-1");
    let report = json!({"schema_version": 1, "agent_version": "test", "processor": {"model": "QEMU Virtual CPU"},
        "architecture": {"nb_procs": 1, "nb_cores": 1, "nb_threads": 1}, "main_memory": {"ram_size": 4_294_967_296u64},
        "pci_ids_source": {"origin": "embedded"}});
    assert!(store.store_inventory(sim1.id, 1, &report.to_string(), 0).await.expect("inventory stored"));

    let request = json!({"name": DAVE, "email": "dave@zq.example", "affiliation": "zq", "project": DELTA, "motivation": "privacy tests of the ferrum API"});
    let request =
        ctx.request(reqwest::Method::POST, "/api/v1/account-requests", None, Some(&request)).await.expect(202)["id"].as_i64().expect("id");
    let request2 = json!({"name": ERIN, "email": "erin@zq.example", "affiliation": "zq", "project": DELTA, "motivation": "privacy tests of the ferrum portal"});
    let erin_request =
        ctx.request(reqwest::Method::POST, "/api/v1/account-requests", None, Some(&request2)).await.expect(202)["id"].as_i64().expect("id");

    let places = vec![
        ("alice_lease", alice_lease.to_string()),
        ("alice_deployment", alice_deployment.to_string()),
        ("carol_lease", carol_lease.to_string()),
        ("bob_waiting", bob_waiting.to_string()),
        ("erin_request", erin_request.to_string()),
        ("request", request.to_string()),
        ("alpha", ALPHA.to_owned()),
        ("beta", BETA.to_owned()),
        ("alice", ALICE.to_owned()),
        ("bob", BOB.to_owned()),
        ("dave", DAVE.to_owned()),
    ];
    let world = World { tokens: [None, Some(alice), Some(bob), Some(carol), Some(admin)], places };
    (ctx, world)
}

/// What identity `who` must not find in an answer (`shared`: on a route
/// where project peers see each other).
fn forbidden(who: usize, shared: bool, world: &World) -> Vec<String> {
    let mut out: Vec<String> = vec![BMC_PASSWORD.into()];
    // Others' tokens: every identity's but one's own.
    out.extend(world.tokens.iter().enumerate().filter(|&(i, _)| i != who).filter_map(|(_, t)| t.clone()));
    if who == 4 {
        return out;
    }
    out.extend(["10.77.0.1", "10.77.0.2", "10.77.0.3", REFERENCE_BMC_IP, REFERENCE_BMC_HOST].map(String::from));
    out.extend([DAVE, DELTA, ERIN].map(String::from));
    let (me, peer): (&[&str], &[&str]) = match who {
        1 => (&[ALICE, ALPHA], &[CAROL]),
        2 => (&[BOB, BETA, BOB_ENV], &[]),
        3 => (&[CAROL, ALPHA], &[ALICE]),
        _ => (&[], &[]),
    };
    for s in [ALICE, BOB, CAROL, ALPHA, BETA, BOB_ENV] {
        let allowed = me.contains(&s) || (shared && peer.contains(&s));
        if !allowed {
            out.push(s.to_owned());
        }
    }
    out
}

/// The `(method, route)` pairs of the OpenAPI document.
fn documented_routes() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(ferrum_controller::http::ApiDoc::openapi()).expect("the document serialises");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_with_every_identity() {
    let rows = rows();
    let documented = documented_routes();
    let covered: BTreeSet<(String, String)> = rows.iter().map(|r| (r.method.to_owned(), r.route.to_owned())).collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in controller/tests/it/privacy.rs: add a row to `rows()` for each (its status for each identity): {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&documented).collect();
    assert!(stale.is_empty(), "rows of controller/tests/it/privacy.rs for routes the OpenAPI document no longer has: {stale:?}");

    let (ctx, world) = seed().await;
    let mut failures = Vec::new();
    for r in rows.iter().chain(&undocumented_rows()) {
        let path = world.path(r.path);
        for (who, token) in world.tokens.iter().enumerate() {
            let method = reqwest::Method::from_bytes(r.method.as_bytes()).expect("a method");
            let answer = ctx.request(method, &path, token.as_deref(), r.body.as_ref()).await;
            let text = answer.body.to_string();
            if answer.status != r.status[who] {
                failures.push(format!(
                    "{} {path} as {}: {} (the row says {}): {}",
                    r.method,
                    IDENTITIES[who],
                    answer.status,
                    r.status[who],
                    text.chars().take(300).collect::<String>()
                ));
            }
            // What the caller named in the path, an answer may repeat.
            for secret in forbidden(who, r.shared, &world).into_iter().filter(|s| !path.contains(s.as_str())) {
                if let Some(at) = text.find(&secret) {
                    let around: String = text[at.saturating_sub(120)..].chars().take(240).collect();
                    failures.push(format!("{} {path} as {} shows '{secret}': …{around}…", r.method, IDENTITIES[who]));
                }
            }
        }
    }

    // The portal's pages: each identity signed in with its own session.
    let mut browsers = vec![Browser::new(&ctx)];
    for name in [ALICE, BOB, CAROL, "admin"] {
        browsers.push(signed_in(&ctx, name).await);
    }
    let mut csrfs = vec![String::new()];
    for browser in &mut browsers[1..] {
        csrfs.push(browser.get("/").await.field("csrf"));
    }
    for r in page_rows() {
        let path = world.path(r.path);
        for (who, browser) in browsers.iter_mut().enumerate() {
            let page = match r.form {
                // A stream does not end while something moves.
                None if path.ends_with("/events") => browser.first_event(&path).await,
                None => browser.get(&path).await,
                Some(form) => {
                    let form: Vec<(&str, String)> = form.iter().map(|(k, v)| (*k, v.replace("{csrf}", &csrfs[who]))).collect();
                    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    browser.post(&path, &pairs).await
                }
            };
            if page.status.as_u16() != r.status[who] {
                failures.push(format!(
                    "page {} {path} as {}: {} (the row says {}): {}",
                    r.method,
                    IDENTITIES[who],
                    page.status,
                    r.status[who],
                    page.text.chars().take(300).collect::<String>()
                ));
            }
            for secret in forbidden(who, false, &world).into_iter().filter(|s| !path.contains(s.as_str())) {
                if let Some(at) = page.text.find(&secret) {
                    let around: String = page.text[at.saturating_sub(120)..].chars().take(240).collect();
                    failures.push(format!("page {} {path} as {} shows '{secret}': …{around}…", r.method, IDENTITIES[who]));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// What a user sees of a node's events: his own in full, the system's
/// actor, an admin's maintenance note without names and BMC, others as
/// "another user" with the reason hidden; admins all.
#[tokio::test]
async fn node_events_show_others_redacted() {
    let (ctx, world) = seed().await;
    let token = |who: usize| world.tokens[who].clone().expect("a token");
    let events = |v: Value| -> Vec<(String, String)> {
        v.as_array()
            .expect("events")
            .iter()
            .map(|e| (e["actor"].as_str().expect("actor").to_owned(), e["reason"].as_str().expect("reason").to_owned()))
            .collect()
    };
    // Events are only ever appended (alice's deploy goes on): hers first,
    // then the admin's, which hers are the beginning of.
    let alice = events(ctx.get("/api/v1/nodes/sim-1/events", &token(1)).await.expect(200));
    let all = events(ctx.get("/api/v1/nodes/sim-1/events", &token(4)).await.expect(200));
    assert!(alice.len() >= 9 && alice.len() <= all.len(), "a user sees every event, redacted: {alice:?}");
    assert!(all.iter().any(|(a, r)| a == BOB && r.contains(BOB_ENV)), "admins see bob's deploy: {all:?}");
    assert!(all.iter().any(|(a, r)| a == "admin" && r.contains(BOB)), "admins see the maintenance reason: {all:?}");
    for ((actor, reason), (seen_actor, seen_reason)) in all.iter().zip(&alice) {
        match actor.as_str() {
            ALICE => assert_eq!((seen_actor, seen_reason), (actor, reason), "her own events in full"),
            "system" => assert_eq!(seen_actor, "system"),
            // The admin's maintenance note, without bob's name and the BMC.
            "admin" if reason.contains(BOB) => {
                assert_eq!((seen_actor.as_str(), seen_reason.as_str()), ("admin", "told <name>: BMC <bmc> flaky"))
            }
            "admin" => assert_eq!(seen_actor, "admin"),
            _ => assert_eq!((seen_actor.as_str(), seen_reason.as_str()), ("another user", "(shown to admins only)")),
        }
    }
    assert!(alice.iter().any(|(a, r)| a == ALICE && r.starts_with("deploying tiny")), "{alice:?}");
    // Bob sees his own deploy's reason, and alice's as another user's.
    let bob = events(ctx.get("/api/v1/nodes/sim-1/events", &token(2)).await.expect(200));
    assert!(bob.iter().any(|(a, r)| a == BOB && r.contains(BOB_ENV)), "{bob:?}");
    assert!(bob.iter().any(|(a, _)| a == "another user"), "{bob:?}");
}

/// The reference's BMC adapter is the admins'; the rest of the reference
/// is everyone's.
#[tokio::test]
async fn references_lose_their_bmc_for_users() {
    let (ctx, world) = seed().await;
    let alice = world.tokens[1].clone().expect("a token");
    let management =
        |reference: &Value| reference["network_adapters"].as_array().expect("adapters").iter().filter(|a| a["management"] == true).count();
    for path in ["/api/v1/nodes/sim-1", "/api/v1/nodes/sim-1/inventory"] {
        let seen = ctx.get(path, &alice).await.expect(200);
        assert_eq!(management(&seen["reference"]), 0, "{path}: {}", seen["reference"]["network_adapters"]);
        assert!(seen["reference"]["processor"].is_object(), "{path}: the rest of the reference is shown");
        let admin = ctx.get(path, &ctx.admin).await.expect(200);
        assert_eq!(management(&admin["reference"]), 1, "{path}");
        assert!(admin.to_string().contains(REFERENCE_BMC_IP), "{path}");
    }
}
