//! Where `ferrum` finds the server URL and the API token: command-line flags,
//! then the environment (`FERRUM_URL`, `FERRUM_TOKEN`), then the config file
//! (`--config`, `$FERRUM_CONFIG`, or `~/.config/ferrum/config.toml`), then
//! the built-in default URL.
//!
//! The precedence rule is the pure function [`resolve`]; reading the
//! environment and the file happens in [`load`] and nowhere else. This module
//! never prints the token and never talks to the server.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// ferrumd's default listen address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8750";

/// The config file's shape. Unknown keys are errors so that a typo
/// (`tokn = ...`) is reported instead of silently ignored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Controller URL, e.g. `https://ferrum.example.org`.
    pub url: Option<String>,
    /// API token.
    pub token: Option<String>,
}

/// What one source (flags, environment or file) says. Empty strings count
/// as unset, so `FERRUM_TOKEN=` does not hide the config file's token.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Layer {
    pub url: Option<String>,
    pub token: Option<String>,
}

impl Layer {
    pub fn new(url: Option<String>, token: Option<String>) -> Self {
        fn clean(value: Option<String>) -> Option<String> {
            value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
        }
        Layer { url: clean(url), token: clean(token) }
    }
}

/// Where a resolved value came from, for messages such as `ferrum whoami`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag,
    Env,
    File(PathBuf),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("command line"),
            Origin::Env => f.write_str("environment"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Default => f.write_str("built-in default"),
        }
    }
}

/// The settings a command runs with.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub url_origin: Origin,
    pub token: Option<String>,
    pub token_origin: Option<Origin>,
    /// The config file that was (or would have been) read; named in hints.
    pub config_path: Option<PathBuf>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("url_origin", &self.url_origin)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_origin", &self.token_origin)
            .field("config_path", &self.config_path)
            .finish()
    }
}

/// Flags beat the environment, which beats the config file, which beats the
/// default URL. There is no default token.
pub fn resolve(flags: &Layer, env: &Layer, file: &Layer, file_path: Option<&Path>) -> Settings {
    let file_origin = || Origin::File(file_path.map(Path::to_path_buf).unwrap_or_default());
    let pick = |get: fn(&Layer) -> &Option<String>| -> Option<(String, Origin)> {
        get(flags)
            .clone()
            .map(|v| (v, Origin::Flag))
            .or_else(|| get(env).clone().map(|v| (v, Origin::Env)))
            .or_else(|| get(file).clone().map(|v| (v, file_origin())))
    };
    let (url, url_origin) = pick(|l| &l.url).unwrap_or_else(|| (DEFAULT_URL.to_owned(), Origin::Default));
    let (token, token_origin) = match pick(|l| &l.token) {
        Some((token, origin)) => (Some(token), Some(origin)),
        None => (None, None),
    };
    Settings { url, url_origin, token, token_origin, config_path: file_path.map(Path::to_path_buf) }
}

/// Which config file to read, and whether the user named it (then it must
/// exist) or it is the default (then a missing file is fine).
pub fn config_path(flag: Option<&Path>, env: Option<OsString>, home: Option<OsString>) -> Option<(PathBuf, bool)> {
    if let Some(path) = flag {
        return Some((path.to_path_buf(), true));
    }
    if let Some(path) = env.filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(path), true));
    }
    home.filter(|h| !h.is_empty()).map(|home| (PathBuf::from(home).join(".config/ferrum/config.toml"), false))
}

/// Reads and checks a config file. A missing default file is an empty layer;
/// anything else that goes wrong is an error naming the file (and, from the
/// TOML parser, the line and key).
pub fn read_file(path: &Path, explicit: bool) -> Result<Layer> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Layer::default());
        }
        Err(err) => {
            return Err(err).with_context(|| format!("cannot read config file {}", path.display()));
        }
    };
    parse_file(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// Parses the text of a config file. Errors give the line and the key but
/// never quote the file (the token line would be in the quote).
pub fn parse_file(text: &str) -> Result<Layer> {
    let file: FileConfig = toml::from_str(text).map_err(|err| anyhow::anyhow!(describe_toml_error(text, &err)))?;
    Ok(Layer::new(file.url, file.token))
}

fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return err.message().to_owned();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(key, _)| key.trim())
        .filter(|key| !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.\"'".contains(c)));
    match key {
        // The message may quote the value; for the token it must not.
        Some("token") => {
            format!("line {line_no}, key `token`: invalid value; write token = \"...\"")
        }
        Some(key) => format!("line {line_no}, key `{key}`: {}", err.message().trim()),
        None => format!("line {line_no}: {}", err.message().trim()),
    }
}

