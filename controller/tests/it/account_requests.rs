//! Account requests (no token to ask, an admin decides) and project
//! administration: members, manager, class and quota changes, all audited.

use ferrum_controller::config::{ClassRules, Config, PolicyConfig};
use serde_json::{Value, json};

use super::harness::TestContext;

fn ask(name: &str, project: &str) -> Value {
    json!({
        "name": name,
        "email": format!("{name}@univ-lille.fr"),
        "affiliation": "Université de Lille, CRIStAL",
        "project": project,
        "class": "student",
        "motivation": "Master's thesis on GPU scheduling; I need two GPU nodes a week.",
    })
}

async fn anonymous(ctx: &TestContext, body: &Value) -> (u16, Value) {
    let answer = ctx.request(reqwest::Method::POST, "/api/v1/account-requests", None, Some(body)).await;
    (answer.status, answer.body)
}

async fn with_classes() -> TestContext {
    let policy = PolicyConfig { classes: [("student".to_owned(), ClassRules::default())].into(), ..PolicyConfig::default() };
    TestContext::empty_configured(
        Config { policy, ..Config::default() },
        std::sync::Arc::new(ferrum_controller::app::conductor::SimConductor),
    )
    .await
}

#[tokio::test]
async fn request_approval_and_the_new_token_works() {
    let ctx = with_classes().await;
    let (status, accepted) = anonymous(&ctx, &ask("lea", "p-thesis")).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_i64().expect("id");
    assert_eq!(accepted["state"], "pending");

    // Only admins read and decide.
    let bob = ctx.user("bob", "p-other").await;
    ctx.get("/api/v1/account-requests", &bob).await.error(403, "forbidden");
    ctx.post(&format!("/api/v1/account-requests/{id}/approve"), &bob, json!({})).await.error(403, "forbidden");
    let none = ctx.request(reqwest::Method::GET, "/api/v1/account-requests", None, None).await;
    assert_eq!(none.status, 401);

    let pending = ctx.get("/api/v1/account-requests?state=pending", &ctx.admin).await.expect(200);
    assert_eq!(pending.as_array().map(Vec::len), Some(1));
    assert_eq!((pending[0]["name"].as_str(), pending[0]["source"].as_str()), (Some("lea"), Some("127.0.0.1")));

    let approved = ctx
        .post(&format!("/api/v1/account-requests/{id}/approve"), &ctx.admin, json!({"reason": "welcome", "quota_node_hours": 200}))
        .await
        .expect(201);
    let token = approved["token"].as_str().expect("token shown once").to_owned();
    assert_eq!(approved["request"]["state"], "approved");
    let me = ctx.get("/api/v1/users/me", &token).await.expect(200);
    assert_eq!((me["name"].as_str(), me["projects"].clone()), (Some("lea"), json!(["p-thesis"])));
    // The new project: the requester manages it, with the class asked for
    // and the quota the admin gave.
    let projects = ctx.get("/api/v1/projects", &token).await.expect(200);
    assert_eq!(projects[0]["name"], "p-thesis");
    assert_eq!(
        (projects[0]["manager"].as_str(), projects[0]["class"].as_str(), projects[0]["quota_node_hours"].as_i64()),
        (Some("lea"), Some("student"), Some(200))
    );
    ctx.post(&format!("/api/v1/account-requests/{id}/approve"), &ctx.admin, json!({})).await.error(409, "conflict");

    // The token books nodes in the new project.
    ctx.import_fixtures().await;
    ctx.wait_nodes_available(10).await;
    let lease = ctx.post("/api/v1/leases", &token, json!({"nodes": {"count": 1}, "duration": "1h"})).await.expect(201);
    assert_eq!(lease["project"], "p-thesis");

    let audit = ctx.get("/api/v1/audit?action=account_request.approve", &ctx.admin).await.expect(200);
    assert_eq!(audit[0]["target"], format!("account-request/{id}"));
    assert!(!audit.to_string().contains(&token), "no token in the audit log");
}

