//! Getting `.deb` files from the host's apt configuration without installing
//! them: [`candidate`] asks the local package index (`apt-cache show`, no
//! network) which version apt would pick, [`download`] makes sure that exact
//! file is in the cache directory (`apt-get download`, run in that
//! directory) and that its sha256 is the one the archive signed.
//!
//! Nothing here installs a package on the host or changes apt's state.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Error, Result};
use crate::stamp::sha256_file;

/// One package version as the local apt index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The sha256 of the `.deb`, from the signed index.
    pub sha256: String,
    /// The raw `Depends:` field ("" when absent).
    pub depends: String,
}

impl Package {
    /// The file name `apt-get download` gives this package (an epoch's `:`
    /// is written `%3a`).
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.architecture)
    }

    /// The package names of the `Depends:` field, first alternative of each
    /// clause, without version constraints.
    pub fn dependencies(&self) -> Vec<String> {
        self.depends
            .split(',')
            .filter_map(|clause| clause.split('|').next())
            .filter_map(|alt| alt.split_whitespace().next())
            .map(|name| name.split(':').next().unwrap_or(name).to_owned())
            .filter(|name| !name.is_empty())
            .collect()
    }
}

/// The version of `name` apt would install now (its candidate), from the
/// local index. Fails when the index does not know the package (run
/// `apt-get update`).
pub fn candidate(name: &str) -> Result<Package> {
    let out = cmd::run(Command::new("apt-cache").args(["show", "--no-all-versions", name]))?;
    parse_show(name, &out)
}

fn parse_show(name: &str, text: &str) -> Result<Package> {
    let stanza = text.split("\n\n").next().unwrap_or("");
    let field = |key: &str| -> Option<String> {
        stanza.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_owned()))
    };
    let missing = |what: &str| Error::Package {
        package: name.to_owned(),
        reason: format!("`apt-cache show` gives no {what} (is the package index current? run `apt-get update`)"),
    };
    Ok(Package {
        name: field("Package").ok_or_else(|| missing("Package"))?,
        version: field("Version").ok_or_else(|| missing("Version"))?,
        architecture: field("Architecture").ok_or_else(|| missing("Architecture"))?,
        sha256: field("SHA256").ok_or_else(|| missing("SHA256"))?,
        depends: field("Depends").unwrap_or_default(),
    })
}

/// Makes sure `package`'s `.deb` is in `cache` with the announced sha256 and
/// returns its path. A cached file with the right hash is used as is (no
/// network); otherwise `apt-get download name=version` runs in `cache`.
pub fn download(cache: &Path, package: &Package) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).map_err(Error::io("create", cache))?;
    let path = cache.join(package.file_name());
    if path.exists() && sha256_file(&path)? == package.sha256 {
        tracing::info!(deb = %path.display(), "cached");
        return Ok(path);
    }
    tracing::info!(package = %package.name, version = %package.version, "downloading");
    cmd::run(
        Command::new("apt-get")
            // Root downloads into a directory `_apt` may not read: say so
            // instead of letting apt warn about it.
            .args(["-q", "-o", "APT::Sandbox::User=root", "download"])
            .arg(format!("{}={}", package.name, package.version))
            .current_dir(cache),
    )?;
    let actual = sha256_file(&path)?;
    if actual != package.sha256 {
        return Err(Error::Checksum { path, expected: package.sha256.clone(), actual });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Architecture: amd64
Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
Description: Linux for x86-64 cloud (meta-package)
SHA256: 0123abcd

";

    #[test]
    fn show_output_is_parsed() {
        let p = parse_show("linux-image-cloud-amd64", SHOW).unwrap();
        assert_eq!(p.name, "linux-image-cloud-amd64");
        assert_eq!(p.version, "6.1.192-2");
        assert_eq!(p.sha256, "0123abcd");
        assert_eq!(p.dependencies(), ["linux-image-6.1.0-56-cloud-amd64"]);
        assert_eq!(p.file_name(), "linux-image-cloud-amd64_6.1.192-2_amd64.deb");
    }

    #[test]
    fn dependencies_take_the_first_alternative_without_constraints() {
        let p = Package {
            name: "k".into(),
            version: "1:2.0".into(),
            architecture: "amd64".into(),
            sha256: String::new(),
            depends: "kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, libc6:amd64".into(),
        };
        assert_eq!(p.dependencies(), ["kmod", "linux-base", "initramfs-tools", "libc6"]);
        assert_eq!(p.file_name(), "k_1%3a2.0_amd64.deb");
    }

    #[test]
    fn an_unknown_package_is_an_error_naming_the_command() {
        let err = candidate("ferrum-no-such-package").unwrap_err().to_string();
        assert!(err.contains("apt-cache show --no-all-versions ferrum-no-such-package"), "{err}");
    }
}
