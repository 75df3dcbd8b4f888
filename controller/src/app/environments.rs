//! The environment catalog (SPEC §5): descriptors of deployable images,
//! validated once on the way in, shown to whom their visibility allows.
//!
//! Owns: descriptor validation (every error names the field), who may
//! publish what (`public` is for admins), who sees what, and the URL agents
//! fetch an image from (`http(s)://` as given, a relative path under the
//! controller's `/images/`). Must not: fetch or check the image itself (the
//! agent verifies its sha256 while writing).

use ferrum_api::environment::{Environment, EnvironmentDescriptor, Visibility};

use super::accounts::Actor;
use super::{App, AppError, AppResult};
use crate::db::EnvironmentRow;
use crate::model::time::from_seconds;

/// Checks what the types cannot; the error names the field.
pub fn validate(d: &EnvironmentDescriptor) -> AppResult<()> {
    let bad = |field: &str, why: String| Err(AppError::bad_request(format!("{field}: {why}")));
    let name_ok = !d.name.is_empty()
        && d.name.len() <= 64
        && d.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && d.name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !name_ok {
        return bad(
            "name",
            format!("'{}' must be 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", d.name),
        );
    }
    if i64::try_from(d.version).is_err() {
        return bad("version", "too large".into());
    }
    if d.arch != "x86_64" {
        return bad("arch", format!("'{}' is not supported (x86_64 only)", d.arch));
    }
    let image = d.image.trim();
    if image.is_empty() {
        return bad("image", "empty".into());
    }
    if image.contains("://") {
        if !(image.starts_with("http://") || image.starts_with("https://")) || url::Url::parse(image).is_err() {
            return bad("image", format!("'{image}' must be an http:// or https:// URL, or a path under the images directory"));
        }
    } else if image.starts_with('/') || image.split('/').any(|part| part == ".." || part.is_empty()) {
        return bad("image", format!("'{image}' must be a relative path under the images directory (no '..', no leading '/')"));
    }
    if d.sha256.len() != 64 || !d.sha256.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return bad("sha256", "must be 64 lowercase hex digits".into());
    }
    if d.size == 0 || i64::try_from(d.size).is_err() {
        return bad("size", "must be the decoded size in bytes (> 0)".into());
    }
    if d.root_partition == 0 || d.root_partition > 128 {
        return bad("root_partition", "must be a partition number from 1 to 128".into());
    }
    Ok(())
}

fn visibility_str(v: Visibility) -> &'static str {
    match v {
        Visibility::Public => "public",
        Visibility::Project => "project",
        Visibility::User => "user",
    }
}

impl App {
    /// Adds a descriptor to the catalog. Anyone may add `user` and
    /// `project` environments; `public` ones are for admins.
    pub async fn add_environment(&self, actor: &Actor, d: EnvironmentDescriptor) -> AppResult<Environment> {
        validate(&d)?;
        if d.visibility == Visibility::Public && !actor.is_admin {
            return Err(AppError::Forbidden("visibility: only admins publish public environments; use 'project' or 'user'".into()));
        }
        let text = serde_json::to_string(&d).map_err(|e| AppError::Internal(e.into()))?;
        let version = i64::try_from(d.version).map_err(|_| AppError::bad_request("version: too large"))?;
        let now = self.now();
        let visibility = visibility_str(d.visibility);
        self.store.insert_environment(&d.name, version, &text, visibility, actor.user_id, now).await?;
        tracing::info!(environment = %d.name, version = d.version, actor = %actor.name, "environment added");
        // The view of what was just stored, without reading the catalog back.
        self.environment_view(EnvironmentRow {
            name: d.name,
            version,
            descriptor: text,
            visibility: visibility.to_owned(),
            owner: actor.user_id,
            owner_name: actor.name.clone(),
            owner_projects: actor.projects.iter().map(|(_, p)| p.clone()).collect(),
            created_at: now,
        })
    }

    /// Every environment version `actor` may see, newest version first per name.
    pub async fn list_environments(&self, actor: &Actor) -> AppResult<Vec<Environment>> {
        let rows = self.store.list_environments().await?;
        rows.into_iter().filter(|r| visible(actor, r)).map(|r| self.environment_view(r)).collect()
    }

    /// One environment: `version`, or the newest `actor` may see.
    pub async fn get_environment(&self, actor: &Actor, name: &str, version: Option<u64>) -> AppResult<Environment> {
        let rows = self.store.list_environments().await?;
        let found = rows
            .into_iter()
            .filter(|r| r.name == name && visible(actor, r))
            .find(|r| version.is_none_or(|v| u64::try_from(r.version).ok() == Some(v)));
        match found {
            Some(r) => self.environment_view(r),
            None => Err(AppError::NotFound(match version {
                Some(v) => format!("no environment '{name}' version {v} that you can see"),
                None => format!("no environment '{name}' that you can see"),
            })),
        }
    }

    fn environment_view(&self, r: EnvironmentRow) -> AppResult<Environment> {
        let descriptor: EnvironmentDescriptor = serde_json::from_str(&r.descriptor).map_err(|e| AppError::Internal(e.into()))?;
        let image_url = if descriptor.image.contains("://") {
            descriptor.image.clone()
        } else {
            let base = self.config.boot.public_url.as_deref().unwrap_or("").trim_end_matches('/');
            format!("{base}/images/{}", descriptor.image)
        };
        Ok(Environment { descriptor, image_url, owner: r.owner_name, created_at: from_seconds(r.created_at) })
    }
}

fn visible(actor: &Actor, r: &EnvironmentRow) -> bool {
    actor.is_admin
        || r.visibility == "public"
        || r.owner == actor.user_id
        || (r.visibility == "project" && actor.projects.iter().any(|(_, p)| r.owner_projects.contains(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrum_api::agent::ImageFormat;
    use ferrum_api::environment::EnvironmentBoot;

    fn tiny() -> EnvironmentDescriptor {
        EnvironmentDescriptor {
            name: "tiny".into(),
            version: 2026112206,
            description: "busybox and dropbear".into(),
            arch: "x86_64".into(),
            image: "tiny/tiny-2026112206.raw.zst".into(),
            format: ImageFormat::RawZst,
            sha256: "a".repeat(64),
            size: 50_331_648,
            root_partition: 1,
            boot: EnvironmentBoot::Local,
            visibility: Visibility::Public,
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate(&tiny()).is_ok());
        type Change = fn(&mut EnvironmentDescriptor);
        let cases: [(Change, &str); 7] = [
            (|d| d.name = "Tiny!".into(), "name:"),
            (|d| d.arch = "arm64".into(), "arch:"),
            (|d| d.image = "../etc/passwd".into(), "image:"),
            (|d| d.image = "ftp://x/y".into(), "image:"),
            (|d| d.sha256 = "ABC".into(), "sha256:"),
            (|d| d.size = 0, "size:"),
            (|d| d.root_partition = 0, "root_partition:"),
        ];
        for (change, field) in cases {
            let mut d = tiny();
            change(&mut d);
            let err = validate(&d).unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
        let mut d = tiny();
        d.image = "https://images.example.org/tiny.raw.zst".into();
        assert!(validate(&d).is_ok());
    }
}
