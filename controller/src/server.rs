//! Starting and stopping a controller: open the datastore, create the first
//! admin, serve the HTTP API on a bound listener and run the clock loop
//! until a shutdown future resolves. `ferrumd`'s `main` and the tests both
//! go through here (tests bind port 0 and pass a manual clock).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;
use crate::app::conductor::{Conductor, NodeConductor};
use crate::app::power::{BmcConnector, RealBmcs};
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{DbError, SecretKey};
use crate::{http, secrets};

/// The path of the first admin's token inside the data directory.
pub fn admin_token_path(config: &Config) -> PathBuf {
    config.data_dir.join("admin.token")
}

/// Opens the datastore named by the configuration with the secrets key
/// (see [`open_secrets_key`]), runs its migrations and, on an empty
/// database, creates the first admin (token in `DATA_DIR/admin.token`,
/// mode 0600). The data directory is created 0700 and the SQLite database
/// 0600; wider modes found at start are warned about.
pub async fn open(config: Config, clock: Clock) -> anyhow::Result<Arc<App>> {
    open_with(config, clock, Arc::new(NodeConductor), Arc::new(RealBmcs::default())).await
}

/// [`open`] with the given hands on nodes (tests inject failing ones and
/// simulated BMCs).
pub async fn open_with(
    config: Config,
    clock: Clock,
    conductor: Arc<dyn Conductor>,
    bmcs: Arc<dyn BmcConnector>,
) -> anyhow::Result<Arc<App>> {
    secrets::create_private_dir(&config.data_dir).with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let url = config.database_url();
    let key_path = config.secrets_key_path();
    let (key, created) = open_secrets_key(&key_path, &url).await?;
    let store = match crate::db::open(&url, key).await {
        Ok(store) => store,
        Err(DbError::KeyMismatch { stored, given }) => {
            if created {
                // Made for a database that turned out to have a key: useless.
                let _ = std::fs::remove_file(&key_path);
            }
            anyhow::bail!(
                "the secrets key file {} (fingerprint {given}) is not the key of database {}, whose BMC credentials are encrypted \
                 with the key of fingerprint {stored}: start with that key file (replicas of one database, and a restored backup, \
                 use the key file of the ferrumd that wrote it; set secrets_key_file to its path)",
                key_path.display(),
                redact_url(&url)
            );
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot open database {}", redact_url(&url)))),
    };
    if created {
        tracing::info!(path = %key_path.display(), "created the key that encrypts BMC credentials in the database (mode 0600); back it up, apart from the database backups");
    }
    warn_if_exposed(&config, &url);
    let app = App::new(store, clock, config, conductor, bmcs);
    let token_path = admin_token_path(&app.config);
    if app.bootstrap_admin(&token_path).await? {
        tracing::info!(path = %token_path.display(), "first start: created user 'admin'; its API token is in this file (mode 0600)");
    }
    check_reset_environment(&app).await?;
    Ok(app)
}

/// The key that seals the BMC credentials of the database at `url`: the
/// key file at `path`, or a new one created there (returned `true`) when
/// there is none and the database has no key yet. A database that records
/// a key while the file is missing is refused: a new key could not open
/// its credentials (a replica or a restore without the key file).
pub async fn open_secrets_key(path: &Path, url: &str) -> anyhow::Result<(SecretKey, bool)> {
    if !path.exists() {
        let fresh_sqlite = crate::db::sqlite::file_of_url(url).is_some_and(|file| !file.exists());
        let recorded = if fresh_sqlite || url.starts_with("sqlite::memory:") {
            None
        } else {
            crate::db::recorded_key_fingerprint(url).await.with_context(|| format!("cannot open database {}", redact_url(url)))?
        };
        if let Some(fingerprint) = recorded {
            anyhow::bail!(
                "no secrets key file at {}, but database {} holds BMC credentials encrypted with the key of fingerprint {fingerprint}: \
                 copy that key file there (mode 0600; from the ferrumd that wrote the database, or from where you keep it apart \
                 from backups), or set secrets_key_file to its path",
                path.display(),
                redact_url(url)
            );
        }
    }
    SecretKey::load_or_create(path).map_err(anyhow::Error::new)
}

/// Warns about what holds secrets with modes wider than the ones it is
/// created with (an older ferrumd's files, an operator's copy).
fn warn_if_exposed(config: &Config, url: &str) {
    secrets::warn_if_wider(&config.data_dir, 0o700);
    secrets::warn_if_wider(&config.secrets_key_path(), 0o600);
    secrets::warn_if_wider(&admin_token_path(config), 0o600);
    if let Some(db) = crate::db::sqlite::file_of_url(url) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = db.clone().into_os_string();
            path.push(suffix);
            secrets::warn_if_wider(Path::new(&path), 0o600);
        }
    }
}

