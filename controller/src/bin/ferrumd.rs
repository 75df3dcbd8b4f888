//! `ferrumd`: the ferrum controller daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferrum_controller::clock::Clock;
use ferrum_controller::config::{Config, LogFormat};
use ferrum_controller::server;
use tracing_subscriber::EnvFilter;

/// The ferrum controller: REST API, reservation calendar, inventory and the
/// clock loop, on an embedded SQLite database by default.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Every option has a default; see ferrumd.example.toml. Flags override the config file.\n\
On first start with an empty database, ferrumd creates the user 'admin' and writes its API token to DATA_DIR/admin.token (mode 0600).\n\
BMC credentials are encrypted in the database with the key in DATA_DIR/secret.key (created on first start; secrets_key_file in the config file): back it up apart from the database."
)]
struct Args {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Address to serve the API on [default: 127.0.0.1:8750].
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// State directory [default: ferrum-data].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite://DATA_DIR/ferrum.db].
    #[arg(long, value_name = "URL", global = true)]
    database: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copies a one-machine ferrum's SQLite database into a fresh
    /// PostgreSQL database (every table, ids kept), then exits. Stop the
    /// ferrumd serving from the SQLite file first.
    CopyDatabase {
        /// The SQLite database, e.g. sqlite:///var/lib/ferrum/ferrum.db.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The PostgreSQL database, empty (never served from).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Rows read from SQLite at a time (memory against round trips).
        #[arg(long, value_name = "N", default_value_t = ferrum_controller::db::copy::DEFAULT_BATCH_ROWS)]
        batch_rows: u32,
    },
    /// Writes a consistent copy of the SQLite database (the configured
    /// one) to a new file, mode 0600, while ferrumd may keep running; then
    /// says which key file the backup needs. For PostgreSQL it writes
    /// nothing and prints the pg_dump command to run instead.
    Backup {
        /// The backup file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::CopyDatabase { from, to, batch_rows }) = &args.command {
        let report = ferrum_controller::db::copy::sqlite_to_postgres(from, to, *batch_rows).await?;
        for (table, rows) in &report.tables {
            println!("{table}: {rows} rows");
        }
        println!("copied {} tables into {}", report.tables.len(), server::redact_url(to));
        if let Some(fingerprint) = &report.key_fingerprint {
            println!(
                "BMC credentials were copied encrypted: start the PostgreSQL ferrumd with the secrets key file of the SQLite one \
                 (fingerprint {fingerprint}; secrets_key_file in its config file)"
            );
        }
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(db) = args.database {
        config.database = Some(db);
    }
    if let Some(Command::Backup { to }) = &args.command {
        return backup(&config, to).await;
    }
    let filter =
        EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(&config.log.level)).context("log.level is not a valid filter")?;
    match config.log.format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
    }

    let listen = config.listen;
    // Port 0 asks the kernel for a free port: two such addresses never clash.
    if listen.port() != 0 && config.boot.listen.contains(&listen) {
        anyhow::bail!("boot.listen: {listen} is the API's listen address; the boot and agent endpoints need their own");
    }
    let boot_listen = config.boot.listen.clone();
    let token_path = server::admin_token_path(&config);
    let app = server::open(config, Clock::System).await?;
    // The boot listeners are bound and logged first: tests read the API's
    // `addr=` as the last address line.
    let mut boot = Vec::with_capacity(boot_listen.len());
    for addr in boot_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (boot.listen)"))?;
        let boot_addr = listener.local_addr()?;
        tracing::info!(boot_addr = %boot_addr, "boot and agent endpoints serving (/boot/, /images/, /agent/v1/)");
        boot.push(listener);
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, "ferrumd serving");
    tracing::info!("reach it with: export FERRUM_URL=http://{addr} FERRUM_TOKEN=$(cat {}); ferrum whoami", token_path.display());
    server::serve_with_boot(app, listener, boot, shutdown_signal()).await
}

/// `ferrumd backup --to FILE`: the copy, then where its key is.
async fn backup(config: &Config, to: &std::path::Path) -> anyhow::Result<()> {
    use ferrum_controller::db::SecretKey;
    use ferrum_controller::db::backup::Backup;
    let url = config.database_url();
    let key_path = config.secrets_key_path();
    let fingerprint = match ferrum_controller::db::backup::backup(&url, to).await? {
        Backup::Written { path, key_fingerprint } => {
            println!("backup of {} written to {} (mode 0600)", server::redact_url(&url), path.display());
            println!("restore: put it at DATA_DIR/ferrum.db (mode 0600) of a stopped or new ferrumd, with the key file below");
            key_fingerprint
        }
        Backup::PgDump { command, key_fingerprint } => {
            println!("ferrumd does not dump PostgreSQL itself (nothing was written); run PostgreSQL's own tool, with the password:");
            println!("  {command}");
            println!("restore into a new, empty database with: pg_restore --dbname=NEW_DATABASE_URL {}", to.display());
            key_fingerprint
        }
    };
    match fingerprint {
        None => println!("no BMC credentials are encrypted in it yet (no ferrumd with a secrets key has opened this database)"),
        Some(fingerprint) => {
            println!(
                "the BMC credentials in it are encrypted with the secrets key {fingerprint}, which is NOT in the backup: the backup is \
                 useless without that key file"
            );
            match SecretKey::load(&key_path) {
                Ok(key) if key.fingerprint() == fingerprint => println!("that key is in {}", key_path.display()),
                Ok(key) => println!(
                    "WARNING: the key file {} is another key ({}): find the key of this database",
                    key_path.display(),
                    key.fingerprint()
                ),
                Err(e) => println!("WARNING: {e}: find the key of this database"),
            }
            println!("keep a copy of the key file, but not beside the backup: whoever holds both holds the BMC passwords");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
    tracing::info!("shutting down");
}
