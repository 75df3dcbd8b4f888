//! Repository hygiene (rust-analyzer's "tidy" idea): every Rust module of
//! the workspace opens with a `//!` comment saying what it owns.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != ".git" && name != "snapshots" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_opens_with_a_doc_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in ["controller", "model", "store", "store-sqlite", "store-postgres", "api-spec", "check", "cli", "agent", "pxe", "tests"] {
        rust_files(&root.join(krate), &mut files);
    }
    assert!(files.len() > 30, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !std::fs::read_to_string(p).is_ok_and(|t| t.starts_with("//!")))
        .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
        .collect();
    assert!(missing.is_empty(), "modules without a //! comment: {missing:?}");
}

/// The SQLite store's read generation moves when SQLite calls its
/// post-commit hook, which a `... RETURNING` statement run outside a
/// transaction with `fetch_one`/`fetch_optional` delays until the
/// connection's next statement (see `only_row` in `ferrum-store-sqlite`):
/// such statements use `fetch_all`, or run inside a transaction.
#[test]
fn sqlite_autocommit_writes_run_to_their_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store-sqlite/src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut offending = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        for chunk in text.split(".await") {
            let Some(start) = chunk.rfind("sqlx::query") else { continue };
            let call = &chunk[start..];
            let early_stop = ["fetch_one(", "fetch_optional("].iter().find_map(|f| call.find(f).map(|i| &call[i + f.len()..]));
            if call.contains("RETURNING") && early_stop.is_some_and(|arg| !arg.trim_start().starts_with("&mut")) {
                offending.push(format!("{}: {}", file.display(), call.lines().next().unwrap_or_default()));
            }
        }
    }
    assert!(files.len() >= 3, "found only {files:?}");
    assert!(offending.is_empty(), "autocommit RETURNING statements stopped at their first row: {offending:#?}");
}

/// Both stores' queries are sqlx's checked macros (`query!`, `query_as!`,
/// `query_scalar!`, checked at build time against each crate's `.sqlx`):
/// no file of `store-sqlite/src/` or `store-postgres/src/` runs a runtime
/// query or reads a column by position.
#[test]
fn store_queries_are_checked_at_build_time() {
    const RUNTIME: &[&str] = &[
        "sqlx::query(",
        "sqlx::query::<",
        "sqlx::query_as(",
        "sqlx::query_as::<",
        "sqlx::query_scalar(",
        "sqlx::query_scalar::<",
        "sqlx::query_with(",
        "sqlx::query_as_with(",
        "sqlx::query_scalar_with(",
        "AssertSqlSafe",
        "try_get(",
        "try_get::<",
        "try_get_unchecked(",
        // A checked query takes its arguments in the macro: a bind is a
        // runtime query's, however it was imported.
        ".bind(",
    ];
    let mut unchecked = Vec::new();
    for store in ["store-sqlite", "store-postgres"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(store).join("src");
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        assert!(files.len() >= 10, "found only {files:?}");
        for file in &files {
            let relative = file.strip_prefix(&root).unwrap_or(file).to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(file).expect("read source");
            unchecked.extend(
                text.lines()
                    .enumerate()
                    .filter(|(_, line)| RUNTIME.iter().any(|r| line.contains(r)) || unchecked_raw_sql(line))
                    .map(|(n, line)| format!("{store}/src/{relative}:{}: {}", n + 1, line.trim())),
            );
        }
    }
    assert!(
        unchecked.is_empty(),
        "runtime queries or positional reads in a store (use sqlx::query! and friends, run scripts/sqlx-prepare.sh): \
         {unchecked:#?}"
    );
}

/// `sqlx::raw_sql` is left for the maintenance statements the macros cannot
/// describe (`PRAGMA wal_checkpoint` answers columns of no type): a literal
/// `PRAGMA` or `VACUUM`, which binds nothing and whose rows are not read.
/// Any other use is a runtime query.
fn unchecked_raw_sql(line: &str) -> bool {
    line.split("sqlx::raw_sql(").skip(1).any(|call| {
        let literal = call.strip_prefix('"').and_then(|rest| rest.split_once("\")")).map(|(sql, _)| sql);
        !literal.is_some_and(|sql| (sql.starts_with("PRAGMA ") || sql == "VACUUM") && !sql.contains([';', '"']))
    })
}