#[tokio::test]
async fn bad_requests_name_the_field_and_store_nothing() {
    let ctx = with_classes().await;
    let cases = [
        ("name", json!("-lea")),
        ("email", json!("lea.univ-lille.fr")),
        ("affiliation", json!("")),
        ("project", json!("p thesis")),
        ("class", json!("professor")),
        ("motivation", json!("GPUs please")),
    ];
    for (field, value) in cases {
        let mut body = ask("lea", "p-thesis");
        body[field] = value;
        let (status, answer) = anonymous(&ctx, &body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.starts_with(&format!("{field}:")), "{field}: {message}");
    }
    let mut unknown = ask("lea", "p-thesis");
    unknown["shoe_size"] = json!(42);
    assert_eq!(anonymous(&ctx, &unknown).await.0, 400);
    let all = ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200);
    assert_eq!(all, json!([]), "nothing stored");
}

/// The answer without its id: what an outsider learns.
fn without_id(mut answer: Value) -> Value {
    answer["id"] = Value::Null;
    answer["message"] = Value::String(answer["message"].as_str().unwrap_or_default().split(" for ").nth(1).unwrap_or_default().into());
    answer
}

#[tokio::test]
async fn the_answer_does_not_tell_which_logins_exist_the_admin_sees_the_clash() {
    let ctx = with_classes().await;
    ctx.user("bob", "p-other").await;
    // A free login, a taken one, the same in capitals, a second pending
    // request for one login: one answer.
    let (free_status, free) = anonymous(&ctx, &ask("lea", "p-thesis")).await;
    assert_eq!(free_status, 202, "{free}");
    for login in ["bob", "BOB", "lea"] {
        let (status, answer) = anonymous(&ctx, &ask(login, "p-thesis")).await;
        assert_eq!(status, 202, "{login}: {answer}");
        let mut expected = without_id(free.clone());
        expected["message"] = Value::String(format!("'{login}' is waiting"));
        assert_eq!(without_id(answer), expected, "{login}");
    }

    let listed = ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200);
    let clashes: Vec<_> = listed.as_array().expect("array").iter().map(|r| (r["name"].clone(), r["clash"].clone())).collect();
    assert_eq!(clashes[0], (json!("lea"), json!(format!("login also asked for by pending request {}", listed[3]["id"]))));
    assert_eq!(clashes[1], (json!("bob"), json!("login taken by user 'bob'")));
    assert_eq!(clashes[2], (json!("BOB"), json!("login taken by user 'bob'")));

    // Approving a clashing request fails clearly; nothing is created.
    let id = listed[2]["id"].as_i64().expect("id");
    let why = ctx.post(&format!("/api/v1/account-requests/{id}/approve"), &ctx.admin, json!({})).await.error(409, "conflict");
    assert!(why.contains("clashes with existing user 'bob'"), "{why}");
    assert_eq!(ctx.get(&format!("/api/v1/account-requests/{id}"), &ctx.admin).await.expect(200)["state"], "pending");
    // Of two requests for one login, the first approved wins.
    ctx.post(&format!("/api/v1/account-requests/{}/approve", listed[0]["id"]), &ctx.admin, json!({})).await.expect(201);
    ctx.post(&format!("/api/v1/account-requests/{}/approve", listed[3]["id"]), &ctx.admin, json!({})).await.error(409, "conflict");
}

#[tokio::test]
async fn control_and_bidi_characters_are_refused_in_every_text_field() {
    let ctx = with_classes().await;
    for field in ["email", "affiliation", "class", "motivation"] {
        for bad in ["\u{202E}", "\u{2066}", "\u{200B}", "\u{7}"] {
            let mut body = ask("lea", "p-thesis");
            let text = body[field].as_str().expect("text").to_owned();
            body[field] = json!(format!("{}{bad}{}", &text[..2], &text[2..]));
            let (status, answer) = anonymous(&ctx, &body).await;
            assert_eq!(status, 400, "{field} {bad:?}: {answer}");
            let message = answer["error"]["message"].as_str().expect("message");
            assert!(message.starts_with(&format!("{field}:")), "{field}: {message}");
        }
    }
    let mut long = ask("lea", "p-thesis");
    long["affiliation"] = json!("x".repeat(201));
    assert_eq!(anonymous(&ctx, &long).await.0, 400);
    // Line feeds stay allowed in the motivation.
    let mut body = ask("lea", "p-thesis");
    body["motivation"] = json!("First paragraph about the thesis.\nSecond paragraph.");
    assert_eq!(anonymous(&ctx, &body).await.0, 202);
    assert_eq!(ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200).as_array().map(Vec::len), Some(1));
    let id = ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200)[0]["id"].as_i64().expect("id");
    let bad = ctx
        .post(&format!("/api/v1/account-requests/{id}/reject"), &ctx.admin, json!({"reason": "no\u{202E}"}))
        .await
        .error(400, "bad_request");
    assert!(bad.starts_with("reason:"), "{bad}");
}

