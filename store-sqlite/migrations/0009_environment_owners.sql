-- Environments are namespaced by owner (issue 17, finding 1): a name and
-- version are unique per owner, not across the catalog, so no user can
-- take (or learn of) a name another owner uses. SQLite cannot drop the
-- old UNIQUE (name, version): the table is rebuilt, ids kept.
CREATE TABLE environments_owned (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- The descriptor as JSON (ferrum_api::environment::EnvironmentDescriptor).
    descriptor TEXT NOT NULL,
    visibility TEXT NOT NULL CHECK (visibility IN ('public', 'project', 'user')),
    owner_id INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    UNIQUE (owner_id, name, version)
);
INSERT INTO environments_owned (id, name, version, descriptor, visibility, owner_id, created_at)
    SELECT id, name, version, descriptor, visibility, owner_id, created_at FROM environments;
DROP TABLE environments;
ALTER TABLE environments_owned RENAME TO environments;
CREATE INDEX environments_name ON environments (name, version);

-- What a deployment used exactly: the catalog entry, its owner and the
-- image's sha256; `error` says why a lease's deployment could not start
-- (then it has no node operation).
ALTER TABLE deployments ADD COLUMN environment_id INTEGER;
ALTER TABLE deployments ADD COLUMN environment_owner TEXT;
ALTER TABLE deployments ADD COLUMN image_sha256 TEXT;
ALTER TABLE deployments ADD COLUMN error TEXT;
-- Older deployments: their spec holds the resolved environment.
UPDATE deployments SET
    environment_owner = json_extract(spec, '$.environment.owner'),
    image_sha256 = json_extract(spec, '$.environment.sha256');
UPDATE deployments SET environment_id = (
    SELECT e.id FROM environments e JOIN users u ON u.id = e.owner_id
    WHERE u.name = deployments.environment_owner AND e.name = deployments.environment AND e.version = deployments.environment_version);
