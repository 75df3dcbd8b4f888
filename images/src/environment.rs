//! What every stock environment recipe ends with: the raw image compressed to
//! `<name>.raw.zst`, its `<name>.raw.zst.sha256` (sha256sum format) and the
//! descriptor `<name>.yaml`, side by side in the environments directory.

use std::fs;
use std::path::{Path, PathBuf};

use crate::descriptor::{self, Descriptor};
use crate::disk;
use crate::error::{Error, Result};

/// zstd level of stock images: decompression costs the same at every level;
/// this one keeps the build reasonably fast.
pub const ZSTD_LEVEL_IMAGE: i32 = 9;

/// A stock environment, ready for the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// `<dir>/<name>.yaml`.
    pub descriptor: PathBuf,
    /// `<dir>/<name>.raw.zst`.
    pub image: PathBuf,
    /// `<dir>/<name>.raw.zst.sha256`.
    pub sha256_file: PathBuf,
}

impl Environment {
    /// Where environment `name`'s files live in `dir`.
    pub fn at(dir: &Path, name: &str) -> Environment {
        Environment {
            descriptor: dir.join(format!("{name}.yaml")),
            image: dir.join(format!("{name}.raw.zst")),
            sha256_file: dir.join(format!("{name}.raw.zst.sha256")),
        }
    }

    /// The files that must exist for the environment to be complete.
    pub fn files(&self) -> [&Path; 3] {
        [&self.descriptor, &self.image, &self.sha256_file]
    }

    /// The sha256 of the image file, as its `.sha256` file records it.
    pub fn sha256(&self) -> Result<String> {
        let text = fs::read_to_string(&self.sha256_file).map_err(Error::io("read", &self.sha256_file))?;
        Ok(text.split_whitespace().next().unwrap_or("").to_owned())
    }
}

/// Compresses `raw` (then removes it) and writes the `.sha256` file and the
/// descriptor of environment `name` in `dir`.
pub fn publish(raw: &Path, dir: &Path, name: &str, description: &str) -> Result<Environment> {
    let env = Environment::at(dir, name);
    let compressed = disk::compress(raw, &env.image, ZSTD_LEVEL_IMAGE)?;
    fs::remove_file(raw).map_err(Error::io("remove", raw))?;
    let image_name = format!("{name}.raw.zst");
    fs::write(&env.sha256_file, format!("{}  {image_name}\n", compressed.sha256)).map_err(Error::io("write", &env.sha256_file))?;
    let descriptor = Descriptor {
        name: name.to_owned(),
        version: descriptor::version_now(),
        description: description.to_owned(),
        arch: "x86_64".into(),
        image: image_name,
        format: "raw.zst".into(),
        sha256: compressed.sha256,
        size: compressed.size,
        root_partition: 1,
        boot: "local".into(),
        visibility: "public".into(),
    };
    fs::write(&env.descriptor, descriptor.to_yaml()).map_err(Error::io("write", &env.descriptor))?;
    Ok(env)
}

/// A raw image size for `content` bytes of files: room for the file system's
/// own structures and some free space, in whole MiB, at least `min`.
pub fn raw_size(content: u64, min: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let wanted = content + content / 4 + 16 * MIB + disk::PARTITION_START * disk::SECTOR;
    wanted.max(min).div_ceil(8 * MIB) * 8 * MIB
}
