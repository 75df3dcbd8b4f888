//! The `ferrum` CLI against a running `ferrumd`: what an operator's script
//! does, with the exit codes it relies on.

use ferrum_tests::Ferrumd;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn operator_and_user_session() {
    let server = Ferrumd::start();
    let admin = server.admin_token.clone();
    let fixtures = ferrum_tests::fixtures();

    let out = server.ferrum(&admin, &["node", "import", fixtures.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("10"), "import reports its counts: {}", stdout(&out));
    let again = server.ferrum(&admin, &["--json", "node", "import", fixtures.to_str().expect("utf-8")]);
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("--json prints the API's JSON");
    assert_eq!(report["unchanged"].as_array().map(Vec::len), Some(10));

    let out = server.ferrum(&admin, &["admin", "project", "add", "p-vision", "--quota-node-hours", "500", "--class", "research"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.ferrum(&admin, &["admin", "user", "add", "alice", "--project", "p-vision", "--email", "alice@example.org"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).lines().last().expect("token is the last line").trim().to_owned();
    assert!(token.starts_with("ferrum_"), "{}", stdout(&out));

    let out = server.ferrum(&token, &["--json", "node", "list", "--filter", "accel_type = 'fpga'"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> = nodes.as_array().expect("array").iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names, ["servan-1", "servan-2"]);
    assert!(!stdout(&out).contains("bmc"), "no BMC data for users");

    let out = server.ferrum(&token, &["node", "list", "--filter", "gpu_cont >= 2"]);
    assert_eq!(out.status.code(), Some(2), "a bad filter is the user's input to fix: {}", stderr(&out));
    assert!(stderr(&out).contains("unknown property 'gpu_cont'"), "{}", stderr(&out));

    let start = (chrono::Utc::now() + chrono::Duration::hours(3)).format("%Y-%m-%dT%H:00:00Z").to_string();
    let create =
        ["--json", "lease", "create", "--count", "2", "--filter", "gpu_count >= 2 AND NOT exotic", "--duration", "2h", "--start", &start];
    let out = server.ferrum(&token, &create);
    assert!(out.status.success(), "{}", stderr(&out));
    let lease: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = lease["id"].as_i64().expect("id").to_string();
    assert_eq!(lease["nodes"], serde_json::json!(["chifflot-1", "chifflot-2"]));

    // The same request with all 8 GPU nodes now conflicts: exit code 3 and the earliest start.
    let all8 = ["lease", "create", "--count", "8", "--filter", "gpu_count >= 2", "--duration", "2h", "--start", &start];
    let out = server.ferrum(&token, &all8);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).to_lowercase().contains("earliest"), "{}", stderr(&out));

    let out = server.ferrum(&token, &["availability", "--count", "8", "--filter", "gpu_count >= 2", "--duration", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.ferrum(&token, &["lease", "list"]);
    assert!(out.status.success() && stdout(&out).contains(&id), "{}", stdout(&out));
    let out = server.ferrum(&token, &["calendar", "--filter", "cluster = 'chifflot'"]);
    assert!(out.status.success() && stdout(&out).contains("chifflot-1"), "{}{}", stdout(&out), stderr(&out));

    let out = server.ferrum(&token, &["--json", "lease", "extend", &id, "--by", "1h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.ferrum(&token, &["--json", "lease", "cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cancelled: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cancelled["state"], "cancelled");

    // Errors that say what to fix.
    let out = server.ferrum("ferrum_wrong", &["lease", "list"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = server.ferrum(&token, &["lease", "show", "99999"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let out = server.ferrum(
        &token,
        &["node", "add", "x", "--site", "s", "--cluster", "c", "--mac", "02:00:00:00:00:09", "--bmc", "ipmi://a:b@127.0.0.1:623"],
    );
    assert_eq!(out.status.code(), Some(4), "users may not enrol nodes: {}", stderr(&out));
}

#[test]
fn environment_descriptors_from_files() {
    let server = Ferrumd::start();
    let admin = server.admin_token.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("tiny.yaml");
    std::fs::write(
        &good,
        "name: \"tiny\"\nversion: 2026112206\ndescription: \"busybox and dropbear\"\narch: \"x86_64\"\nimage: \"tiny-2026112206.raw.zst\"\n\
         format: \"raw.zst\"\nsha256: \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nsize: 50331648\n\
         root_partition: 1\nboot: \"local\"\nvisibility: \"public\"\n",
    )
    .expect("write");
    let out = server.ferrum(&admin, &["env", "add", good.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("added tiny version 2026112206 (public), image "), "{}", stdout(&out));
    let out = server.ferrum(&admin, &["--json", "env", "list"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints the API's JSON");
    assert_eq!(list[0]["name"], "tiny");
    // The table puts what tells environments apart first.
    let out = server.ferrum(&admin, &["env", "list"]);
    let header = stdout(&out).lines().next().unwrap_or_default().to_owned();
    let at = |column: &str| header.find(column).unwrap_or_else(|| panic!("no {column} in {header}"));
    assert!(header.starts_with("NAME"), "{header}");
    assert!(at("VERSION") < at("VISIBILITY") && at("VISIBILITY") < at("OWNER") && at("OWNER") < at("DESCRIPTION"), "{header}");

    // A descriptor error names the file and the key; nothing is sent.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, std::fs::read_to_string(&good).expect("read").replace("root_partition: 1\n", "")).expect("write");
    let out = server.ferrum(&admin, &["env", "add", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(bad.to_str().expect("utf-8")) && err.contains("root_partition"), "{err}");
    // A value the server refuses: exit 2, the field named.
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        std::fs::read_to_string(&good).expect("read").replace("version: 2026112206", "version: 1").replace("\"x86_64\"", "\"arm64\""),
    )
    .expect("write");
    let out = server.ferrum(&admin, &["env", "add", wrong.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("arch:"), "{}", stderr(&out));
}

#[test]
fn policy_approval_usage_and_audit_from_the_cli() {
    let config = "[policy]\napproval_threshold_node_hours = 10\napproval_notice = \"1h\"\n[policy.classes.student]\nmax_nodes = 2\n";
    let server = Ferrumd::start_with(None, config, "127.0.0.1:0");
    let admin = server.admin_token.clone();
    let fixtures = ferrum_tests::fixtures();
    assert!(server.ferrum(&admin, &["node", "import", fixtures.to_str().expect("utf-8")]).status.success());
    let out = server.ferrum(&admin, &["admin", "project", "add", "p-class", "--quota-node-hours", "100", "--class", "student"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.ferrum(&admin, &["admin", "project", "add", "p-typo", "--class", "studnet"]);
    assert_eq!(out.status.code(), Some(2), "an unknown class is refused: {}", stderr(&out));
    assert!(stderr(&out).contains("'studnet' is not a configured policy class (student)"), "{}", stderr(&out));
    let out = server.ferrum(&admin, &["admin", "user", "add", "sam", "--project", "p-class"]);
    let sam = stdout(&out).lines().last().expect("token").trim().to_owned();

    // A policy refusal is "not allowed" (exit 4) and names the rule.
    let start = (chrono::Utc::now() + chrono::Duration::hours(3)).format("%Y-%m-%dT%H:00:00Z").to_string();
    let out = server.ferrum(&sam, &["lease", "create", "--count", "3", "--duration", "1h", "--start", &start]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("policy 'max_nodes'"), "{}", stderr(&out));

    // 2 nodes x 6h = 12 node-hours > 10: waits for an admin.
    let out = server.ferrum(&sam, &["--json", "lease", "create", "--count", "2", "--duration", "6h", "--start", &start]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lease: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(lease["state"], "awaiting_approval");
    let id = lease["id"].as_i64().expect("id").to_string();
    let out = server.ferrum(&sam, &["lease", "approve", &id]);
    assert_eq!(out.status.code(), Some(4), "users approve nothing: {}", stderr(&out));
    let out = server.ferrum(&admin, &["--json", "lease", "approve", &id, "--reason", "fine"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let approved: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((approved["state"].as_str(), approved["reason"].as_str()), (Some("pending"), Some("approved by admin: fine")));

    // Usage: a table for people, CSV and JSON for scripts; nothing ran yet.
    let out = server.ferrum(&sam, &["usage", "--group-by", "user"]);
    assert!(out.status.success() && stdout(&out).contains("no usage in this period"), "{}{}", stdout(&out), stderr(&out));
    let out = server.ferrum(&admin, &["--json", "usage", "--group-by", "gpu_model"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((report["group_by"].as_str(), report["total"]["node_hours"].as_f64()), (Some("gpu_model"), Some(0.0)));
    let out = server.ferrum(&sam, &["usage", "--project", "p-other"]);
    assert_eq!(out.status.code(), Some(4), "another project's usage is refused: {}", stderr(&out));

    let out = server.ferrum(&sam, &["quota"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("p-class") && stdout(&out).contains("100 node-hours"), "{}", stdout(&out));

    // The approval is in the audit log, for admins.
    let out = server.ferrum(&admin, &["admin", "audit", "--action", "lease.approve"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("lease/{id}")) && stdout(&out).contains("fine"), "{}", stdout(&out));
    let out = server.ferrum(&sam, &["admin", "audit"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    // A student asks for an account without a token; an admin approves;
    // the token printed last works.
    let ask = [
        "account",
        "request",
        "--name",
        "lea",
        "--email",
        "lea@univ-lille.fr",
        "--affiliation",
        "Université de Lille",
        "--project",
        "p-thesis",
        "--class",
        "student",
        "--motivation",
        "Master's thesis on GPU scheduling",
    ];
    let out = server.ferrum("", &ask);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).split_whitespace().nth(1).expect("request id").to_owned();
    let out = server.ferrum(&admin, &["admin", "requests"]);
    assert!(stdout(&out).contains("lea@univ-lille.fr") && stdout(&out).contains("pending"), "{}", stdout(&out));
    let out = server.ferrum(&admin, &["admin", "requests", "approve", &id, "--quota-node-hours", "50"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lea = stdout(&out).lines().last().expect("token is the last line").trim().to_owned();
    let out = server.ferrum(&lea, &["--json", "whoami"]);
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((me["name"].as_str(), me["projects"].clone()), (Some("lea"), serde_json::json!(["p-thesis"])));
    let out = server.ferrum(&admin, &["admin", "project", "set", "p-thesis", "--no-quota"]);
    assert!(out.status.success() && stdout(&out).contains("lea"), "the manager shows: {}{}", stdout(&out), stderr(&out));
}

/// The OAR habits of a Grid'5000 user (issue 20): local start times in the
/// site's zone, `+2h`, lease names, `oarstat -u`, `oardel` of several ids,
/// flags named in errors, and the admin's `node repaired`.
#[test]
fn oar_forms_from_the_cli() {
    // lille is UTC+3 all year (no summer time to reckon with); grenoble
    // keeps the default, Europe/Paris.
    let server = Ferrumd::start_with(None, "[sites.lille]\ntimezone = \"Etc/GMT-3\"\n", "127.0.0.1:0");
    let admin = server.admin_token.clone();
    let fixtures = ferrum_tests::fixtures();
    assert!(server.ferrum(&admin, &["node", "import", fixtures.to_str().expect("utf-8")]).status.success());
    assert!(server.ferrum(&admin, &["admin", "project", "add", "p-vision"]).status.success());
    let out = server.ferrum(&admin, &["admin", "user", "add", "alice", "--project", "p-vision"]);
    let alice = stdout(&out).lines().last().expect("token").trim().to_owned();

    let out = server.ferrum(&alice, &["site", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).lines().any(|l| l.starts_with("lille") && l.contains("Etc/GMT-3")), "{}", stdout(&out));

    // 09:00 at lille is 06:00 UTC.
    let day = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%d").to_string();
    let local = format!("{day} 09:00");
    let create =
        ["--json", "lease", "create", "--count", "1", "--site", "lille", "--duration", "1h", "--start", &local, "--name", "morning"];
    let out = server.ferrum(&alice, &create);
    assert!(out.status.success(), "{}", stderr(&out));
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(first["start"], format!("{day}T06:00:00Z"));
    assert_eq!(first["name"], "morning");
    assert!(first["nodes"][0].as_str().is_some_and(|n| n.starts_with("chifflot")), "{first}");
    let first = first["id"].as_i64().expect("id").to_string();
    // The site from the filter; without either, the zones differ: exit 2.
    let out = server.ferrum(
        &alice,
        &[
            "--json",
            "lease",
            "create",
            "--count",
            "1",
            "--filter",
            "site = 'lille'",
            "--duration",
            "1h",
            "--start",
            &format!("{day} 11:00"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let second: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(second["start"], format!("{day}T08:00:00Z"));
    let second = second["id"].as_i64().expect("id").to_string();
    let out = server.ferrum(&alice, &["lease", "create", "--count", "1", "--duration", "1h", "--start", &local]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--site"), "{}", stderr(&out));
    // From now.
    let out = server.ferrum(&alice, &["--json", "lease", "create", "--count", "1", "--duration", "1h", "--start", "+3h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let third: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let third = third["id"].as_i64().expect("id").to_string();

    // Names show in the list; admins list by user (oarstat -u), users only themselves.
    let out = server.ferrum(&alice, &["lease", "list"]);
    assert!(stdout(&out).contains("morning"), "{}", stdout(&out));
    let out = server.ferrum(&admin, &["--json", "lease", "list", "--user", "alice"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    let out = server.ferrum(&alice, &["lease", "list", "-u", "admin"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    // The server's field names become flags.
    let out = server.ferrum(&alice, &["lease", "create", "--names", "servan-1", "--duration", "1h"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--names: 'servan-1'") && stderr(&out).contains("add --exotic"), "{}", stderr(&out));

    // extend names its flag like create; cancel takes several ids.
    let out = server.ferrum(&alice, &["lease", "extend", &first, "--duration", "30m"]);
    assert!(out.status.success() && stdout(&out).contains("T07:30:00Z"), "{}{}", stdout(&out), stderr(&out));
    let out = server.ferrum(&alice, &["lease", "cancel", &first, "99999", &second, &third]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    for id in [&first, &second, &third] {
        assert!(stdout(&out).contains(&format!("lease {id} cancelled")), "{}", stdout(&out));
    }
    assert!(stderr(&out).contains("lease 99999") && stderr(&out).contains("1 of 4 leases"), "{}", stderr(&out));

    // Marking a healthy node repaired is a conflict; users may not.
    let out = server.ferrum(&admin, &["node", "repaired", "chifflot-3", "--reason", "checked"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to repair"), "{}", stderr(&out));
    let out = server.ferrum(&alice, &["node", "repaired", "chifflot-3", "--reason", "checked"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}
