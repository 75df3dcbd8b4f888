//! End-to-end checks of the `ferrum` binary against a scripted stand-in
//! server: the requests it sends (paths, queries, bodies, the bearer token),
//! what it prints, and its exit codes. The stand-in answers canned bodies,
//! one per connection, in order; it knows nothing of ferrum's rules — tests
//! against the real controller live in the `tests` crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const TOKEN: &str = "t0k-secret";

/// One request as the stand-in server received it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    authorization: Option<String>,
    body: String,
}

impl Request {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("request body is JSON")
    }
}

/// Serves `answers` (status, JSON body), one per connection, and records
/// the requests. The thread is left blocked on `accept` once the answers are
/// spent or the binary has exited; it ends with the test process.
fn serve(answers: Vec<(u16, String)>) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (status, body) in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let target = parts.next().unwrap_or_default().to_owned();
            let mut length = 0usize;
            let mut authorization = None;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).expect("header");
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').expect("header colon");
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().expect("length"),
                    "authorization" => authorization = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
            let mut buf = vec![0; length];
            reader.read_exact(&mut buf).expect("body");
            log.lock().expect("lock").push(Request { method, target, authorization, body: String::from_utf8(buf).expect("utf-8 body") });
            let mut stream = reader.into_inner();
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).expect("write answer");
        }
    });
    (url, seen)
}

/// Runs `ferrum` with a clean environment: no FERRUM_* variables and an
/// empty home, so the developer's own config never leaks in.
fn ferrum(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrum"));
    cmd.env_clear().env("HOME", home).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ferrum")
}

fn with_server(url: &str) -> Vec<(&'static str, String)> {
    vec![("FERRUM_URL", url.to_owned()), ("FERRUM_TOKEN", TOKEN.to_owned())]
}

