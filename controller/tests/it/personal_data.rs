//! Personal data (GDPR articles 15, 17 and 20; issue 19): a user exports
//! what ferrum stores about him, and nothing secret; an admin erases it,
//! which is refused while the user holds a lease not over, closes the
//! account, keeps the usage under a pseudonym, and leaves the login and
//! the e-mail address in no text column of any table.

use std::sync::Arc;

use chrono::Duration;
use ferrum_controller::app::accounts::token_hash;
use ferrum_controller::app::conductor::SimConductor;
use ferrum_controller::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::harness::{TestContext, at, raw_column, raw_try_execute};
use super::web::{Browser, PASSWORD, signed_in};

const ALICE: &str = "alice-pd";
const EMAIL: &str = "Alice.PD@uni-pd.example";
const PROJECT: &str = "p-pd";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice-pd@laptop";

fn id(v: &Value) -> i64 {
    v["id"].as_i64().expect("lease id")
}

/// Every value of every text column of every table, with its place.
async fn every_text(database: &str) -> Vec<(String, String)> {
    let catalog = if database.starts_with("sqlite:") {
        "SELECT m.name || '.' || p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND upper(p.type) = 'TEXT'"
    } else {
        "SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = 'public' AND data_type = 'text'"
    };
    let mut found = Vec::new();
    for place in raw_column(database, catalog).await.into_iter().flatten() {
        let (table, column) = place.split_once('.').expect("table.column");
        for value in raw_column(database, &format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"")).await.into_iter().flatten() {
            found.push((place.clone(), value));
        }
    }
    assert!(found.iter().any(|(place, _)| place == "audit_log.detail"), "the catalogue lists the audit log");
    found
}

