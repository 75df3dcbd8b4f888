-- The web portal (issue 19): passwords, one-time activation links, browser
-- sessions, users' SSH keys. Link and session tokens are stored as their
-- SHA-256 only, like API tokens.

-- argon2id, PHC string; NULL until the user sets a password through an
-- activation link (API tokens work without one).
ALTER TABLE users ADD COLUMN password_hash TEXT;

CREATE TABLE activation_links (
    id INTEGER PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    -- Set when the link is spent (a password set), or when a newer link
    -- for the same user replaces it.
    used_at INTEGER
);
CREATE INDEX activation_links_user ON activation_links (user_id);

CREATE TABLE web_sessions (
    id INTEGER PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users (id),
    -- The anti-forgery token every form of the session carries.
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE ssh_keys (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    name TEXT,
    public_key TEXT NOT NULL,
    -- SHA256:..., as ssh-keygen -l prints it.
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, fingerprint)
);
