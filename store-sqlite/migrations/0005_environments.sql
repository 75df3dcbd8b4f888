-- The environment catalog (SPEC §5): one row per name and version.
CREATE TABLE environments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    -- The descriptor as JSON (ferrum_api::environment::EnvironmentDescriptor).
    descriptor TEXT NOT NULL,
    visibility TEXT NOT NULL CHECK (visibility IN ('public', 'project', 'user')),
    owner_id INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    UNIQUE (name, version)
);