#[test]
fn unchecked_raw_sql_is_only_maintenance() {
    assert!(!unchecked_raw_sql(r#"sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool)"#));
    assert!(!unchecked_raw_sql(r#"sqlx::raw_sql("VACUUM").execute(&pool)"#));
    assert!(unchecked_raw_sql(r#"sqlx::raw_sql("DELETE FROM nodes").execute(&pool)"#));
    assert!(unchecked_raw_sql(r#"sqlx::raw_sql(&format!("PRAGMA {x}")).execute(&pool)"#));
    assert!(unchecked_raw_sql(r#"sqlx::raw_sql("VACUUM; DELETE FROM nodes").execute(&pool)"#));
    assert!(unchecked_raw_sql(r#"sqlx::raw_sql("PRAGMA x; DELETE FROM nodes").execute(&pool)"#));
    assert!(unchecked_raw_sql(r#"sqlx::raw_sql(sql).execute(&pool)"#));
}

/// The workspace denies `unsafe_code` (one lint table, in the root
/// Cargo.toml); the two places that need it (the agent's block-device and
/// kexec calls, the SQLite WAL hook) allow it, each named in ARCHITECTURE.md
/// ("Rules"). A new `allow` must be added here and there, on purpose.
#[test]
fn unsafe_code_is_allowed_only_where_the_map_says() {
    const ALLOWED: [&str; 2] = ["agent/src/image.rs", "store-sqlite/src/commits.rs"];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in [
        "controller",
        "model",
        "store",
        "store-sqlite",
        "store-postgres",
        "api-spec",
        "check",
        "cli",
        "agent",
        "pxe",
        "images",
        "lab",
        "tests",
    ] {
        rust_files(&root.join(krate), &mut files);
    }
    // Split so that this file does not name itself.
    let needle = ["allow(", "unsafe_code)"].concat();
    let mut found: Vec<String> = files
        .iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(&needle)))
        .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
        .collect();
    found.sort();
    assert_eq!(found, ALLOWED, "files that allow unsafe code");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("the workspace manifest");
    assert!(manifest.contains("unsafe_code = \"deny\""), "the workspace denies unsafe code");
    for krate in [
        "controller",
        "model",
        "store",
        "store-sqlite",
        "store-postgres",
        "api-spec",
        "check",
        "cli",
        "agent",
        "pxe",
        "images",
        "lab",
        "tests",
    ] {
        let manifest = std::fs::read_to_string(root.join(krate).join("Cargo.toml")).expect("a crate manifest");
        assert!(manifest.contains("[lints]\nworkspace = true"), "{krate} takes the workspace's lints, not a copy");
    }
}

/// States are typed (SPEC-free rule of the code, see STYLE §6): the names
/// of node-operation, power-request, agent-command, lease and reset-outcome
/// states are written once, in the enums' own mapping modules, and SQL
/// binds them as parameters. This fails on any of those names quoted as a
/// Rust string (`"done"`) or an SQL literal (`'done'`) anywhere else in
/// the sources of the controller, its model and its stores
/// (`controller/src/`, `model/src/`, `store/src/`, `store-sqlite/src/`,
/// `store-postgres/src/`). A line marked `tidy:not-a-state` holds the same
/// word with another meaning (a verb in a message).
#[test]
fn state_names_live_in_their_enums() {
    const WORDS: &[&str] = &[
        // operations, power requests, agent commands
        "queued",
        "running",
        "sent",
        "done",
        "failed",
        "cancelled",
        // reset outcomes and power operations
        "clean",
        "mismatch",
        "boot-pxe",
        "boot-disk",
        "soft-off",
        // leases
        "awaiting_approval",
        "pending",
        "starting",
        "active",
        "ending",
        "finished",
        "rejected",
        "over",
        // account requests (with "pending" and "rejected" above)
        "approved",
    ];
    // (file under the repository root, words it may quote, why).
    const ALLOWED: &[(&str, &[&str], &str)] = &[
        ("model/src/operation.rs", WORDS, "the operation enums' names, and their tests"),
        ("model/src/power.rs", WORDS, "the power request enums' names, and `PowerAction`'s"),
        ("model/src/agent_command.rs", WORDS, "the agent command enum's names"),
        ("model/src/account_request.rs", WORDS, "the account request enum's names"),
        ("model/src/lease.rs", WORDS, "the lease inputs' verbs, and a test of a refusal's text"),
        ("controller/src/reference/tests.rs", &["mismatch"], "an `expect_err` message"),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in ["controller", "model", "store", "store-sqlite", "store-postgres"] {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    assert!(files.len() > 30, "found only {} files", files.len());
    let mut offending = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap_or(file).to_string_lossy().replace('\\', "/");
        let allowed: &[&str] = ALLOWED.iter().find(|(f, _, _)| *f == relative).map_or(&[], |(_, words, _)| words);
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            if line.contains("tidy:not-a-state") {
                continue;
            }
            for word in WORDS.iter().filter(|w| !allowed.contains(w)) {
                if line.contains(&format!("\"{word}\"")) || line.contains(&format!("'{word}'")) {
                    offending.push(format!("{relative}:{}: {word}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(offending.is_empty(), "state names outside their enums (bind the enum instead): {offending:#?}");
}

/// Every portal route (each method of each `.route(...)` in
/// `web::routes()`) is asked by the privacy table (`privacy.rs`): its
/// API-style `row("GET", "/path", ...)` rows or its page rows
/// (`get("/path...")`, `post("/path...")`, placeholders and queries
/// allowed). A new page cannot skip the check of who sees what; the API's
/// routes are held to the same by the OpenAPI document.
#[test]
fn every_portal_route_has_a_privacy_row() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let routes = std::fs::read_to_string(root.join("src/web/mod.rs")).expect("web/mod.rs");
    let privacy = std::fs::read_to_string(root.join("tests/it/privacy.rs")).expect("privacy.rs");
    let quoted = |s: &str, n: usize| s.split('"').nth(n).map(str::to_owned);
    let mut asked: Vec<(&str, String)> = Vec::new();
    // Rows as calls, whatever rustfmt did to their lines: the file's lines
    // trimmed and joined, then each `row(`, `get(`, `post(` that is not a
    // method call (`browser.get(`).
    let joined = privacy.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    for call in ["row(", "get(", "post("] {
        for (at, _) in joined.match_indices(call) {
            let before = joined[..at].chars().next_back().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == '.' {
                continue;
            }
            let rest = joined[at + call.len()..].trim_start();
            if !rest.starts_with('"') {
                continue;
            }
            let row = match call {
                "row(" => quoted(rest, 1).zip(quoted(rest, 3)).map(|(method, path)| (if method == "POST" { "POST" } else { "GET" }, path)),
                "get(" => quoted(rest, 1).map(|p| ("GET", p)),
                _ => quoted(rest, 1).map(|p| ("POST", p)),
            };
            asked.extend(row.filter(|(_, p)| p.starts_with('/')));
        }
    }
    let matches = |route: &str, path: &str| {
        let path = path.split('?').next().unwrap_or_default();
        let (r, p): (Vec<_>, Vec<_>) = (route.split('/').collect(), path.split('/').collect());
        r.len() == p.len() && r.iter().zip(&p).all(|(r, p)| r.starts_with('{') || r == p)
    };
    let mut missing = Vec::new();
    for line in routes.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
        let path = quoted(line, 1).expect("a route path");
        for method in ["GET", "POST"] {
            let handled = if method == "GET" { line.contains(" get(") || line.contains("(get(") } else { line.contains("post(") };
            if handled && !asked.iter().any(|(m, p)| *m == method && matches(&path, p)) {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(!missing.is_empty() || asked.len() > 20, "the privacy table was not read: {asked:?}");
    assert!(missing.is_empty(), "portal routes without a row in tests/it/privacy.rs: {missing:?}");
}
