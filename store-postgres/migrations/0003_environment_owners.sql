-- Environments are namespaced by owner (issue 17, finding 1): a name and
-- version are unique per owner, not across the catalog, so no user can
-- take (or learn of) a name another owner uses.
ALTER TABLE environments DROP CONSTRAINT environments_name_version_key;
ALTER TABLE environments ADD CONSTRAINT environments_owner_name_version_key UNIQUE (owner_id, name, version);
CREATE INDEX environments_name ON environments (name, version);

-- What a deployment used exactly: the catalog entry, its owner and the
-- image's sha256; `error` says why a lease's deployment could not start
-- (then it has no node operation).
ALTER TABLE deployments ADD COLUMN environment_id BIGINT;
ALTER TABLE deployments ADD COLUMN environment_owner TEXT;
ALTER TABLE deployments ADD COLUMN image_sha256 TEXT;
ALTER TABLE deployments ADD COLUMN error TEXT;
-- Older deployments: their spec holds the resolved environment.
UPDATE deployments SET
    environment_owner = spec::jsonb -> 'environment' ->> 'owner',
    image_sha256 = spec::jsonb -> 'environment' ->> 'sha256';
UPDATE deployments d SET environment_id = e.id
    FROM environments e JOIN users u ON u.id = e.owner_id
    WHERE u.name = d.environment_owner AND e.name = d.environment AND e.version = d.environment_version;
