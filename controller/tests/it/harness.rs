//! `TestContext`: one call gives a running controller on a fresh database
//! with the Grid'5000 fixtures imported, an admin token, and helpers to
//! create users and talk HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ferrum_api as api;
use ferrum_controller::app::conductor::{CheckOutcome, Conductor, SimConductor};
use ferrum_controller::app::power::SimBmcs;
use ferrum_controller::clock::{Clock, ManualClock};
use ferrum_controller::config::Config;
use ferrum_controller::db::NodeRow;
use ferrum_controller::server;
use serde_json::Value;
use tokio::sync::oneshot;

/// The time every test starts at (a Monday, 08:00 UTC).
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).single().expect("valid time")
}

pub fn fixtures() -> PathBuf {
    ferrum_controller::reference::fixtures_dir()
}

/// How long a test waits for the controller's loops to act.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Waits until `check` gives `Ok`, at most `limit`, and returns its value;
/// on the deadline it fails the test with `what` and the last `Err` (the
/// state seen). This is the one wait-for-a-condition of these tests: the
/// controller's loops act asynchronously and expose no event to await, so
/// the condition is read again at a short interval (an interval timer paces
/// a bounded condition wait; nothing waits a fixed time for something to
/// have happened).
pub async fn wait_until<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    loop {
        pace.tick().await;
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(tokio::time::Instant::now() < deadline, "{what}: not within {limit:?}; last seen: {seen}"),
        }
    }
}

/// What the database answers to `sql` (one text column), read with raw SQL
/// on either backend, behind the store's back.
pub async fn raw_column(database: &str, sql: &str) -> Vec<Option<String>> {
    if database.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database).await.expect("raw SQLite connection");
        let values = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(&pool).await.expect("raw query");
        pool.close().await;
        values
    } else {
        let pool = sqlx::PgPool::connect(database).await.expect("raw PostgreSQL connection");
        let values = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(&pool).await.expect("raw query");
        pool.close().await;
        values
    }
}

/// Runs `sql` on the database with raw SQL, behind the store's back.
pub async fn raw_execute(database: &str, sql: &str) {
    if database.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database).await.expect("raw SQLite connection");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.expect("raw statement");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database).await.expect("raw PostgreSQL connection");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(&pool).await.expect("raw statement");
        pool.close().await;
    }
}

/// The database a test's controller runs on: SQLite in its data directory
/// (the default), or, with `FERRUM_TEST_DATABASE=postgres`, a fresh
/// database on a throw-away PostgreSQL cluster started once for the test
/// binary (and stopped when it exits). `scripts/test.sh` runs this suite
/// both ways.
pub fn fresh_database(dir: &std::path::Path) -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static CLUSTER: OnceLock<ferrum_lab::postgres::Postgres> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    match std::env::var("FERRUM_TEST_DATABASE").as_deref() {
        Err(_) | Ok("" | "sqlite") => format!("sqlite://{}", dir.join("ferrum.db").display()),
        Ok("postgres") => {
            let cluster = CLUSTER.get_or_init(|| ferrum_lab::postgres::Postgres::start().expect("throw-away PostgreSQL starts"));
            cluster.create_database(&format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))).expect("test database created")
        }
        Ok(other) => panic!("FERRUM_TEST_DATABASE={other}: expected sqlite or postgres"),
    }
}

/// A running controller.
pub struct TestContext {
    /// The API listener.
    pub url: String,
    /// The boot listener (`/boot/`, `/images/`, `/agent/v1/`), on loopback.
    pub boot_url: String,
    pub admin: String,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The simulated BMCs the controller's power loop talks to.
    pub bmcs: Arc<SimBmcs>,
    /// The database URL the controller runs on.
    pub database: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// An HTTP answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        self.body
    }

    /// Asserts an error answer and returns its message.
    #[track_caller]
    pub fn error(self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "unexpected answer: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{}", self.body);
        self.body["error"]["message"].as_str().expect("error.message is a string").to_owned()
    }
}

impl TestContext {
    /// A controller on a fresh database, nothing imported.
    pub async fn empty() -> TestContext {
        Self::empty_with(Arc::new(SimConductor)).await
    }

    /// A controller whose hands on nodes are `conductor`.
    pub async fn empty_with(conductor: Arc<dyn Conductor>) -> TestContext {
        let dir = tempfile::tempdir().expect("tempdir");
        let (clock, handle) = Clock::manual(t0());
        Self::start_in(dir, clock, handle, conductor, Arc::new(SimBmcs::default()), Config::default()).await
    }

    /// A controller with `config` (its data directory is replaced by a
    /// fresh one).
    pub async fn empty_configured(config: Config, conductor: Arc<dyn Conductor>) -> TestContext {
        let dir = tempfile::tempdir().expect("tempdir");
        let (clock, handle) = Clock::manual(t0());
        Self::start_in(dir, clock, handle, conductor, Arc::new(SimBmcs::default()), config).await
    }

