//! The environment catalog (SPEC §5): descriptors of deployable images,
//! validated once on the way in, shown to whom their visibility allows,
//! and resolved by name in one place ([`App::resolve_environment`]).
//!
//! Owns: descriptor validation (every error names the field, free text has
//! limits), who may publish what (`public` is for admins), who sees what,
//! how a name resolves (names are per owner: a caller's own versions, else
//! public ones, else those shared with his projects; never another user's
//! private version unless named `OWNER/NAME`), and the URL agents fetch an
//! image from (`http(s)://` as given, a relative path under the
//! controller's `/images/`). Must not: fetch or check the image itself (the
//! agent verifies its sha256 while writing).

use ferrum_api::environment::{Environment, EnvironmentDescriptor, Visibility};

use super::accounts::Actor;
use super::{App, AppError, AppResult};
use crate::config::EnvironmentPin;
use crate::db::{DbError, EnvironmentRow};
use crate::model::time::from_seconds;

/// The longest description, in characters.
pub const MAX_DESCRIPTION: usize = 1000;
/// The longest image URL or path, in characters.
pub const MAX_IMAGE: usize = 2048;
/// The longest environment reference (`OWNER/NAME`) a request may name,
/// in characters.
pub const MAX_REFERENCE: usize = ferrum_api::limits::ENVIRONMENT;

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
    if d.description.chars().count() > MAX_DESCRIPTION {
        return bad("description", format!("at most {MAX_DESCRIPTION} characters"));
    }
    if d.description.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c)) {
        return bad("description", "control and bidirectional control characters are not allowed (newlines and tabs are)".into());
    }
    if d.arch != "x86_64" {
        return bad("arch", format!("'{}' is not supported (x86_64 only)", d.arch));
    }
    let image = d.image.trim();
    if image.is_empty() {
        return bad("image", "empty".into());
    }
    if d.image.chars().count() > MAX_IMAGE {
        return bad("image", format!("at most {MAX_IMAGE} characters"));
    }
    if d.image.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return bad("image", "control characters are not allowed".into());
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

