//! The `tiny-python` stock environment: `tiny` (see [`crate::tiny`]) with
//! what Ansible needs on a managed node, so that EnOSlib's `run_command`
//! and plain `ansible -m ping` work as root over SSH:
//!
//! - the host's Debian `python3.11` (package `python3.11-minimal`) at
//!   `/usr/bin/python3.11` with `/usr/bin/python3` pointing at it, its
//!   standard library from `/usr/lib/python3.11` (package
//!   `libpython3.11-stdlib`) less what no managed node runs (tests, IDLE,
//!   tkinter, lib2to3, ensurepip, the pydoc data, the `-dev` build files,
//!   byte-code caches: a node compiles what it imports once, on its own
//!   disk) and its extension modules with the shared libraries they need,
//!   less those of the terminal (curses, readline), of databases (sqlite3,
//!   dbm) and of TLS (`_ssl`, `_hashlib`: `hashlib` falls back to its
//!   built-in digests; a node of the lab has no network to fetch from);
//! - OpenSSH's `sftp-server` (package `openssh-sftp-server`, downloaded
//!   from the archive, not installed on the host) at `/usr/lib/sftp-server`,
//!   the path Debian's dropbear runs for the `sftp` subsystem: Ansible
//!   sends its modules by sftp.

use std::path::{Path, PathBuf};

use crate::environment::Environment;
use crate::error::{Error, Result};
use crate::initramfs::{Builder, shared_libraries};
use crate::kernel::Kernel;
use crate::stamp::Stamp;
use crate::tiny::{self, Variant};
use crate::{Freshness, apt, cmd};

/// The environment's name.
pub const NAME: &str = "tiny-python";
/// The catalog description.
pub const DESCRIPTION: &str = "tiny with python3 (3.11, standard library) and sftp for Ansible: \
     busybox and dropbear on Debian's cloud kernel, root SSH by key only";

/// Bump when the recipe changes in a way its inputs do not show.
const RECIPE_VERSION: u32 = 1;

/// The interpreter and its library directory on the host.
pub const PYTHON: &str = "/usr/bin/python3.11";
pub const STDLIB: &str = "/usr/lib/python3.11";
/// The package holding `sftp-server`, and where dropbear looks for it.
const SFTP_PACKAGE: &str = "openssh-sftp-server";
const SFTP_IN_PACKAGE: &str = "usr/lib/openssh/sftp-server";
const SFTP_PATH: &str = "usr/lib/sftp-server";

/// Directories of the standard library left out, wherever they are.
const SKIP_DIRS: &[&str] = &[
    "__pycache__",
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "pydoc_data",
    "ensurepip",
    "site-packages",
    "dist-packages",
];
/// Extension modules left out (by the name before the first `.`).
const SKIP_EXTENSIONS: &[&str] = &[
    "_ssl",
    "_hashlib",
    "_sqlite3",
    "_dbm",
    "_curses",
    "_curses_panel",
    "readline",
    "nis",
    "ossaudiodev",
    "audioop",
    "_ctypes_test",
    "_testbuffer",
    "_testcapi",
    "_testclinic",
    "_testimportmultiple",
    "_testinternalcapi",
    "_testmultiphase",
    "_xxsubinterpreters",
    "_xxtestfuzz",
    "xxlimited",
    "xxlimited_35",
];

/// Builds `tiny-python` from `kernel` into the environments directory
/// `dir`; `.deb`s go to `cache`.
pub fn build(kernel: &Kernel, cache: &Path, dir: &Path) -> Result<(Environment, Freshness)> {
    let python = Path::new(PYTHON);
    if !python.is_file() {
        return Err(Error::Host { what: PYTHON.into(), reason: "is missing: install python3.11 (scripts/setup.sh does)".into() });
    }
    let package = apt::candidate(SFTP_PACKAGE)?;
    let files = stdlib_files(Path::new(STDLIB))?;
    let variant = Variant { name: NAME, description: DESCRIPTION, recipe_version: RECIPE_VERSION };

    // The stamp: the interpreter and its libraries, every library file
    // copied (by size and modification time: a package upgrade changes
    // both; hashing 14 MB at every build would cost more than it tells),
    // the sftp package (its archive sha256). `extra` (the .deb download
    // included) runs only when the image is not current.
    let listing: String = files
        .iter()
        .map(|(rel, src)| {
            let meta = std::fs::metadata(src).ok();
            let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let mtime = meta.and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            format!("{rel} {size} {}\n", mtime.map_or(0, |d| d.as_secs()))
        })
        .collect();
    let stamp_extra = |stamp: Stamp| -> Result<Stamp> {
        let mut stamp = stamp.input_file(PYTHON, python)?.input_text("stdlib", &listing).input("sftp-server", &package.sha256);
        for lib in shared_libraries(python)? {
            stamp = stamp.input_file(&lib.to_string_lossy(), &lib)?;
        }
        Ok(stamp)
    };

    let extra = || -> Result<Builder> {
        let mut extra = Builder::new();
        extra.program_with_libraries("usr/bin/python3.11", python)?;
        extra.symlink("usr/bin/python3", "python3.11")?;
        for (rel, src) in &files {
            extra.file(&format!("{}/{rel}", STDLIB.trim_start_matches('/')), src, 0o644)?;
            if rel.starts_with("lib-dynload/") {
                with_libraries(&mut extra, src)?;
            }
        }
        // sftp-server from its package, unpacked aside (never installed).
        let deb = apt::download(cache, &package)?;
        let unpacked = tempfile::tempdir().map_err(Error::io("create", std::env::temp_dir()))?;
        cmd::run(std::process::Command::new("dpkg-deb").arg("-x").arg(&deb).arg(unpacked.path()))?;
        let sftp = unpacked.path().join(SFTP_IN_PACKAGE);
        let bytes = std::fs::read(&sftp).map_err(Error::io("read", &sftp))?;
        extra.bytes(SFTP_PATH, bytes, 0o755)?;
        with_libraries(&mut extra, &sftp)?;
        Ok(extra)
    };
    tiny::build_variant(kernel, dir, &variant, stamp_extra, extra)
}