#[tokio::test]
async fn a_user_exports_his_data_and_an_admin_erases_it() {
    let ctx = TestContext::empty_configured(Config::default(), Arc::new(SimConductor)).await;
    ctx.import_fixtures().await;
    ctx.wait_nodes_available(10).await;
    ctx.post("/api/v1/projects", &ctx.admin, json!({"name": PROJECT})).await.expect(201);
    let created = ctx.post("/api/v1/users", &ctx.admin, json!({"name": ALICE, "projects": [PROJECT], "email": EMAIL})).await.expect(201);
    let alice = created["token"].as_str().expect("token").to_owned();
    let bob = ctx.user("bob-pd", PROJECT).await;
    let named = ctx.post(&format!("/api/v1/users/{ALICE}/tokens"), &alice, json!({"name": "alice-pd laptop"})).await.expect(201);
    let second = named["token"].as_str().expect("token").to_owned();
    ctx.post(&format!("/api/v1/users/{ALICE}/ssh-keys"), &alice, json!({"name": "laptop", "public_key": KEY})).await.expect(201);
    let mut browser = signed_in(&ctx, ALICE).await;

    // One hour of one node, released by her; a later lease still to come.
    let used = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"names": ["chifflot-1"]}, "duration": "2h"})).await.expect(201);
    ctx.wait_lease_state(id(&used), &alice, "active").await;
    ctx.advance(Duration::hours(1));
    ctx.delete(&format!("/api/v1/leases/{}", id(&used)), &alice).await.expect(200);
    ctx.wait_lease_state(id(&used), &alice, "finished").await;
    let later = ctx
        .post("/api/v1/leases", &alice, json!({"nodes": {"count": 1}, "duration": "1h", "start": at(Duration::hours(5))}))
        .await
        .expect(201);

    // Her export: everything, nothing secret. Bob may not read it.
    let export = ctx.get("/api/v1/users/me/export", &alice).await.expect(200);
    assert_eq!((export["user"]["name"].as_str(), export["user"]["email"].as_str()), (Some(ALICE), Some(EMAIL)));
    assert_eq!(export["user"]["projects"], json!([PROJECT]));
    let tokens: Vec<&str> = export["tokens"].as_array().expect("tokens").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(tokens, vec!["alice-pd laptop"]);
    assert_eq!(export["ssh_keys"][0]["public_key"], KEY);
    let leases: Vec<i64> = export["leases"].as_array().expect("leases").iter().map(id).collect();
    assert_eq!(leases, vec![id(&later), id(&used)]);
    let records = export["usage_records"].as_array().expect("usage records");
    assert_eq!((records.len(), records[0]["node_hours"].as_f64(), records[0]["user"].as_str()), (1, Some(1.0), Some(ALICE)));
    // What ferrum told her: her lease started.
    let told: Vec<(i64, &str)> = export["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| (n["lease"].as_i64().unwrap_or(0), n["kind"].as_str().unwrap_or("")))
        .collect();
    assert!(told.contains(&(id(&used), "lease_started")), "{told:?}");
    let text = export.to_string();
    for secret in [&alice, &second, &token_hash(&alice), &token_hash(&second), "argon2", "password", "hash"] {
        assert!(!text.to_lowercase().contains(&secret.to_lowercase()), "the export holds '{secret}': {text}");
    }
    ctx.get(&format!("/api/v1/users/{ALICE}/export"), &bob).await.error(403, "forbidden");
    assert_eq!(ctx.get(&format!("/api/v1/users/{ALICE}/export"), &ctx.admin).await.expect(200)["user"]["name"], ALICE);
    // The portal's download is the same, as a file.
    let cookie = browser.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let file = reqwest::Client::new()
        .get(format!("{}/profile/export", ctx.url))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("download");
    assert_eq!(file.status(), StatusCode::OK);
    let disposition = file.headers().get(reqwest::header::CONTENT_DISPOSITION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(disposition.as_deref(), Some("attachment; filename=\"ferrum-personal-data-alice-pd.json\""));
    let downloaded: Value = file.json().await.expect("JSON");
    assert_eq!((downloaded["user"]["email"].as_str(), downloaded["leases"].as_array().map(Vec::len)), (Some(EMAIL), Some(2)));

    // Erasure: admins only, and not while a lease is to come.
    ctx.post(&format!("/api/v1/users/{ALICE}/erase"), &alice, json!({})).await.error(403, "forbidden");
    let refused = ctx.post(&format!("/api/v1/users/{ALICE}/erase"), &ctx.admin, json!({})).await.error(409, "conflict");
    assert!(refused.contains(&format!("{} (", id(&later))) && refused.contains("not over"), "{refused}");
    ctx.delete(&format!("/api/v1/leases/{}", id(&later)), &alice).await.expect(200);
    let erased = ctx.post(&format!("/api/v1/users/{ALICE}/erase"), &ctx.admin, json!({})).await.expect(200);
    let pseudonym = erased["pseudonym"].as_str().expect("pseudonym").to_owned();
    assert!(pseudonym.starts_with("erased-") && pseudonym.len() == 7 + 16, "{pseudonym}");

    // The account is closed: no token, no session, no sign-in.
    ctx.get("/api/v1/users/me", &alice).await.error(401, "unauthorized");
    ctx.get("/api/v1/users/me", &second).await.error(401, "unauthorized");
    assert_eq!(browser.get("/profile").await.status, StatusCode::SEE_OTHER);
    assert_ne!(Browser::new(&ctx).sign_in(ALICE, PASSWORD).await.status, StatusCode::SEE_OTHER);
    ctx.get(&format!("/api/v1/users/{ALICE}/export"), &ctx.admin).await.error(404, "not_found");
    let gone = ctx.get(&format!("/api/v1/users/{pseudonym}/export"), &ctx.admin).await.expect(200);
    assert_eq!((gone["user"].get("email"), gone["ssh_keys"].as_array().map(Vec::len)), (None, Some(0)));
    assert_eq!(gone["user"]["disabled_reason"], "personal data erased on request");

    // Usage stays, per project and under the pseudonym.
    let window = format!("from={}&to={}", at(Duration::zero()), at(Duration::hours(3))).replace("+00:00", "Z");
    let projects = ctx.get(&format!("/api/v1/usage?{window}&group_by=project"), &ctx.admin).await.expect(200);
    assert_eq!(projects["rows"][0]["key"], PROJECT);
    assert_eq!(projects["rows"][0]["node_seconds"], 3600);
    let users = ctx.get(&format!("/api/v1/usage?{window}&group_by=user"), &ctx.admin).await.expect(200);
    assert_eq!((users["rows"][0]["key"].as_str(), users["rows"][0]["node_seconds"].as_i64()), (Some(pseudonym.as_str()), Some(3600)));
    assert_eq!(ctx.lease(id(&used), &ctx.admin).await["owner"], pseudonym);

    // The erasure is audited, naming the pseudonym only.
    let audit = ctx.get("/api/v1/audit?action=user.erase", &ctx.admin).await.expect(200);
    assert_eq!(audit.as_array().map(Vec::len), Some(1));
    assert_eq!((audit[0]["target"].as_str(), audit[0]["actor"].as_str()), (Some(format!("user/{pseudonym}").as_str()), Some("admin")));

    // Outside an erasure, usage records and the audit log stay append-only:
    // not even a pseudonym may be written there.
    for sql in [
        format!("UPDATE usage_records SET user_name = '{pseudonym}x'"),
        format!("UPDATE usage_records SET user_name = '{pseudonym}'"),
        "UPDATE usage_records SET node_name = 'other'".to_owned(),
        format!("UPDATE audit_log SET actor = '{pseudonym}'"),
        "DELETE FROM audit_log".to_owned(),
    ] {
        let refused = raw_try_execute(&ctx.database, &sql).await.expect_err(&sql);
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }

    // Her login and address are in no text column of any table.
    let (login, email) = (ALICE.to_lowercase(), EMAIL.to_lowercase());
    let left: Vec<_> = every_text(&ctx.database)
        .await
        .into_iter()
        .filter(|(_, value)| value.to_lowercase().contains(&login) || value.to_lowercase().contains(&email))
        .collect();
    assert!(left.is_empty(), "personal data left after erasure: {left:?}");
    // What ferrum told her is gone with it.
    let told = format!("SELECT CAST(COUNT(*) AS TEXT) FROM notifications n JOIN users u ON u.id = n.user_id WHERE u.name = '{pseudonym}'");
    assert_eq!(raw_column(&ctx.database, &told).await, vec![Some("0".to_owned())]);
}
