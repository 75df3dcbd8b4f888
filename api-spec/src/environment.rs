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
    /// `[a-z0-9][a-z0-9._-]*`, e.g. `debian12-min`. Names are per owner:
    /// two users may each have a `debian12-min`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9][a-z0-9._-]*$")]
    pub name: String,
    /// A number that grows with each build (ferrum's stock images use
    /// `YYYYMMDDHH`, like Grid'5000's environment versions).
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_u64)]
    pub version: u64,
    /// Free text, no control characters except newline and tab.
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]*$")]
    pub description: String,
    /// `x86_64`.
    #[serde(default = "x86_64")]
    #[schema(pattern = "^x86_64$")]
    pub arch: String,
    /// The image: an `http(s)://` URL, or a path relative to the
    /// controller's images directory (served at `/images/`).
    #[schema(min_length = 1, max_length = 2048)]
    pub image: String,
    pub format: ImageFormat,
    /// sha256 of the image file as published (the `.zst` for `raw.zst`).
    #[schema(min_length = 64, max_length = 64, pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    /// Bytes once decoded: what is written to the disk.
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    pub size: u64,
    /// The partition holding `/` (1-based).
    #[schema(minimum = 1, maximum = 128)]
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
    /// The catalog's number for this owner, name and version (what a
    /// deployment records, and what `[reset] default_environment = "id:N"`
    /// pins).
    #[serde(default)]
    pub id: i64,
    #[serde(flatten)]
    pub descriptor: EnvironmentDescriptor,
    /// The URL agents fetch the image from.
    pub image_url: String,
    pub owner: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /api/v1/environments/{name}?owner=&version=`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentQuery {
    /// Whose environment; default: yours if you have one of this name,
    /// else the public one, else the one shared with your project. The
    /// name may also be written `OWNER/NAME` (`%2F` in the path).
    #[param(max_length = 64)]
    pub owner: Option<String>,
    /// A version; default: the newest one.
    pub version: Option<u64>,
}