/// Gathers the three sources from the real environment and resolves them.
pub fn load(flag_url: Option<String>, flag_token: Option<String>, flag_config: Option<&Path>) -> Result<Settings> {
    let flags = Layer::new(flag_url, flag_token);
    let env = Layer::new(env_string("FERRUM_URL")?, env_string("FERRUM_TOKEN")?);
    let located = config_path(flag_config, std::env::var_os("FERRUM_CONFIG"), std::env::var_os("HOME"));
    let file = match &located {
        Some((path, explicit)) => read_file(path, *explicit)?,
        None => Layer::default(),
    };
    Ok(resolve(&flags, &env, &file, located.as_ref().map(|(p, _)| p.as_path())))
}

fn env_string(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{name} is not valid UTF-8"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(url: Option<&str>, token: Option<&str>) -> Layer {
        Layer::new(url.map(str::to_owned), token.map(str::to_owned))
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let file_path = Path::new("/home/u/.config/ferrum/config.toml");
        let flags = layer(Some("http://flag:1"), None);
        let env = layer(Some("http://env:1"), Some("env-token"));
        let file = layer(Some("http://file:1"), Some("file-token"));

        let s = resolve(&flags, &env, &file, Some(file_path));
        assert_eq!(s.url, "http://flag:1");
        assert_eq!(s.url_origin, Origin::Flag);
        assert_eq!(s.token.as_deref(), Some("env-token"));
        assert_eq!(s.token_origin, Some(Origin::Env));

        let s = resolve(&Layer::default(), &layer(None, None), &file, Some(file_path));
        assert_eq!(s.url, "http://file:1");
        assert_eq!(s.token.as_deref(), Some("file-token"));
        assert_eq!(s.token_origin, Some(Origin::File(file_path.to_path_buf())));

        let s = resolve(&layer(None, Some("flag-token")), &env, &file, None);
        assert_eq!(s.url, "http://env:1");
        assert_eq!(s.token.as_deref(), Some("flag-token"));
        assert_eq!(s.token_origin, Some(Origin::Flag));
    }

    #[test]
    fn nothing_set_gives_the_default_url_and_no_token() {
        let s = resolve(&Layer::default(), &Layer::default(), &Layer::default(), None);
        assert_eq!(s.url, DEFAULT_URL);
        assert_eq!(s.url_origin, Origin::Default);
        assert_eq!(s.token, None);
        assert_eq!(s.token_origin, None);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = resolve(&Layer::default(), &layer(Some(""), Some("  ")), &layer(None, Some("file-token")), None);
        assert_eq!(s.url, DEFAULT_URL);
        assert_eq!(s.token.as_deref(), Some("file-token"));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let s = resolve(&layer(None, Some("s3cret")), &Layer::default(), &Layer::default(), None);
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn config_path_prefers_flag_then_env_then_home() {
        let flag = Path::new("/etc/ferrum.toml");
        assert_eq!(config_path(Some(flag), Some("/env.toml".into()), Some("/home/u".into())), Some((flag.to_path_buf(), true)));
        assert_eq!(config_path(None, Some("/env.toml".into()), Some("/home/u".into())), Some((PathBuf::from("/env.toml"), true)));
        assert_eq!(
            config_path(None, Some("".into()), Some("/home/u".into())),
            Some((PathBuf::from("/home/u/.config/ferrum/config.toml"), false))
        );
        assert_eq!(config_path(None, None, None), None);
    }

    #[test]
    fn config_file_parses_and_rejects_unknown_keys() {
        let ok = parse_file("url = \"http://ferrum:8750\"\ntoken = \"abc\"\n").expect("valid");
        assert_eq!(ok, layer(Some("http://ferrum:8750"), Some("abc")));

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "url = \"http://x\"\ntokn = \"abc\"\n").expect("write");
        let err = format!("{:#}", read_file(&path, true).expect_err("unknown key"));
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("tokn"), "{err}");

        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("abc"), "the file's values are never quoted: {err}");

        std::fs::write(&path, "url = 8750\n").expect("write");
        let err = format!("{:#}", read_file(&path, true).expect_err("wrong type"));
        assert!(err.contains(&path.display().to_string()) && err.contains("key `url`"), "{err}");

        std::fs::write(&path, "url = \"http://x\"\ntoken = s3cret-unquoted\n").expect("write");
        let err = format!("{:#}", read_file(&path, true).expect_err("unquoted token"));
        assert!(err.contains("key `token`") && !err.contains("s3cret"), "{err}");

        std::fs::write(&path, "token = 12345678\n").expect("write");
        let err = format!("{:#}", read_file(&path, true).expect_err("token of the wrong type"));
        assert!(err.contains("key `token`") && !err.contains("12345678"), "{err}");
    }

    #[test]
    fn missing_file_is_fine_only_when_it_is_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("absent.toml");
        assert_eq!(read_file(&path, false).expect("default may be missing"), Layer::default());
        let err = format!("{:#}", read_file(&path, true).expect_err("named file must exist"));
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