fn run(url: &str, args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("home");
    let env = with_server(url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ferrum(home.path(), &env, args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn requests(seen: &Arc<Mutex<Vec<Request>>>) -> Vec<Request> {
    seen.lock().expect("lock").clone()
}

fn error(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

const NODE: &str = r#"{"name":"chifflot-1","site":"lille","cluster":"chifflot","state":"available","policy":"in_service","macs":["0c:42:a1:00:00:01"],"properties":{"gpu_count":2,"gpu_model":"Tesla P100-PCIE-16GB","memnode":196608},"created_at":"2026-11-01T08:00:00Z","updated_at":"2026-11-20T17:00:00Z"}"#;

fn lease(state: &str) -> String {
    format!(
        r#"{{"id":12,"owner":"alice","project":"p-vision","type":"default","state":"{state}","start":"2026-11-22T09:00:00Z","end":"2026-11-22T13:00:00Z","nodes":["chifflot-1","chifflot-2"],"exotic":false,"created_at":"2026-11-21T18:00:00Z"}}"#
    )
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/g5k-reference")
}

#[test]
fn help_documents_exit_codes_and_exits_zero() {
    let home = tempfile::tempdir().expect("home");
    let out = ferrum(home.path(), &[], &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("Exit codes:"), "{}", stdout(&out));
}

#[test]
fn usage_errors_exit_2() {
    let home = tempfile::tempdir().expect("home");
    let out = ferrum(home.path(), &[], &["lease", "create", "--count", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_missing_token_says_where_to_put_one() {
    let home = tempfile::tempdir().expect("home");
    let out = ferrum(home.path(), &[], &["node", "list"]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(err.contains("--token") && err.contains("FERRUM_TOKEN"), "{err}");
    assert!(err.contains(&home.path().join(".config/ferrum/config.toml").display().to_string()), "{err}");
}

#[test]
fn the_config_file_supplies_url_and_token() {
    let (url, seen) = serve(vec![(200, "[]".to_owned())]);
    let home = tempfile::tempdir().expect("home");
    let dir = home.path().join(".config/ferrum");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("config.toml"), format!("url = \"{url}\"\ntoken = \"file-token\"\n")).expect("write");
    let out = ferrum(home.path(), &[], &["node", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(requests(&seen)[0].authorization.as_deref(), Some("Bearer file-token"));

    // The flag beats the file.
    let (url, seen) = serve(vec![(200, "[]".to_owned())]);
    let out = ferrum(home.path(), &[], &["node", "list", "--url", &url, "--token", "flag-token"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(requests(&seen)[0].authorization.as_deref(), Some("Bearer flag-token"));
}

#[test]
fn a_broken_config_file_is_named() {
    let home = tempfile::tempdir().expect("home");
    let file = home.path().join("ferrum.toml");
    std::fs::write(&file, "url = \"http://x\"\ntokn = \"abc\"\n").expect("write");
    let out = ferrum(home.path(), &[("FERRUM_CONFIG", file.to_str().expect("utf-8"))], &["whoami"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&file.display().to_string()) && err.contains("tokn"), "{err}");
    assert!(!err.contains("abc"), "{err}");
}

#[test]
fn an_unreachable_server_exits_6_with_a_hint() {
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", listener.local_addr().expect("addr"))
    };
    let out = run(&url, &["node", "list"]);
    assert_eq!(out.status.code(), Some(6));
    let err = stderr(&out);
    assert!(err.contains(&url) && err.contains("FERRUM_URL") && err.contains("ferrumd"), "{err}");
    assert!(!err.contains(TOKEN), "{err}");
}

#[test]
fn node_list_sends_the_filter_and_token_and_prints_a_table() {
    let (url, seen) = serve(vec![(200, format!("[{NODE}]"))]);
    let out = run(&url, &["node", "list", "--filter", "gpu_count >= 2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let req = &requests(&seen)[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.target, "/api/v1/nodes?filter=gpu_count+%3E%3D+2");
    assert_eq!(req.authorization.as_deref(), Some(&*format!("Bearer {TOKEN}")));
    let text = stdout(&out);
    assert!(text.starts_with("NAME") && text.contains("chifflot-1") && text.contains("2 x Tesla P100-PCIE-16GB"), "{text}");
}

#[test]
fn json_prints_the_answer_as_sent() {
    let (url, _) = serve(vec![(200, NODE.to_owned())]);
    let out = run(&url, &["node", "show", "chifflot-1", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let printed: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(printed, serde_json::from_str::<serde_json::Value>(NODE).expect("JSON"));
    // Key order is the server's, not alphabetical.
    assert!(text.find("\"name\"") < text.find("\"cluster\""), "{text}");
}

#[test]
fn a_taken_slot_exits_3_with_the_earliest_start() {
    let body = serde_json::json!({"error": {
        "code": "conflict",
        "message": "only 1 of 2 nodes matching `gpu_count >= 2` is free at 2026-11-22T09:00:00Z",
        "earliest_start": "2026-11-22T13:00:00Z"}})
    .to_string();
    let (url, seen) = serve(vec![(409, body)]);
    let out = run(
        &url,
        &["lease", "create", "--count", "2", "--filter", "gpu_count >= 2", "--duration", "2h", "--start", "2026-11-22T09:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(err.contains("only 1 of 2 nodes") && err.contains("2026-11-22T13:00:00Z"), "{err}");
    let req = &requests(&seen)[0];
    assert_eq!((req.method.as_str(), req.target.as_str()), ("POST", "/api/v1/leases"));
    let body = req.json();
    assert_eq!(body["nodes"]["count"], 2);
    assert_eq!(body["duration"], "2h");
    assert_eq!(body["start"], "2026-11-22T09:00:00Z");
}

#[test]
fn lease_create_reads_ssh_keys_and_defaults_to_deploy() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("id_ed25519.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3Nz me@laptop\n").expect("write");
    let (url, seen) = serve(vec![(201, lease("pending"))]);
    let out = run(
        &url,
        &["lease", "create", "--count", "1", "--duration", "90m", "--deploy", "debian12-min", "--ssh-key", key.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body = requests(&seen)[0].json();
    assert_eq!(body["type"], "deploy");
    assert_eq!(body["duration"], "1h 30m");
    assert_eq!(body["deploy"], serde_json::json!({"environment": "debian12-min", "ssh_keys": ["ssh-ed25519 AAAAC3Nz me@laptop"]}));
    assert!(stdout(&out).contains("pending"), "{}", stdout(&out));
}

#[test]
fn statuses_map_to_exit_codes() {
    for (status, code, expected) in
        [(404, "not_found", 5), (401, "unauthorized", 4), (403, "forbidden", 4), (400, "invalid_filter", 2), (500, "internal", 1)]
    {
        let (url, _) = serve(vec![(status, error(code, "unknown property `gpu_cnt` at position 0"))]);
        let out = run(&url, &["node", "list", "--filter", "gpu_cnt > 1"]);
        assert_eq!(out.status.code(), Some(expected), "{status}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("unknown property `gpu_cnt` at position 0"), "{err}");
        assert!(!err.contains(TOKEN), "{err}");
        assert!(stdout(&out).is_empty());
    }
}

#[test]
fn cancel_refuses_a_started_lease() {
    let (url, seen) = serve(vec![(200, lease("active"))]);
    let out = run(&url, &["lease", "cancel", "12"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("ferrum lease release 12"), "{}", stderr(&out));
    assert_eq!(requests(&seen).len(), 1, "no DELETE after the refusal");
}

#[test]
fn cancel_deletes_a_pending_lease() {
    let (url, seen) = serve(vec![(200, lease("pending")), (200, lease("cancelled"))]);
    let out = run(&url, &["lease", "cancel", "12"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = requests(&seen);
    assert_eq!(reqs[1].method, "DELETE");
    assert_eq!(reqs[1].target, "/api/v1/leases/12");
    assert!(stdout(&out).starts_with("lease 12 cancelled"), "{}", stdout(&out));
}

#[test]
fn extend_by_adds_to_the_current_end() {
    let (url, seen) = serve(vec![(200, lease("active")), (200, lease("active").replace("13:00:00Z", "15:30:00Z"))]);
    let out = run(&url, &["lease", "extend", "12", "--by", "2h 30m"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = requests(&seen);
    assert_eq!((reqs[0].method.as_str(), reqs[1].method.as_str()), ("GET", "PATCH"));
    assert_eq!(reqs[1].json(), serde_json::json!({"end": "2026-11-22T15:30:00Z"}));
    assert!(stdout(&out).contains("now ends at 2026-11-22T15:30:00Z (was 2026-11-22T13:00:00Z)"), "{}", stdout(&out));
}

#[test]
fn user_add_prints_the_token_last() {
    let created =
        r#"{"user":{"name":"alice","role":"user","projects":["p-vision"],"created_at":"2026-11-01T09:00:00Z"},"token":"fe_new_secret"}"#;
    let (url, seen) = serve(vec![(201, created.to_owned())]);
    let out = run(&url, &["admin", "user", "add", "alice", "--project", "p-vision", "--email", "a@x.org"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().last(), Some("fe_new_secret"));
    assert_eq!(
        requests(&seen)[0].json(),
        serde_json::json!({"name": "alice", "role": "user", "email": "a@x.org", "projects": ["p-vision"]})
    );
}

#[test]
fn account_export_prints_the_answer_as_json() {
    let data = r#"{"exported_at":"2026-11-01T09:00:00Z","user":{"name":"alice","role":"user","projects":["p-vision"],"created_at":"2026-11-01T09:00:00Z"},"tokens":[],"ssh_keys":[],"account_requests":[],"leases":[],"usage_records":[]}"#;
    let (url, seen) = serve(vec![(200, data.to_owned()), (200, data.to_owned())]);
    let out = run(&url, &["account", "export"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(printed["user"]["name"], "alice");
    let out = run(&url, &["admin", "user", "export", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let targets: Vec<(String, String)> = requests(&seen).into_iter().map(|r| (r.method, r.target)).collect();
    assert_eq!(targets, vec![("GET".into(), "/api/v1/users/me/export".into()), ("GET".into(), "/api/v1/users/alice/export".into())]);
}

#[test]
fn user_erase_prints_the_pseudonym_or_the_refusal() {
    let erased = r#"{"pseudonym":"erased-0123456789abcdef","erased_at":"2026-11-01T09:00:00Z"}"#;
    let refused = error("conflict", "user 'bob' holds leases that are not over: 7 (active); release or cancel them first");
    let (url, seen) = serve(vec![(200, erased.to_owned()), (409, refused)]);
    let out = run(&url, &["admin", "user", "erase", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("personal data of alice erased") && stdout(&out).contains("erased-0123456789abcdef"), "{}", stdout(&out));
    let out = run(&url, &["admin", "user", "erase", "bob"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("7 (active)"), "{}", stderr(&out));
    let reqs = requests(&seen);
    assert_eq!((reqs[0].method.as_str(), reqs[0].target.as_str()), ("POST", "/api/v1/users/alice/erase"));
    assert_eq!(reqs[1].target, "/api/v1/users/bob/erase");
}

#[test]
fn import_sends_every_node_of_the_tree() {
    let report = r#"{"added":["chifflot-1","chifflot-2","chifflot-3","chifflot-4","chifflot-5","chifflot-6","chifflot-7","chifflot-8"],"changed":[],"unchanged":["servan-1","servan-2"]}"#;
    let (url, seen) = serve(vec![(200, report.to_owned())]);
    let out = run(&url, &["node", "import", fixtures().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let body = requests(&seen)[0].json();
    let nodes = body["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 10);
    assert!(nodes.iter().all(|n| n["description"]["uid"].is_string()));
    let text = stdout(&out);
    assert!(text.contains("read 10 node descriptions"), "{text}");
    assert!(text.contains("added        8  chifflot-[1-8]") && text.contains("unchanged    2  servan-[1-2]"), "{text}");
}

#[test]
fn import_of_a_missing_dir_names_it_without_calling_the_server() {
    let (url, seen) = serve(vec![]);
    let out = run(&url, &["node", "import", "/nonexistent/g5k"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/g5k"), "{}", stderr(&out));
    assert!(requests(&seen).is_empty());
}

#[test]
fn power_reports_each_node_and_fails_if_one_fails() {
    let (url, seen) = serve(vec![(200, r#"{"power":"on"}"#.to_owned()), (404, error("not_found", "no node `n9`"))]);
    let out = run(&url, &["node", "power", "soft-off", "chifflot-1", "n9"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let reqs = requests(&seen);
    assert_eq!(reqs[0].target, "/api/v1/nodes/chifflot-1/power");
    assert_eq!(reqs[0].json(), serde_json::json!({"action": "soft-off"}));
    let text = stdout(&out);
    assert!(text.contains("power=on") && text.contains("no node `n9`"), "{text}");
    assert!(stderr(&out).contains("1 of 2 nodes"), "{}", stderr(&out));
}

#[test]
fn calendar_draws_a_chart_of_the_terminal_width() {
    let cal = r#"{"from":"2026-11-22T00:00:00Z","to":"2026-11-29T00:00:00Z","nodes":[{"node":"chifflot-1","state":"available","busy":[{"start":"2026-11-22T09:00:00Z","end":"2026-11-22T13:00:00Z","type":"default","state":"pending"}]}]}"#;
    let (url, seen) = serve(vec![(200, cal.to_owned())]);
    let home = tempfile::tempdir().expect("home");
    let out = ferrum(
        home.path(),
        &[("FERRUM_URL", &url), ("FERRUM_TOKEN", TOKEN), ("COLUMNS", "60")],
        &["calendar", "--from", "2026-11-22T00:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(requests(&seen)[0].target, "/api/v1/calendar?from=2026-11-22T00%3A00%3A00Z");
    let text = stdout(&out);
    let row = text.lines().find(|l| l.starts_with("chifflot-1")).expect("row");
    assert!(row.len() <= 60 && row.contains('#'), "{text}");
}

#[test]
fn a_local_start_is_read_in_the_sites_time_zone() {
    let sites = r#"[{"name":"lille","timezone":"Europe/Paris","domain":"ferrum.internal"}]"#;
    let (url, seen) = serve(vec![(200, sites.to_owned()), (201, lease("pending"))]);
    let out = run(&url, &["lease", "create", "--count", "2", "--duration", "2h", "--start", "2027-01-15 09:00", "--name", "sweep"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = requests(&seen);
    assert_eq!((reqs[0].method.as_str(), reqs[0].target.as_str()), ("GET", "/api/v1/sites"));
    let body = reqs[1].json();
    assert_eq!(body["start"], "2027-01-15T08:00:00Z", "09:00 in Paris is 08:00 UTC in winter");
    assert_eq!(body["name"], "sweep");

    // Two sites in different zones and nothing to tell which: a usage
    // error that says what to write, and no lease request.
    let sites = r#"[{"name":"lille","timezone":"Europe/Paris","domain":"x"},{"name":"mtl","timezone":"America/Montreal","domain":"x"}]"#;
    let (url, seen) = serve(vec![(200, sites.to_owned())]);
    let out = run(&url, &["lease", "create", "--count", "2", "--duration", "2h", "--start", "2027-01-15 09:00"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--site") && stderr(&out).contains("lille, mtl"), "{}", stderr(&out));
    assert_eq!(requests(&seen).len(), 1);
}

#[test]
fn a_start_from_now_needs_no_site() {
    let (url, seen) = serve(vec![(201, lease("pending"))]);
    let before = chrono::Utc::now();
    let out = run(&url, &["lease", "create", "--count", "1", "--duration", "1h", "--start", "+2h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = requests(&seen);
    assert_eq!(reqs.len(), 1, "no site lookup");
    let start: chrono::DateTime<chrono::Utc> = reqs[0].json()["start"].as_str().expect("start").parse().expect("RFC 3339");
    let offset = start - before;
    assert!(offset >= chrono::Duration::hours(2) && offset < chrono::Duration::hours(2) + chrono::Duration::minutes(1), "{offset}");
}

#[test]
fn api_fields_in_errors_are_named_as_flags() {
    let message = "nodes.names: 'servan-1' is exotic (prototype) hardware; set exotic: true to reserve it";
    let (url, _) = serve(vec![(400, error("bad_request", message))]);
    let out = run(&url, &["lease", "create", "--names", "servan-1", "--duration", "1h"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--names: 'servan-1' is exotic (prototype) hardware; add --exotic to reserve it"), "{err}");
}

#[test]
fn cancel_and_release_take_several_ids_and_report_each() {
    let (url, seen) = serve(vec![
        (200, lease("pending")),
        (200, lease("cancelled")),
        (404, error("not_found", "lease 99 does not exist")),
        (200, lease("active").replace("\"id\":12", "\"id\":14")),
    ]);
    let out = run(&url, &["lease", "cancel", "12", "99", "14"]);
    assert_eq!(out.status.code(), Some(5), "the first failure's code: {}", stderr(&out));
    assert_eq!(stdout(&out), "lease 12 cancelled\n");
    let err = stderr(&out);
    assert!(
        err.contains("lease 99") && err.contains("lease 14 already started") && err.contains("cancel failed for 2 of 3 leases"),
        "{err}"
    );
    let targets: Vec<String> = requests(&seen).iter().map(|r| format!("{} {}", r.method, r.target)).collect();
    assert_eq!(targets, ["GET /api/v1/leases/12", "DELETE /api/v1/leases/12", "GET /api/v1/leases/99", "GET /api/v1/leases/14"]);

    let (url, seen) = serve(vec![(200, lease("finished")), (200, lease("cancelled").replace("\"id\":12", "\"id\":13"))]);
    let out = run(&url, &["--json", "lease", "release", "12", "13"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answers: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON array");
    assert_eq!((answers[0]["state"].as_str(), answers[1]["id"].as_i64()), (Some("finished"), Some(13)));
    assert!(requests(&seen).iter().all(|r| r.method == "DELETE"));
}

#[test]
fn lease_list_by_user_and_extend_by_duration() {
    let (url, seen) = serve(vec![(200, format!("[{}]", lease("active")))]);
    let out = run(&url, &["lease", "list", "--user", "alice"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(requests(&seen)[0].target, "/api/v1/leases?owner=alice");

    let (url, seen) = serve(vec![(200, lease("active")), (200, lease("active").replace("13:00:00Z", "14:00:00Z"))]);
    let out = run(&url, &["lease", "extend", "12", "--duration", "1h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(requests(&seen)[1].json(), serde_json::json!({"end": "2026-11-22T14:00:00Z"}));
}

#[test]
fn lease_create_waits_for_its_deployment() {
    let deployment = |state: &str, node_state: &str, phase: &str| {
        format!(
            r#"{{"id":7,"lease":12,"environment":"debian12-min","version":1,"requested_by":"alice","state":"{state}","created_at":"2026-11-22T09:00:00Z","nodes":[{{"node":"chifflot-1","kind":"deploy","state":"{node_state}","phase":"{phase}","attempt":1,"phase_seconds":1.0,"deadline":"2026-11-22T09:30:00Z","phases":[],"controller_ms":0,"started_at":"2026-11-22T09:00:00Z"}}]}}"#
        )
    };
    let (url, seen) = serve(vec![
        (201, lease("pending")),
        (200, "[]".to_owned()),
        (200, lease("starting")),
        (200, format!("[{}]", deployment("running", "running", "write_image"))),
        (200, deployment("done", "done", "finished")),
    ]);
    let out = run(&url, &["lease", "create", "--count", "1", "--duration", "1h", "--deploy", "debian12-min", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let targets: Vec<String> = requests(&seen).iter().map(|r| format!("{} {}", r.method, r.target)).collect();
    assert_eq!(
        targets,
        [
            "POST /api/v1/leases",
            "GET /api/v1/leases/12/deployments",
            "GET /api/v1/leases/12",
            "GET /api/v1/leases/12/deployments",
            "GET /api/v1/deployments/7"
        ]
    );
    assert!(stdout(&out).contains("deployment 7") && stdout(&out).contains("done"), "{}", stdout(&out));
    assert!(stderr(&out).contains("waiting for lease 12"), "{}", stderr(&out));

    // A lease that fails before deploying: exit 3 with its reason.
    let failed = lease("failed").replace("\"exotic\":false", "\"exotic\":false,\"reason\":\"no healthy node left\"");
    let (url, _) = serve(vec![(201, lease("pending")), (200, "[]".to_owned()), (200, failed)]);
    let out = run(&url, &["lease", "create", "--count", "1", "--duration", "1h", "--deploy", "debian12-min", "--wait"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no healthy node left"), "{}", stderr(&out));
}

#[test]
fn node_repaired_sends_the_reason_for_each_node() {
    let node = NODE.replace("\"available\"", "\"enrolling\"");
    let (url, seen) = serve(vec![(200, node), (409, error("conflict", "node 'n9' is available, not suspect or dead"))]);
    let out = run(&url, &["node", "repaired", "chifflot-1", "n9", "--reason", "GPU reseated"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let reqs = requests(&seen);
    assert_eq!((reqs[0].method.as_str(), reqs[0].target.as_str()), ("POST", "/api/v1/nodes/chifflot-1/repaired"));
    assert_eq!(reqs[0].json(), serde_json::json!({"reason": "GPU reseated"}));
    assert!(stdout(&out).contains("chifflot-1: marked repaired, now enrolling"), "{}", stdout(&out));
    assert!(stderr(&out).contains("not suspect or dead"), "{}", stderr(&out));
}