    /// A controller with the real hands (`NodeConductor`: resets run
    /// through the operations engine) and `config`, whose deploy ramdisk
    /// reaches it at its own boot listener (`boot.public_url`): the
    /// controller of simulated nodes (`sim_agent::SimNode`).
    pub async fn with_sim_nodes(mut config: Config) -> TestContext {
        let dir = tempfile::tempdir().expect("tempdir");
        let (clock, handle) = Clock::manual(t0());
        let boot = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        config.boot.public_url = Some(format!("http://{}", boot.local_addr().expect("local addr")));
        let conductor = Arc::new(ferrum_controller::app::conductor::NodeConductor);
        Self::start_bound(dir, clock, handle, conductor, Arc::new(SimBmcs::default()), config, boot).await
    }

    /// A controller with the fixture tree imported and its nodes available.
    pub async fn with_fixtures() -> TestContext {
        let ctx = Self::empty().await;
        ctx.import_fixtures().await;
        ctx.wait_nodes_available(10).await;
        ctx
    }

    async fn start_in(
        dir: tempfile::TempDir,
        clock: Clock,
        handle: Arc<ManualClock>,
        conductor: Arc<dyn Conductor>,
        bmcs: Arc<SimBmcs>,
        config: Config,
    ) -> TestContext {
        let boot = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        Self::start_bound(dir, clock, handle, conductor, bmcs, config, boot).await
    }

    /// Starts the controller with `boot` as its boot listener.
    async fn start_bound(
        dir: tempfile::TempDir,
        clock: Clock,
        handle: Arc<ManualClock>,
        conductor: Arc<dyn Conductor>,
        bmcs: Arc<SimBmcs>,
        config: Config,
        boot: tokio::net::TcpListener,
    ) -> TestContext {
        let database = config.database.clone().unwrap_or_else(|| fresh_database(dir.path()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let listen = listener.local_addr().expect("local addr");
        // `listen` as served: the portal's links carry it.
        let config = Config { data_dir: dir.path().to_owned(), database: Some(database.clone()), listen, ..config };
        // With `[web] tls_cert`, the API listener speaks HTTPS: the client
        // trusts that certificate (the tests' own, self-signed).
        let tls_cert = config.web.tls_cert.clone();
        let app = server::open_with(config, clock, conductor, bmcs.clone()).await.expect("controller opens");
        let admin = std::fs::read_to_string(dir.path().join("admin.token")).expect("admin.token written").trim().to_owned();
        let url = format!("{}://{listen}", if tls_cert.is_some() { "https" } else { "http" });
        let client = match &tls_cert {
            Some(cert) => {
                let pem = std::fs::read(cert).expect("the test certificate");
                let root = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
                reqwest::Client::builder().tls_certs_only([root]).build().expect("an HTTPS client")
            }
            None => reqwest::Client::new(),
        };
        let boot_url = format!("http://{}", boot.local_addr().expect("local addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve_with_boot(app, listener, vec![boot], async move {
            let _ = stopped.await;
        }));
        TestContext { url, boot_url, admin, clock: handle, client, dir, bmcs, database, stop: Some(stop), task: Some(task) }
    }

    /// Stops the controller and starts a new one on the same database and
    /// clock (a restart).
    pub async fn restart(mut self) -> TestContext {
        self.shutdown().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        let handle = self.clock.clone();
        let config = Config { database: Some(self.database.clone()), ..Config::default() };
        let restarted = Self::start_in(dir, Clock::Manual(handle.clone()), handle, Arc::new(SimConductor), self.bmcs.clone(), config).await;
        assert_eq!(restarted.admin, self.admin, "the admin token survives a restart");
        restarted
    }

    /// A second handle on the controller's database (with its secrets key).
    pub async fn store(&self) -> Arc<dyn ferrum_controller::db::Datastore> {
        let key = ferrum_controller::db::SecretKey::load(&self.dir.path().join("secret.key")).expect("the controller's secrets key");
        ferrum_controller::db::open(&self.database, key).await.expect("the test database opens")
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server stopped cleanly");
        }
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        self.request_to(&self.url, method, path, token, body).await
    }

    /// A request to the boot listener (`/boot/`, `/images/`, `/agent/v1/`).
    pub async fn boot_request(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        self.request_to(&self.boot_url, method, path, token, body).await
    }

