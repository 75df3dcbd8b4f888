//! Validation at the boundary (MACs, BMC addresses, free texts), the
//! availability/creation agreement, and error answers that are JSON
//! whoever writes them (handler, static files, the request limits).

use chrono::{Duration, SecondsFormat};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::{TestContext, t0};

fn node(mac: &str) -> Value {
    json!({"name": "proto-1", "site": "lille", "cluster": "proto", "macs": ["02:00:00:00:00:01", mac]})
}

#[tokio::test]
async fn only_unicast_non_zero_macs_are_enrolled() {
    let ctx = TestContext::empty().await;
    for (mac, why) in [
        ("ff:ff:ff:ff:ff:ff", "broadcast"),
        ("01:00:5e:00:00:fb", "multicast"),
        ("33:33:00:00:00:01", "multicast"),
        ("00:00:00:00:00:00", "all-zero"),
    ] {
        let msg = ctx.post("/api/v1/nodes", &ctx.admin, node(mac)).await.error(400, "bad_request");
        assert!(msg.starts_with("macs[1]: ") && msg.contains(why), "{mac}: {msg}");
    }
    let created = ctx.post("/api/v1/nodes", &ctx.admin, node("3C:FD:FE:C1:70:90")).await.expect(201);
    assert_eq!(created["macs"], json!(["02:00:00:00:00:01", "3c:fd:fe:c1:70:90"]));
}

#[tokio::test]
async fn an_import_with_a_group_mac_is_refused() {
    let ctx = TestContext::empty().await;
    let mut nodes = ferrum_controller::reference::read_tree(&super::harness::fixtures()).expect("fixtures");
    let node = nodes.iter_mut().find(|n| n.name == "servan-1").expect("servan-1");
    for adapter in node.reference["network_adapters"].as_array_mut().expect("adapters") {
        if adapter.get("mac").is_some() {
            adapter["mac"] = json!("ff:ff:ff:ff:ff:ff");
        }
    }
    let upload = json!({"nodes": [{"site": node.site, "cluster": node.cluster, "description": node.reference}]});
    let msg = ctx.post("/api/v1/nodes/import", &ctx.admin, upload).await.error(400, "bad_request");
    assert!(msg.starts_with("nodes[0] (servan-1): boot MAC ") && msg.contains("broadcast"), "{msg}");
    assert_eq!(ctx.get("/api/v1/nodes", &ctx.admin).await.expect(200), json!([]), "nothing imported");
}

#[tokio::test]
async fn bmc_hosts_and_ports_are_checked() {
    let ctx = TestContext::empty().await;
    for (bmc, why) in [
        ("ipmi://admin:pw@h%00", "DNS name"),
        ("ipmi://admin:pw@bmc%0a1:623", "DNS name"),
        ("redfish://admin:pw@bad_host:8000/System-1", "DNS name"),
        ("ipmi://admin:pw@10.0.0.5:0", "port"),
        ("redfish+http://admin:pw@127.0.0.1:0/System-1", "port"),
    ] {
        let mut body = node("02:00:00:00:00:02");
        body["bmc"] = json!(bmc);
        let msg = ctx.post("/api/v1/nodes", &ctx.admin, body).await.error(400, "bad_request");
        assert!(msg.starts_with("bmc: ") && msg.contains(why), "{bmc}: {msg}");
        assert!(!msg.contains("pw@"), "the password is never echoed: {msg}");
    }
    let mut body = node("02:00:00:00:00:02");
    body["bmc"] = json!("ipmi://admin:pw@bmc-1.lille.example:6230");
    ctx.post("/api/v1/nodes", &ctx.admin, body).await.expect(201);
}

