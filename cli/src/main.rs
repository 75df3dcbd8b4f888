//! `ferrum`: the command line of the ferrum testbed, for experimenters and
//! admins. `main` only parses the command line, runs the command on a
//! single-threaded tokio runtime and turns the outcome into an exit code;
//! everything else lives in the modules below.
//!
//! Exit codes: 0 ok, 1 other error, 2 usage error, 3 conflict, 4 not
//! authorised, 5 not found, 6 cannot reach the server (see
//! [`client`] for the full table, also printed by `ferrum --help`).

mod args;
mod client;
mod commands;
mod config;
mod flags;
mod gantt;
mod reference_tree;
mod render;
mod times;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are "errors" that print to stdout.
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(client::exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(client::exit::OTHER);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(client::exit_code(&err))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// STYLE.md: every module opens with a `//!` comment saying what it owns.
    #[test]
    fn every_module_opens_with_a_doc_comment() {
        fn visit(dir: &Path, missing: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("readable source dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    visit(&path, missing);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("readable source");
                    if !text.starts_with("//!") {
                        missing.push(path.display().to_string());
                    }
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut missing = Vec::new();
        visit(&root.join("src"), &mut missing);
        visit(&root.join("tests"), &mut missing);
        assert!(missing.is_empty(), "modules without a `//!` doc comment: {missing:?}");
    }
}