/// `[reset] default_environment`: a malformed value stops the start; one
/// the catalog cannot resolve yet (an empty catalog at first start) is a
/// warning, and resets restore nothing until it resolves.
async fn check_reset_environment(app: &App) -> anyhow::Result<()> {
    app.config.reset.default_environment_pin().map_err(anyhow::Error::msg)?;
    match app.reset_environment().await {
        Ok(None) => {}
        Ok(Some(env)) => tracing::info!(
            environment = %env.descriptor.name, version = env.descriptor.version, id = env.id, owner = %env.owner,
            "resets restore this default environment"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reset.default_environment does not resolve (among admin-owned environments): resets will not restore it")
        }
    }
    Ok(())
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("<redacted>"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "<unparsable database URL>".to_owned(),
    }
}

/// Serves the API on `listener` and, while this replica leads, runs the
/// background loops (clock, power, operations), until `shutdown` resolves;
/// then stops everything and returns. No boot listener: see
/// [`serve_with_boot`].
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    serve_with_boot(app, listener, Vec::new(), shutdown).await
}

/// [`serve`], plus the boot and agent endpoints (`/boot/`, `/images/`,
/// `/agent/v1/`) on each of `boot` (the `[boot] listen` addresses, on the
/// provisioning network), never on the API's `listener`.
pub async fn serve_with_boot(
    app: Arc<App>,
    listener: TcpListener,
    boot: Vec<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = match (&app.config.web.tls_cert, &app.config.web.tls_key) {
        (Some(cert), Some(key)) => Some(http::tls::server_config(cert, key)?),
        _ => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let boot_services = start_boot_services(&app, stop_rx.clone())?;
    let boot_hosts_loop = tokio::spawn(app.clone().run_boot_hosts_loop(stop_rx.clone()));
    let changes = tokio::spawn(app.clone().run_change_listener(stop_rx.clone()));
    let metrics = Arc::new(http::metrics::Metrics::new(app.clone()));
    let boot_servers: Vec<_> = boot
        .into_iter()
        .map(|listener| {
            let service = http::boot_router(app.clone(), metrics.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                axum::serve(listener, service)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|stopped| *stopped).await;
                    })
                    .await
            })
        })
        .collect();
    // The clock, power and operations loops run while this replica leads.
    let background = tokio::spawn(app.clone().run_background(stop_rx));
    let router = http::router(app, metrics);
    // The client address feeds the rate limit of account requests.
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = match tls {
        Some(config) => {
            // `tap_io` (doing nothing) is how axum gives any listener's
            // peer address as `ConnectInfo<SocketAddr>`.
            use axum::serve::ListenerExt;
            let listener = http::tls::TlsListener::new(listener, config)?.tap_io(|_| {});
            axum::serve(listener, service).with_graceful_shutdown(shutdown).await
        }
        None => axum::serve(listener, service).with_graceful_shutdown(shutdown).await,
    };
    stop_tx.send_replace(true);
    background.await.context("background loops panicked")?;
    changes.await.context("change listener panicked")?;
    boot_hosts_loop.await.context("boot hosts loop panicked")?;
    for server in boot_servers {
        server.await.context("boot listener panicked")?.context("boot listener failed")?;
    }
    if let Some(task) = boot_services {
        task.await.context("boot services panicked")?.context("boot services failed")?;
    }
    served.context("HTTP server failed")
}

/// Binds the DHCP, router advertisement and TFTP sockets the `[boot]`
/// configuration names (in this process's network namespace) and serves
/// them until `stop`; says at start what runs and what does not.
fn start_boot_services(
    app: &Arc<App>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let boot = &app.config.boot;
    tracing::info!(dir = %app.config.ramdisk_dir().display(), "HTTP boot (boot listeners only): /boot/ipxe?mac= scripts, deploy ramdisk at /boot/files/");
    let network = boot.network();
    if network.is_empty() {
        tracing::info!("boot network services: none configured (no [[boot.dhcp]], no [boot.tftp])");
        return Ok(None);
    }
    let bound = network.bind().context("cannot start the boot network services")?;
    for line in bound.describe() {
        tracing::info!("boot network service: {line}");
    }
    let directory: Arc<dyn ferrum_pxe::dhcp::Directory> = app.boot_hosts.clone();
    let base = boot.public_url.clone().unwrap_or_default().trim_end_matches('/').to_owned();
    Ok(Some(tokio::spawn(bound.run(directory, base, async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    }))))
}