#[tokio::test]
async fn free_texts_are_bounded_and_one_line() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    let long = |n: usize| "x".repeat(n);
    let maintenance = |reason: String| json!({"enabled": true, "reason": reason});

    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("/api/v1/nodes/chifflot-1/maintenance", "admin", maintenance(long(1001)), "reason: at most 1000 characters"),
        ("/api/v1/nodes/chifflot-1/maintenance", "admin", maintenance("disk\nreplaced".into()), "reason: must be one line"),
        ("/api/v1/nodes/chifflot-1/maintenance", "admin", maintenance("ok\u{202e}txt.exe".into()), "reason: must be one line"),
        ("/api/v1/leases/999/reject", "admin", json!({"reason": long(1001)}), "reason: at most 1000 characters"),
        ("/api/v1/leases/999/approve", "admin", json!({"reason": "fine\u{7}"}), "reason: must be one line"),
        ("/api/v1/leases", "alice", json!({"nodes": {"count": 1, "filter": long(5000)}, "duration": "1h"}), "nodes.filter: at most 4096"),
        ("/api/v1/leases", "alice", json!({"nodes": {"count": 1}, "duration": long(100)}), "duration: at most 64"),
        ("/api/v1/leases", "alice", json!({"nodes": {"names": [long(65)]}, "duration": "1h"}), "nodes.names[0]: at most 64"),
        (
            "/api/v1/leases",
            "alice",
            json!({"nodes": {"count": 1}, "duration": "1h", "deploy": {"environment": "debian\u{0}"}}),
            "deploy.environment: must be one line",
        ),
        (
            "/api/v1/leases",
            "alice",
            json!({"nodes": {"count": 1}, "duration": "1h", "deploy": {"environment": "debian12", "ssh_keys": [format!("ssh-ed25519 {}", long(20_000))]}}),
            "deploy.ssh_keys[0]: at most 16383",
        ),
        (
            "/api/v1/nodes",
            "admin",
            json!({"name": long(100), "site": "s", "cluster": "c", "macs": ["02:00:00:00:00:03"]}),
            "name: at most 64",
        ),
        (
            "/api/v1/nodes",
            "admin",
            json!({"name": "n-1", "site": "s", "cluster": "c", "macs": ["02:00:00:00:00:03"], "properties": {"rack": long(300)}}),
            "properties.rack: at most 256",
        ),
        ("/api/v1/projects", "admin", json!({"name": "p-2", "class": "a\r\nb"}), "class: must be one line"),
    ];
    for (path, who, body, expected) in cases {
        let token = if who == "admin" { &ctx.admin } else { &alice };
        let msg = ctx.post(path, token, body).await.error(400, "bad_request");
        assert!(msg.starts_with(expected), "{path}: {msg}");
        assert!(msg.len() < 200, "the message does not echo the text: {msg}");
    }
    let msg = ctx.get(&format!("/api/v1/availability?count=1&duration=1h&filter={}", long(5000)), &alice).await.error(400, "bad_request");
    assert!(msg.starts_with("filter: at most 4096"), "{msg}");
    let msg = ctx.get(&format!("/api/v1/nodes?filter={}", long(5000)), &alice).await.error(400, "bad_request");
    assert!(msg.starts_with("filter: at most 4096"), "{msg}");
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A table of availability queries: every slot offered is then booked
/// exactly as offered, and must be accepted; a query refused is refused by
/// creation alike. The default horizon is 365 days; 8 nodes for 100 days
/// are above the approval threshold (10,000 node-hours) and must start a
/// day ahead.
#[tokio::test]
async fn availability_offers_only_what_creation_accepts() {
    let ctx = TestContext::with_fixtures().await;
    let alice = ctx.user("alice", "p-vision").await;
    // A lease already there, so that slots do not all start now.
    let busy = ctx.post("/api/v1/leases", &alice, json!({"nodes": {"count": 8}, "duration": "2d"})).await.expect(201);
    let days = Duration::days;
    let cases: Vec<(u32, &str, Option<Duration>, u32)> = vec![
        (1, "1h", None, 3),
        (2, "30d", None, 20),
        (8, "100d", None, 5),
        (1, "4h", Some(days(365) - Duration::hours(6)), 3),
        (3, "300d", Some(Duration::hours(12)), 2),
        (1, "1000years", None, 3),
        (1, "2h", Some(days(365)), 3),
        (1, "1h", Some(days(4_000_000)), 3),
    ];
    let mut offered = 0;
    for (count, duration, from, limit) in cases {
        let mut query = format!("/api/v1/availability?count={count}&duration={duration}&limit={limit}");
        if let Some(from) = from {
            query.push_str(&format!("&from={}", rfc3339(t0() + from)));
        }
        let case = format!("{count} node(s) for {duration} from {from:?}");
        let answer = ctx.get(&query.replace(' ', "%20"), &alice).await;
        if answer.status == 400 {
            let mut body = json!({"nodes": {"count": count}, "duration": duration});
            if let Some(from) = from {
                body["start"] = json!(rfc3339(t0() + from));
            }
            ctx.post("/api/v1/leases", &alice, body).await.error(400, "bad_request");
            continue;
        }
        let slots = answer.expect(200)["slots"].as_array().expect("slots").clone();
        let mut booked = Vec::new();
        for slot in &slots {
            let body = json!({"nodes": {"count": count}, "start": slot["start"], "duration": duration});
            let created = ctx.post("/api/v1/leases", &alice, body).await;
            assert_eq!(created.status, 201, "{case}: slot {slot} was offered, creation answered {}", created.body);
            assert_eq!(created.body["start"], slot["start"], "{case}");
            booked.push(created.body["id"].as_i64().expect("id"));
        }
        offered += booked.len();
        for id in booked {
            ctx.delete(&format!("/api/v1/leases/{id}"), &alice).await.expect(200);
        }
    }
    assert!(offered >= 20, "the table offers slots at all ({offered})");
    ctx.delete(&format!("/api/v1/leases/{}", busy["id"]), &alice).await.expect(200);
}

/// Asserts a JSON error answer with `status` and `code`.
async fn json_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let content_type = resp.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"), "status {status}");
    let body: Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body
}