/// The characters that reorder text on display (they garble listings).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
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
        // Names are per owner: the only clash possible is with one of the
        // caller's own versions, so saying so reveals nothing of others'.
        let id = match self.store.insert_environment(&d.name, version, &text, visibility, actor.user_id, now).await {
            Ok(id) => id,
            Err(DbError::AlreadyExists { .. }) => {
                return Err(AppError::Conflict {
                    message: format!("version: you already have '{}' version {}; publish a new version", d.name, d.version),
                    earliest_start: None,
                });
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(environment = %d.name, version = d.version, id, actor = %actor.name, "environment added");
        // The view of what was just stored, without reading the catalog back.
        self.environment_view(EnvironmentRow {
            id,
            owner_is_admin: actor.is_admin,
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

    /// One environment for `actor`: `NAME` or `OWNER/NAME` (or `owner`
    /// given apart), `version` or the newest (see [`App::resolve_environment`]).
    pub async fn get_environment(&self, actor: &Actor, name: &str, owner: Option<&str>, version: Option<u64>) -> AppResult<Environment> {
        let (qualified_owner, name) = split_reference(name);
        let owner = match (owner, qualified_owner) {
            (Some(a), Some(b)) if a != b => {
                return Err(AppError::bad_request(format!("owner: '{a}' differs from the owner named in '{b}/{name}'")));
            }
            (a, b) => a.or(b),
        };
        self.resolve_environment(Lookup::Caller(actor), owner, name, version).await
    }

    /// The one place a name becomes a catalog entry (API reads, deploys,
    /// a lease's deployment, the reset's default environment).
    pub async fn resolve_environment(
        &self,
        lookup: Lookup<'_>,
        owner: Option<&str>,
        name: &str,
        version: Option<u64>,
    ) -> AppResult<Environment> {
        let rows = self.store.list_environments().await?;
        let row = pick(rows, lookup, owner, name, version)?;
        self.environment_view(row)
    }

    /// The reset's default environment (`[reset] default_environment`),
    /// among admin-owned environments only; `None` when none is configured.
    pub async fn reset_environment(&self) -> AppResult<Option<Environment>> {
        match self.config.reset.default_environment_pin().map_err(AppError::bad_request)? {
            None => Ok(None),
            Some(EnvironmentPin::Id(id)) => self.admin_environment(id).await.map(Some),
            Some(EnvironmentPin::Name { owner, name }) => {
                self.resolve_environment(Lookup::System, owner.as_deref(), &name, None).await.map(Some)
            }
        }
    }

    /// An admin-owned environment by id (what a reset pinned).
    pub async fn admin_environment(&self, id: i64) -> AppResult<Environment> {
        let rows = self.store.list_environments().await?;
        match rows.into_iter().find(|r| r.id == id && r.owner_is_admin) {
            Some(r) => self.environment_view(r),
            None => Err(AppError::NotFound(format!("no admin-owned environment with id {id}"))),
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
        Ok(Environment { id: r.id, descriptor, image_url, owner: r.owner_name, created_at: from_seconds(r.created_at) })
    }
}

/// Who looks a name up.
#[derive(Clone, Copy, Debug)]
pub enum Lookup<'a> {
    /// A person, or the system on a person's behalf (a lease's deployment
    /// runs as the lease's owner).
    Caller(&'a Actor),
    /// The system for no one (the reset's default environment): only
    /// public environments owned by an admin.
    System,
}

impl Lookup<'_> {
    /// Whether the entry may be resolved at all (when named by its owner).
    fn may_use(self, r: &EnvironmentRow) -> bool {
        match self {
            Lookup::Caller(actor) => visible(actor, r),
            Lookup::System => r.owner_is_admin && r.visibility == "public",
        }
    }

    /// The tiers an unqualified name is looked for in, in order: the
    /// caller's own versions, public ones, those shared with his projects.
    /// An admin's tiers are the same: another user's `user` or `project`
    /// version is never taken unless named `OWNER/NAME`.
    fn tier(self, r: &EnvironmentRow) -> Option<u8> {
        match self {
            Lookup::Caller(actor) if r.owner == actor.user_id => Some(0),
            Lookup::Caller(_) if r.visibility == "public" => Some(1),
            Lookup::Caller(actor) if r.visibility == "project" && shares_project(actor, r) => Some(2),
            Lookup::Caller(_) => None,
            Lookup::System => self.may_use(r).then_some(1),
        }
    }
}

/// `OWNER/NAME` → (Some(OWNER), NAME); `NAME` → (None, NAME).
pub fn split_reference(reference: &str) -> (Option<&str>, &str) {
    match reference.split_once('/') {
        Some((owner, name)) => (Some(owner), name),
        None => (None, reference),
    }
}

/// The resolution itself, over the whole catalog (newest version first
/// per name): the first tier holding a matching version wins; a tier with
/// the name from several owners is ambiguous (never a silent pick).
fn pick(rows: Vec<EnvironmentRow>, lookup: Lookup<'_>, owner: Option<&str>, name: &str, version: Option<u64>) -> AppResult<EnvironmentRow> {
    let what = match (owner, version) {
        (Some(o), Some(v)) => format!("'{o}/{name}' version {v}"),
        (Some(o), None) => format!("'{o}/{name}'"),
        (None, Some(v)) => format!("'{name}' version {v}"),
        (None, None) => format!("'{name}'"),
    };
    let matching = rows
        .into_iter()
        .filter(|r| r.name == name && version.is_none_or(|v| u64::try_from(r.version).ok() == Some(v)))
        .filter(|r| owner.is_none_or(|o| r.owner_name == o));
    let found: Vec<(u8, EnvironmentRow)> = if owner.is_some() {
        matching.filter(|r| lookup.may_use(r)).map(|r| (0, r)).collect()
    } else {
        matching.filter_map(|r| lookup.tier(&r).map(|t| (t, r))).collect()
    };
    let Some(best) = found.iter().map(|(t, _)| *t).min() else {
        return Err(AppError::NotFound(format!("no environment {what} that you can see")));
    };
    let tier: Vec<EnvironmentRow> = found.into_iter().filter(|(t, _)| *t == best).map(|(_, r)| r).collect();
    let mut owners: Vec<&str> = tier.iter().map(|r| r.owner_name.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    if owners.len() > 1 {
        return Err(AppError::Conflict {
            message: format!("environment {what} is published by several owners ({}); name one as OWNER/{name}", owners.join(", ")),
            earliest_start: None,
        });
    }
    Ok(tier.into_iter().next().expect("a non-empty tier"))
}

fn shares_project(actor: &Actor, r: &EnvironmentRow) -> bool {
    actor.projects.iter().any(|(_, p)| r.owner_projects.contains(p))
}

fn visible(actor: &Actor, r: &EnvironmentRow) -> bool {
    actor.is_admin || r.visibility == "public" || r.owner == actor.user_id || (r.visibility == "project" && shares_project(actor, r))
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

    fn row(id: i64, owner: (i64, &str, bool), version: i64, visibility: &str, projects: &[&str]) -> EnvironmentRow {
        EnvironmentRow {
            id,
            name: "tiny".into(),
            version,
            descriptor: String::new(),
            visibility: visibility.into(),
            owner: crate::model::UserId(owner.0),
            owner_name: owner.1.into(),
            owner_is_admin: owner.2,
            owner_projects: projects.iter().map(|p| (*p).to_owned()).collect(),
            created_at: 0,
        }
    }

    fn actor(id: i64, name: &str, is_admin: bool, projects: &[&str]) -> Actor {
        Actor {
            user_id: crate::model::UserId(id),
            name: name.into(),
            is_admin,
            projects: projects.iter().map(|p| (crate::model::ProjectId(0), (*p).to_owned())).collect(),
        }
    }

    /// Finding 1: alice's newer `user` version of the public name reaches
    /// neither an admin nor the system (the reset's default environment).
    #[test]
    fn resolution_never_takes_another_users_private_version() {
        let (admin, alice, bob) = ((1, "admin", true), (2, "alice", false), (3, "bob", false));
        // Newest version first, as the store lists them.
        let catalog =
            || vec![row(30, bob, 4, "project", &["p-vision"]), row(20, alice, 3, "user", &["p-vision"]), row(10, admin, 1, "public", &[])];
        let id = |lookup, owner: Option<&str>| pick(catalog(), lookup, owner, "tiny", None).map(|r| r.id).map_err(|e| e.to_string());
        let root = actor(1, "admin", true, &[]);
        let alice_actor = actor(2, "alice", false, &["p-vision"]);
        let carol = actor(4, "carol", false, &["p-vision"]);
        let dave = actor(5, "dave", false, &["p-other"]);
        assert_eq!(id(Lookup::System, None), Ok(10));
        assert_eq!(id(Lookup::Caller(&root), None), Ok(10));
        assert_eq!(id(Lookup::Caller(&alice_actor), None), Ok(20));
        assert_eq!(id(Lookup::Caller(&carol), None), Ok(10), "public before project-shared");
        assert_eq!(id(Lookup::Caller(&dave), None), Ok(10));
        assert_eq!(id(Lookup::Caller(&root), Some("alice")), Ok(20), "an admin may name it");
        assert!(id(Lookup::System, Some("alice")).is_err(), "the system never takes a user's");
        assert!(id(Lookup::Caller(&dave), Some("bob")).is_err());
        assert_eq!(id(Lookup::Caller(&carol), Some("bob")), Ok(30));
        // A second admin publishing the name: no silent pick.
        let mut two = catalog();
        two.push(row(40, (6, "root2", true), 1, "public", &[]));
        let err = pick(two, Lookup::System, None, "tiny", None).map(|r| r.id).unwrap_err().to_string();
        assert!(err.contains("several owners (admin, root2)"), "{err}");
        // A demoted owner's public environment is not the system's.
        let demoted = vec![row(50, (7, "ex", false), 9, "public", &[]), row(10, admin, 1, "public", &[])];
        assert_eq!(pick(demoted, Lookup::System, None, "tiny", None).map(|r| r.id).ok(), Some(10));
    }

    #[test]
    fn reset_default_environment_is_pinned() {
        use crate::config::{EnvironmentPin, ResetConfig};
        let pin = |s: &str| ResetConfig { default_environment: Some(s.into()), ..ResetConfig::default() }.default_environment_pin();
        assert_eq!(pin("id:12"), Ok(Some(EnvironmentPin::Id(12))));
        assert_eq!(pin("debian12-min"), Ok(Some(EnvironmentPin::Name { owner: None, name: "debian12-min".into() })));
        assert_eq!(pin("admin/tiny"), Ok(Some(EnvironmentPin::Name { owner: Some("admin".into()), name: "tiny".into() })));
        for bad in ["id:x", "id:0", "", "Tiny", "a/b/c", "a b"] {
            assert!(pin(bad).is_err_and(|e| e.starts_with("reset.default_environment:")), "{bad}");
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
