//! Stamps: how a step knows it can be skipped.
//!
//! A stamp is a small text file next to a step's output that records the
//! recipe's name and version and the hash of every input. A step is skipped
//! when its outputs exist and the stamp on disk is exactly the stamp it would
//! write now. A step removes its stamp before it touches its outputs and
//! writes it last, so an interrupted step is never mistaken for a done one.
//! This module decides nothing about what the inputs are: the recipes do.

use std::fmt::{self, Display};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::cmd;
use crate::error::{Error, Result};

/// The stamp a step would write for its current inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    text: String,
}

impl Stamp {
    /// A stamp for `recipe` at `version` (bump the version when a recipe's
    /// code changes in a way its inputs do not show).
    pub fn new(recipe: &str, version: u32) -> Stamp {
        Stamp { text: format!("recipe {recipe} {version}\n") }
    }

    /// Records one input by value (a package version, a module list).
    pub fn input(mut self, name: &str, value: impl Display) -> Stamp {
        self.text.push_str(&format!("input {name} {value}\n"));
        self
    }

    /// Records one input by the sha256 of a file's content.
    pub fn input_file(self, name: &str, path: &Path) -> Result<Stamp> {
        let hash = sha256_file(path)?;
        Ok(self.input(name, format_args!("sha256:{hash}")))
    }

    /// Records one input by the sha256 of a text (a script the recipe embeds).
    pub fn input_text(self, name: &str, text: &str) -> Stamp {
        let hash = sha256_bytes(text.as_bytes());
        self.input(name, format_args!("sha256:{hash}"))
    }

    /// Whether the step can be skipped: every output exists and `path` holds
    /// this very stamp.
    pub fn is_current(&self, path: &Path, outputs: &[&Path]) -> bool {
        outputs.iter().all(|o| o.exists()) && fs::read_to_string(path).is_ok_and(|on_disk| on_disk == self.text)
    }

    /// Removes the stamp at `path` (before a step rebuilds its outputs).
    pub fn invalidate(path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
            _ => Ok(()),
        }
    }

    /// Writes the stamp to `path` (after the outputs are complete).
    pub fn write(&self, path: &Path) -> Result<()> {
        fs::write(path, &self.text).map_err(Error::io("write", path))
    }
}

impl Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where the stamp of an output lives: `<output>.stamp`, next to it.
pub fn path_for(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".stamp");
    PathBuf::from(name)
}

/// The lowercase hex sha256 of a file's content, by coreutils' `sha256sum`
/// (the `sha2` crate is unoptimised in dev builds, where tests run, and
/// hashes a kernel `.deb` at a few MB/s).
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = cmd::run(Command::new("sha256sum").arg("--binary").arg(path))?;
    match out.split_whitespace().next() {
        Some(hash) if hash.len() == 64 => Ok(hash.to_owned()),
        _ => Err(Error::Host { what: format!("sha256sum {}", path.display()), reason: format!("unexpected answer {out:?}") }),
    }
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_current_only_with_its_outputs_and_the_same_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.img");
        let stamp_path = path_for(&out);
        assert_eq!(stamp_path, dir.path().join("out.img.stamp"));
        let stamp = Stamp::new("demo", 1).input("kernel", "6.1").input_text("init", "#!/bin/sh\n");

        assert!(!stamp.is_current(&stamp_path, &[&out]), "nothing written yet");
        stamp.write(&stamp_path).unwrap();
        assert!(!stamp.is_current(&stamp_path, &[&out]), "the output is missing");
        fs::write(&out, b"x").unwrap();
        assert!(stamp.is_current(&stamp_path, &[&out]));

        let changed = Stamp::new("demo", 1).input("kernel", "6.2").input_text("init", "#!/bin/sh\n");
        assert!(!changed.is_current(&stamp_path, &[&out]), "an input changed");
        let bumped = Stamp::new("demo", 2).input("kernel", "6.1").input_text("init", "#!/bin/sh\n");
        assert!(!bumped.is_current(&stamp_path, &[&out]), "the recipe version changed");

        Stamp::invalidate(&stamp_path).unwrap();
        Stamp::invalidate(&stamp_path).unwrap();
        assert!(!stamp.is_current(&stamp_path, &[&out]));
    }

    #[test]
    fn file_hashes_are_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"abc").unwrap();
        assert_eq!(sha256_file(&f).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(sha256_bytes(b"abc"), sha256_file(&f).unwrap());
    }
}