#[tokio::test]
async fn requests_are_rate_limited_per_address() {
    let ctx = with_classes().await;
    for i in 0..5 {
        let (status, answer) = anonymous(&ctx, &ask(&format!("student{i}"), "p-class")).await;
        assert_eq!(status, 202, "{answer}");
    }
    let (status, answer) = anonymous(&ctx, &ask("student5", "p-class")).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "rate_limited");
    let all = ctx.get("/api/v1/account-requests", &ctx.admin).await.expect(200);
    assert_eq!(all.as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn rejection_keeps_the_reason_and_creates_nobody() {
    let ctx = with_classes().await;
    let (_, accepted) = anonymous(&ctx, &ask("mallory", "p-x")).await;
    let id = accepted["id"].as_i64().expect("id");
    let msg = ctx.post(&format!("/api/v1/account-requests/{id}/reject"), &ctx.admin, json!({"reason": ""})).await.error(400, "bad_request");
    assert!(msg.starts_with("reason:"), "{msg}");
    let rejected = ctx
        .post(&format!("/api/v1/account-requests/{id}/reject"), &ctx.admin, json!({"reason": "no affiliation we know"}))
        .await
        .expect(200);
    assert_eq!(
        (rejected["state"].as_str(), rejected["reason"].as_str(), rejected["decided_by"].as_str()),
        (Some("rejected"), Some("no affiliation we know"), Some("admin"))
    );
    let users = ctx.get("/api/v1/users", &ctx.admin).await.expect(200);
    assert!(users.as_array().expect("users").iter().all(|u| u["name"] != "mallory"), "{users}");
    ctx.post(&format!("/api/v1/account-requests/{id}/approve"), &ctx.admin, json!({})).await.error(409, "conflict");
}

#[tokio::test]
async fn managers_add_members_and_admins_change_quotas() {
    let ctx = with_classes().await;
    let lea = ctx.user("lea", "p-team").await;
    let tom = ctx.user("tom", "p-team").await;
    ctx.user("ana", "p-other").await;
    // Only admins change a project.
    ctx.patch("/api/v1/projects/p-team", &lea, json!({"manager": "lea"})).await.error(403, "forbidden");
    let p = ctx
        .patch("/api/v1/projects/p-team", &ctx.admin, json!({"manager": "lea", "quota_node_hours": 300, "class": "student"}))
        .await
        .expect(200);
    assert_eq!((p["manager"].as_str(), p["quota_node_hours"].as_i64()), (Some("lea"), Some(300)));
    ctx.patch("/api/v1/projects/p-team", &ctx.admin, json!({"class": "professor"})).await.error(400, "bad_request");
    let cleared = ctx.patch("/api/v1/projects/p-team", &ctx.admin, json!({"quota_node_hours": null})).await.expect(200);
    assert_eq!(
        (cleared["quota_node_hours"].clone(), cleared["class"].as_str()),
        (Value::Null, Some("student")),
        "null clears, absent stays"
    );

    // The manager adds and removes members; a plain member cannot.
    ctx.post("/api/v1/projects/p-team/members", &tom, json!({"user": "ana"})).await.error(403, "forbidden");
    let p = ctx.post("/api/v1/projects/p-team/members", &lea, json!({"user": "ana"})).await.expect(200);
    assert_eq!(p["members"], json!(["ana", "lea", "tom"]));
    let p = ctx.delete("/api/v1/projects/p-team/members/tom", &lea).await.expect(200);
    assert_eq!(p["members"], json!(["ana", "lea"]));

    let audit = ctx.get("/api/v1/audit?target=project/p-team", &ctx.admin).await.expect(200);
    let actions: Vec<&str> = audit.as_array().expect("entries").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["project.member_remove", "project.member_add", "project.update", "project.update", "project.create"]);
    let quota_change = &audit[3]["detail"];
    assert_eq!(
        (quota_change["from"]["quota_node_hours"].clone(), quota_change["to"]["quota_node_hours"].as_i64()),
        (Value::Null, Some(300))
    );

    // A manager is a member: naming one who is not adds them; a manager
    // who leaves stops managing.
    ctx.user("max", "p-other").await;
    let p = ctx.patch("/api/v1/projects/p-team", &ctx.admin, json!({"manager": "max"})).await.expect(200);
    assert_eq!((p["manager"].as_str(), p["members"].clone()), (Some("max"), json!(["ana", "lea", "max"])));
    let p = ctx.delete("/api/v1/projects/p-team/members/max", &ctx.admin).await.expect(200);
    assert_eq!((p["manager"].clone(), p["members"].clone()), (Value::Null, json!(["ana", "lea"])));
}