    async fn request_to(&self, base: &str, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        let mut req = self.client.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Answer { status, body }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(reqwest::Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(reqwest::Method::POST, path, Some(token), Some(&body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(reqwest::Method::PATCH, path, Some(token), Some(&body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request(reqwest::Method::PUT, path, Some(token), Some(&body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.request(reqwest::Method::DELETE, path, Some(token), None).await
    }

    /// Uploads the fixture tree the way `ferrum node import` does.
    pub async fn import_fixtures(&self) -> api::ImportReport {
        let nodes = ferrum_controller::reference::read_tree(&fixtures()).expect("fixtures readable");
        let upload = api::NodeImport {
            nodes: nodes.into_iter().map(|d| api::ReferenceNode { site: d.site, cluster: d.cluster, description: d.reference }).collect(),
        };
        let body = self.post("/api/v1/nodes/import", &self.admin, serde_json::to_value(&upload).expect("json")).await.expect(200);
        serde_json::from_value(body).expect("an ImportReport")
    }

    /// Creates a project (if needed) and a user in it; returns the token.
    pub async fn user(&self, name: &str, project: &str) -> String {
        let a = self.post("/api/v1/projects", &self.admin, serde_json::json!({"name": project})).await;
        assert!(a.status == 201 || a.status == 409, "{a:?}");
        let body = self.post("/api/v1/users", &self.admin, serde_json::json!({"name": name, "projects": [project]})).await.expect(201);
        body["token"].as_str().expect("token").to_owned()
    }

    /// Moves the clock and waits until `check` holds (the clock loop runs
    /// on its own; this only waits for it, with a deadline).
    pub fn advance(&self, d: chrono::Duration) {
        self.clock.advance(d);
    }

    pub async fn lease(&self, id: i64, token: &str) -> Value {
        self.get(&format!("/api/v1/leases/{id}"), token).await.expect(200)
    }

    /// Waits (real time, bounded) until the lease is in `state`.
    pub async fn wait_lease_state(&self, id: i64, token: &str, state: &str) -> Value {
        wait_until(&format!("lease {id} reaching {state}"), DEADLINE, async || {
            let lease = self.lease(id, token).await;
            if lease["state"] == state { Ok(lease) } else { Err(lease.to_string()) }
        })
        .await
    }

    /// Enrols node `name` (site `lab`) with a simulated BMC at `bmc`,
    /// made first so that it answers; the BMC, for the test to script.
    pub async fn enrol_with_sim_bmc(&self, name: &str, cluster: &str, mac: &str, bmc: &str) -> Arc<ferrum_controller::power::sim::SimBmc> {
        let endpoint = ferrum_controller::model::BmcAddress::parse(bmc).expect("BMC URL").endpoint();
        let sim = self.bmcs.bmc(&endpoint);
        let body = serde_json::json!({"name": name, "site": "lab", "cluster": cluster, "macs": [mac], "bmc": bmc});
        self.post("/api/v1/nodes", &self.admin, body).await.expect(201);
        sim
    }

    /// Waits until `count` nodes are available.
    pub async fn wait_nodes_available(&self, count: usize) {
        wait_until(&format!("{count} nodes available"), DEADLINE, async || {
            let nodes = self.get("/api/v1/nodes", &self.admin).await.expect(200);
            let list = nodes.as_array().expect("array");
            if list.iter().filter(|n| n["state"] == "available").count() == count {
                return Ok(());
            }
            let states: Vec<String> = list.iter().map(|n| format!("{}={}", n["name"], n["state"])).collect();
            let first = list.first().and_then(|n| n["name"].as_str()).unwrap_or_default().to_owned();
            let events = self.get(&format!("/api/v1/nodes/{first}/events"), &self.admin).await.body;
            Err(format!("{states:?}; events of {first}: {events}"))
        })
        .await
    }

    pub async fn node_state(&self, name: &str) -> String {
        let n = self.get(&format!("/api/v1/nodes/{name}"), &self.admin).await.expect(200);
        n["state"].as_str().expect("state").to_owned()
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// RFC 3339 text of `t0() + d`.
pub fn at(d: chrono::Duration) -> String {
    (t0() + d).to_rfc3339()
}

/// Hands that find some nodes changed at reset (a GPU gone), and every
/// other node clean.
#[derive(Debug, Default)]
pub struct BrokenNodes {
    pub broken: std::sync::Mutex<Vec<(String, String)>>,
}

impl BrokenNodes {
    pub fn set(&self, node: &str, why: &str) {
        self.broken.lock().expect("lock").push((node.to_owned(), why.to_owned()));
    }

    fn outcome(&self, node: &NodeRow) -> CheckOutcome {
        let broken = self.broken.lock().expect("lock");
        match broken.iter().find(|(n, _)| *n == node.name) {
            Some((_, why)) => CheckOutcome::Mismatch(why.clone()),
            None => CheckOutcome::Clean,
        }
    }
}

#[async_trait::async_trait]
impl Conductor for BrokenNodes {
    async fn enroll(&self, _app: &ferrum_controller::app::App, node: &NodeRow) -> CheckOutcome {
        self.outcome(node)
    }
    async fn reset(&self, _app: &ferrum_controller::app::App, node: &NodeRow) -> CheckOutcome {
        self.outcome(node)
    }
}
