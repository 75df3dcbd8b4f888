//! Environment descriptors (SPEC §5, Kadeploy's "kaenv"): the YAML file
//! written next to a stock image that tells the catalog what the image is.
//!
//! The descriptor is flat, so it is written here field by field; strings are
//! written as JSON strings, which are valid YAML double-quoted scalars, so
//! no value can break the document. Reading descriptors is the catalog's
//! business, not this crate's.

use std::fmt::Write as _;

/// One environment, as the catalog reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub name: String,
    /// Build time, `YYYYMMDDHH` (UTC), like Grid'5000's environment versions.
    pub version: u64,
    pub description: String,
    /// Always `x86_64` today.
    pub arch: String,
    /// The image file, relative to the descriptor.
    pub image: String,
    /// `raw.zst`.
    pub format: String,
    /// sha256 of the image file as stored (compressed).
    pub sha256: String,
    /// Bytes once decompressed (what is written to the disk).
    pub size: u64,
    /// The partition holding `/` (1-based).
    pub root_partition: u32,
    /// `local`: a bootloader in the image boots it.
    pub boot: String,
    /// `public`, `project` or `user`.
    pub visibility: String,
}

impl Descriptor {
    /// The YAML document.
    pub fn to_yaml(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let mut y = String::from("# ferrum environment descriptor (SPEC §5), written by ferrum-images\n");
        // Writing to a String cannot fail.
        let _ = write!(
            y,
            "name: {}\nversion: {}\ndescription: {}\narch: {}\nimage: {}\nformat: {}\nsha256: {}\nsize: {}\nroot_partition: {}\nboot: {}\nvisibility: {}\n",
            q(&self.name),
            self.version,
            q(&self.description),
            q(&self.arch),
            q(&self.image),
            q(&self.format),
            q(&self.sha256),
            self.size,
            self.root_partition,
            q(&self.boot),
            q(&self.visibility),
        );
        y
    }
}

/// The version of an environment built now: `YYYYMMDDHH`, UTC.
pub fn version_now() -> u64 {
    chrono::Utc::now().format("%Y%m%d%H").to_string().parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_flat_yaml_with_quoted_strings() {
        let d = Descriptor {
            name: "tiny".into(),
            version: 2025112205,
            description: "busybox: \"tiny\"\nsecond line".into(),
            arch: "x86_64".into(),
            image: "tiny.raw.zst".into(),
            format: "raw.zst".into(),
            sha256: "ab".repeat(32),
            size: 50331648,
            root_partition: 1,
            boot: "local".into(),
            visibility: "public".into(),
        };
        insta::assert_snapshot!(d.to_yaml(), @r#"
        # ferrum environment descriptor (SPEC §5), written by ferrum-images
        name: "tiny"
        version: 2025112205
        description: "busybox: \"tiny\"\nsecond line"
        arch: "x86_64"
        image: "tiny.raw.zst"
        format: "raw.zst"
        sha256: "abababababababababababababababababababababababababababababababab"
        size: 50331648
        root_partition: 1
        boot: "local"
        visibility: "public"
        "#);
    }

    #[test]
    fn versions_are_hours() {
        let v = version_now();
        assert!((2025010100..2100010100).contains(&v), "{v}");
    }
}
