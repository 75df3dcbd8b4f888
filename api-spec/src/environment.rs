//! Environments (Kadeploy's "kaenv", SPEC §5): the images users deploy,
//! described by a descriptor (YAML on disk, JSON on the wire) and kept in
//! the catalog (`GET/POST /api/v1/environments`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent::ImageFormat;

/// How a deployed environment starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvironmentBoot {
    /// A bootloader inside the image boots it from the local disk.
    #[default]
    Local,
    /// The ramdisk kexecs the kernel and initrd found inside the image.
    Kexec,
}

/// Who sees an environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Everyone (admins only may publish).
    Public,
    /// The members of the owner's projects.
    Project,
    /// The owner only.
    #[default]
    User,
}

/// An environment descriptor: what `ferrum env add FILE.yaml` reads and
/// `POST /api/v1/environments` takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentDescriptor {
    /// `[a-z0-9][a-z0-9._-]*`, e.g. `debian12-min`.
    pub name: String,
    /// A number that grows with each build (ferrum's stock images use
    /// `YYYYMMDDHH`, like Grid'5000's environment versions).
    pub version: u64,
    #[serde(default)]
    pub description: String,
    /// `x86_64`.
    #[serde(default = "x86_64")]
    pub arch: String,
    /// The image: an `http(s)://` URL, or a path relative to the
    /// controller's images directory (served at `/images/`).
    pub image: String,
    pub format: ImageFormat,
    /// sha256 of the image file as published (the `.zst` for `raw.zst`).
    pub sha256: String,
    /// Bytes once decoded: what is written to the disk.
    pub size: u64,
    /// The partition holding `/` (1-based).
    pub root_partition: u32,
    #[serde(default)]
    pub boot: EnvironmentBoot,
    #[serde(default)]
    pub visibility: Visibility,
}

fn x86_64() -> String {
    "x86_64".into()
}

/// A catalog entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    #[serde(flatten)]
    pub descriptor: EnvironmentDescriptor,
    /// The URL agents fetch the image from.
    pub image_url: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/v1/environments/{name}?version=`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentQuery {
    /// A version; default: the newest one you can see.
    pub version: Option<u64>,
}