#[tokio::test]
async fn static_routes_answer_json_errors() {
    let ctx = TestContext::empty().await;
    let ramdisk = ctx.dir.path().join("ramdisk");
    std::fs::create_dir_all(&ramdisk).expect("ramdisk dir");
    std::fs::write(ramdisk.join("small.img"), b"0123456789").expect("file written");
    // Served on the boot listener.
    let url = |path: &str| format!("{}{path}", ctx.boot_url);

    for path in ["/boot/files/missing", "/boot/files/../admin.token"] {
        json_error(ctx.client.get(url(path)).send().await.expect("sent"), 404, "not_found").await;
    }
    // An image no public environment names, asked without an agent session:
    // refused before the directory is looked at (whether it exists or not).
    for path in ["/images/missing.img", "/images/../admin.token"] {
        let resp = ctx.client.get(url(path)).send().await.expect("sent");
        let status = resp.status().as_u16();
        assert!(status == 403 || status == 404, "{path}: {status}");
        json_error(resp, status, if status == 403 { "forbidden" } else { "not_found" }).await;
    }
    let resp = ctx.client.post(url("/boot/files/small.img")).send().await.expect("sent");
    assert!(resp.headers().contains_key("allow"), "Allow is kept");
    json_error(resp, 405, "method_not_allowed").await;
    let resp = ctx.client.get(url("/boot/files/small.img")).header("Range", "bytes=100-200").send().await.expect("sent");
    assert_eq!(resp.headers()["content-range"], "bytes */10", "Content-Range is kept");
    json_error(resp, 416, "range_not_satisfiable").await;
    // What is served stays as it was.
    let resp = ctx.client.get(url("/boot/files/small.img")).header("Range", "bytes=2-4").send().await.expect("sent");
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.expect("body").as_ref(), b"234");
    // Firmware's answer for an unknown MAC stays an iPXE script.
    let resp = ctx.client.get(url("/boot/ipxe?mac=02:00:00:00:0b:99")).send().await.expect("sent");
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.expect("text").starts_with("#!ipxe"));
}

#[tokio::test]
async fn oversized_requests_answer_json_errors() {
    let ctx = TestContext::with_fixtures().await;
    let url = |path: &str| format!("{}{path}", ctx.url);

    // A 10 KB URI (hyper itself would take up to 64 KB, with an empty 414).
    let resp = ctx.client.get(url(&format!("/api/v1/nodes?filter={}", "x".repeat(10_000)))).bearer_auth(&ctx.admin).send().await;
    json_error(resp.expect("sent"), 414, "uri_too_long").await;

    // 20 KB of headers (hyper would take ~400 KB, with an empty 431).
    let resp = ctx.client.get(url("/api/v1/nodes")).bearer_auth(&ctx.admin).header("x-padding", "p".repeat(20_000)).send().await;
    json_error(resp.expect("sent"), 431, "headers_too_large").await;

    // Over a raw socket too, the whole answer as sent on the wire.
    let addr = ctx.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let request = format!("GET /healthz?{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n", "q".repeat(9_000));
    stream.write_all(request.as_bytes()).await.expect("request written");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("answer read");
    assert!(raw.starts_with("HTTP/1.1 414 "), "{raw}");
    let body: Value = serde_json::from_str(raw.split("\r\n\r\n").nth(1).expect("a body")).expect("a JSON body");
    assert_eq!(body["error"]["code"], "uri_too_long");

    // A body over the limit, and a limit-sized request is fine.
    let resp = ctx.client.post(url("/api/v1/leases")).bearer_auth(&ctx.admin).json(&json!({"pad": "p".repeat(3 << 20)})).send().await;
    json_error(resp.expect("sent"), 413, "payload_too_large").await;
    let resp = ctx.client.get(url(&format!("/api/v1/nodes?filter={}", "x".repeat(4_000)))).bearer_auth(&ctx.admin).send().await;
    json_error(resp.expect("sent"), 400, "invalid_filter").await;
}

#[tokio::test]
async fn extractor_rejections_are_json() {
    let ctx = TestContext::with_fixtures().await;
    let url = format!("{}/api/v1/leases", ctx.url);
    let syntax = ctx.client.post(&url).bearer_auth(&ctx.admin).header("content-type", "application/json").body("{").send().await;
    json_error(syntax.expect("sent"), 400, "bad_request").await;
    let no_type = ctx.client.post(&url).bearer_auth(&ctx.admin).body("{}").send().await;
    json_error(no_type.expect("sent"), 400, "bad_request").await;
    let query = ctx.client.get(format!("{}/api/v1/availability?count=-1&duration=1h", ctx.url)).bearer_auth(&ctx.admin).send().await;
    json_error(query.expect("sent"), 400, "bad_request").await;
    let method = ctx.client.put(format!("{}/api/v1/leases", ctx.url)).bearer_auth(&ctx.admin).send().await;
    json_error(method.expect("sent"), 405, "method_not_allowed").await;
}