/// Adds the shared libraries `object` needs at the paths `ldd` gives.
fn with_libraries(tree: &mut Builder, object: &Path) -> Result<()> {
    for lib in library_dependencies(object)? {
        // Copy the content behind symlinks to the name the loader looks for.
        let real = std::fs::canonicalize(&lib).map_err(Error::io("resolve", &lib))?;
        tree.file(&lib.to_string_lossy(), &real, 0o755)?;
    }
    Ok(())
}

/// The files of the standard library to copy: (path relative to `root`,
/// the file to read), sorted. Symbolic links are followed (Debian links
/// `sitecustomize.py` to `/etc`); what [`SKIP_DIRS`] and
/// [`SKIP_EXTENSIONS`] name is left out.
pub fn stdlib_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn visit(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir).map_err(Error::io("read", dir))?.collect::<std::io::Result<_>>().map_err(Error::io("read", dir))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = std::fs::metadata(&path); // follows links
            let Ok(meta) = meta else { continue }; // a dangling link
            if meta.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) && !name.starts_with("config-") {
                    visit(root, &path, out)?;
                }
            } else if meta.is_file() {
                let stem = name.split('.').next().unwrap_or_default();
                let in_dynload = dir.file_name().is_some_and(|d| d == "lib-dynload");
                if in_dynload && SKIP_EXTENSIONS.contains(&stem) {
                    continue;
                }
                let rel = path.strip_prefix(root).map_err(|_| Error::TreePath { path: path.display().to_string() })?;
                let real = if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                    std::fs::canonicalize(&path).map_err(Error::io("resolve", &path))?
                } else {
                    path.clone()
                };
                out.push((rel.to_string_lossy().into_owned(), real));
            }
        }
        Ok(())
    }
    if !root.join("os.py").is_file() {
        return Err(Error::Host {
            what: root.display().to_string(),
            reason: "is not a Python standard library (no os.py): install libpython3.11-stdlib".into(),
        });
    }
    let mut out = Vec::new();
    visit(root, root, &mut out)?;
    Ok(out)
}

/// The shared libraries a shared object (an extension module) needs, as
/// `ldd` resolves them here. [`shared_libraries`] takes a file without a
/// program interpreter for a static program; an extension module has none
/// either, but does need libraries.
fn library_dependencies(object: &Path) -> Result<Vec<PathBuf>> {
    let out = cmd::run(std::process::Command::new("ldd").arg(object))?;
    let mut libs = Vec::new();
    for line in out.lines().map(str::trim) {
        let path = match line.split_once("=>") {
            Some((name, rest)) => match rest.split_whitespace().next() {
                Some(p) if p.starts_with('/') => p,
                _ => return Err(Error::Host { what: object.display().to_string(), reason: format!("ldd cannot find {}", name.trim()) }),
            },
            None => match line.split_whitespace().next() {
                Some(p) if p.starts_with('/') => p,
                _ => continue, // linux-vdso.so.1
            },
        };
        libs.push(PathBuf::from(path));
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stdlib_listing_leaves_out_tests_caches_and_tls() {
        let Ok(files) = stdlib_files(Path::new(STDLIB)) else {
            // The recipe's own error says what to install; the listing is
            // checked where the library is.
            assert!(!Path::new(STDLIB).join("os.py").is_file());
            return;
        };
        let names: Vec<&str> = files.iter().map(|(r, _)| r.as_str()).collect();
        for wanted in ["os.py", "json/__init__.py", "subprocess.py", "shlex.py", "tempfile.py", "zipfile.py", "encodings/utf_8.py"] {
            assert!(names.contains(&wanted), "{wanted} missing");
        }
        assert!(names.iter().any(|n| n.starts_with("lib-dynload/_json.")), "the _json accelerator");
        for dir in ["__pycache__", "test", "idlelib", "lib2to3", "config-3.11-x86_64-linux-gnu"] {
            assert!(!names.iter().any(|n| n.split('/').any(|c| c == dir)), "{dir}/ should be left out");
        }
        for file in ["lib-dynload/_ssl.", "lib-dynload/_sqlite3."] {
            assert!(!names.iter().any(|n| n.starts_with(file)), "{file}* should be left out");
        }
    }
}
