//! Activation, sign-in and sign-out, anti-forgery tokens, throttling, the
//! profile's SSH keys, a disabled user, account requests from the form.

use super::*;

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
    let smtp = crate::it::smtp::Smtp::start().await;
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
    let verify = crate::it::smtp::link(&mail, &format!("{}/verify-email/", ctx.url));
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
    let url = crate::it::smtp::link(&mail, &format!("{}/activate/", ctx.url));
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