#[tokio::test]
async fn a_project_manager_decides_the_requests_to_join_it_and_only_those() {
    let ctx = with_classes().await;
    let lea = ctx.user("lea", "p-team").await;
    let tom = ctx.user("tom", "p-team").await;
    ctx.patch("/api/v1/projects/p-team", &ctx.admin, json!({"manager": "lea"})).await.expect(200);
    let id_of = |answer: (u16, Value)| answer.1["id"].as_i64().expect("id");
    let joins = id_of(anonymous(&ctx, &ask("ana", "p-team")).await);
    let joins_too = id_of(anonymous(&ctx, &ask("max", "p-team")).await);
    let elsewhere = id_of(anonymous(&ctx, &ask("zoe", "p-new")).await);

    // A plain member decides nothing; the manager sees the requests to
    // join her project only, and another's is not found.
    ctx.get("/api/v1/account-requests", &tom).await.error(403, "forbidden");
    let listed = ctx.get("/api/v1/account-requests", &lea).await.expect(200);
    let ids: Vec<i64> = listed.as_array().expect("list").iter().filter_map(|r| r["id"].as_i64()).collect();
    assert_eq!(ids, [joins, joins_too]);
    assert!(!listed.to_string().contains("zoe"), "{listed}");
    ctx.get(&format!("/api/v1/account-requests/{elsewhere}"), &lea).await.error(404, "not_found");
    ctx.post(&format!("/api/v1/account-requests/{elsewhere}/approve"), &lea, json!({})).await.error(404, "not_found");
    ctx.post(&format!("/api/v1/account-requests/{elsewhere}/reject"), &lea, json!({"reason": "no"})).await.error(404, "not_found");
    ctx.post(&format!("/api/v1/account-requests/{joins}/approve"), &tom, json!({})).await.error(403, "forbidden");

    // Class and quota stay an admin's; approving gives her no token of
    // the new user's.
    let said =
        ctx.post(&format!("/api/v1/account-requests/{joins}/approve"), &lea, json!({"quota_node_hours": 5})).await.error(403, "forbidden");
    assert!(said.contains("class and quota are set by admins"), "{said}");
    let approved = ctx.post(&format!("/api/v1/account-requests/{joins}/approve"), &lea, json!({})).await.expect(201);
    assert_eq!((approved["user"]["name"].as_str(), approved["request"]["state"].as_str()), (Some("ana"), Some("approved")));
    assert!(approved.get("token").is_none(), "no token for a manager: {approved}");
    let projects = ctx.get("/api/v1/projects", &ctx.admin).await.expect(200);
    let team = projects.as_array().expect("list").iter().find(|p| p["name"] == "p-team").expect("p-team").clone();
    assert_eq!(team["members"], json!(["ana", "lea", "tom"]));
    let rejected = ctx.post(&format!("/api/v1/account-requests/{joins_too}/reject"), &lea, json!({"reason": "not in the team"})).await;
    assert_eq!(rejected.expect(200)["state"], "rejected");
    // The new project's request is still the admin's to decide.
    let pending = ctx.get("/api/v1/account-requests?state=pending", &ctx.admin).await.expect(200);
    assert_eq!(pending.as_array().map(|l| l.iter().filter_map(|r| r["id"].as_i64()).collect::<Vec<_>>()), Some(vec![elsewhere]));
    // An admin's approval still shows the token, once.
    let by_admin = ctx.post(&format!("/api/v1/account-requests/{elsewhere}/approve"), &ctx.admin, json!({})).await.expect(201);
    assert!(by_admin["token"].as_str().is_some_and(|t| t.starts_with("ferrum_")), "{by_admin}");

    let audit = ctx.get("/api/v1/audit?action=account_request.approve", &ctx.admin).await.expect(200);
    let by: Vec<&str> = audit.as_array().expect("entries").iter().filter_map(|e| e["actor"].as_str()).collect();
    assert_eq!(by, ["admin", "lea"]);
}
