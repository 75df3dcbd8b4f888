//! What each command does: resolve settings, call the API through
//! [`Client`], and print either the API's JSON (`--json`) or a view from
//! [`crate::render`].
//!
//! Commands own the sequencing of requests (GET then PATCH for `lease
//! extend --by`) and the local refusals (cancel after start). They must not
//! format tables themselves, build URLs by hand, or print the token except
//! where showing a new token is the command's purpose.

mod admin;
mod calendar;
mod deploy;
mod env;
mod lab;
mod lease;
mod node;
mod usage;

use std::io::Write;

use crate::args::{AccountCommand, Cli, Command};
use crate::client::{Answer, CliError, Client};
use crate::config::{self, Settings};
use crate::render::{self, TableOpts};
use anyhow::{Context, Result};

/// Everything a command needs.
#[derive(Debug)]
pub struct Ctx {
    pub client: Client,
    pub settings: Settings,
    pub json: bool,
    pub table: TableOpts,
}

impl Ctx {
    /// Prints an answer: its JSON with `--json`, else the given view.
    pub fn show<T>(&self, answer: &Answer<T>, view: impl FnOnce(&T, TableOpts) -> String) -> Result<()> {
        if self.json { out(&render::pretty_json(&answer.raw)) } else { out(&view(&answer.value, self.table)) }
    }
}

/// Writes to stdout; a closed pipe (`ferrum node list | head -1`) is not an
/// error.
pub fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err).context("cannot write to stdout"),
        _ => Ok(()),
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    // The lab needs no server settings: it starts its own ferrumd.
    let command = match cli.command {
        Command::Lab(cmd) => return lab::run(cmd).await,
        command => command,
    };
    let settings = config::load(cli.global.url, cli.global.token, cli.global.config.as_deref())?;
    // Asking for an account is what people without a token do.
    if let Command::Account(AccountCommand::Request(args)) = command {
        let client = Client::new(&settings.url, &settings.url_origin.to_string(), settings.token.clone().unwrap_or_default())?;
        let ctx = Ctx { client, settings, json: cli.global.json, table: TableOpts::detect() };
        return admin::request_account(&ctx, args).await;
    }
    let Some(token) = settings.token.clone() else {
        let config = settings.config_path.as_ref().map_or_else(|| "~/.config/ferrum/config.toml".to_owned(), |p| p.display().to_string());
        return Err(CliError::NoToken { config }.into());
    };
    let client = Client::new(&settings.url, &settings.url_origin.to_string(), token)?;
    let ctx = Ctx { client, settings, json: cli.global.json, table: TableOpts::detect() };
    match command {
        Command::Node(cmd) => node::run(&ctx, cmd).await,
        Command::Lease(cmd) => lease::run(&ctx, cmd).await,
        Command::Site(crate::args::SiteCommand::List) => node::sites(&ctx).await,
        Command::Env(cmd) => env::run(&ctx, cmd).await,
        Command::Deploy(args) => deploy::deploy(&ctx, args).await,
        Command::Deployment(cmd) => deploy::run(&ctx, cmd).await,
        Command::Availability(args) => calendar::availability(&ctx, args).await,
        Command::Calendar(args) => calendar::calendar(&ctx, args).await,
        Command::Usage(args) => usage::usage(&ctx, args).await,
        Command::Quota { project } => usage::quota(&ctx, project).await,
        Command::Whoami => admin::whoami(&ctx).await,
        Command::Token(cmd) => admin::my_tokens(&ctx, cmd).await,
        Command::Key(cmd) => admin::my_keys(&ctx, cmd).await,
        Command::Admin(cmd) => admin::run(&ctx, cmd).await,
        Command::Account(AccountCommand::Request(args)) => admin::request_account(&ctx, args).await,
        Command::Account(AccountCommand::Export) => admin::export(&ctx, &["users", "me", "export"]).await,
        Command::Lab(cmd) => lab::run(cmd).await,
    }
}
