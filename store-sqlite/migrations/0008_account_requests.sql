-- Account requests (issue 8): students and start-ups ask for an account
-- without a token; an admin approves (which creates the user, and the
-- project if it is new) or rejects with a reason.
CREATE TABLE account_requests (
    id INTEGER PRIMARY KEY,
    -- The login asked for.
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    -- An existing project to join, or a new one to create.
    project TEXT NOT NULL,
    -- The class asked for a new project.
    project_class TEXT,
    motivation TEXT NOT NULL,
    -- Where it came from (for abuse reports); never shown to users.
    source TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    reason TEXT,
    decided_by TEXT,
    decided_at INTEGER,
    user_id INTEGER REFERENCES users (id),
    created_at INTEGER NOT NULL
);
-- One pending request per login.
CREATE UNIQUE INDEX account_requests_pending_name ON account_requests (name) WHERE state = 'pending';
CREATE INDEX account_requests_state ON account_requests (state, id);

-- A project's manager may add and remove its members.
ALTER TABLE projects ADD COLUMN manager_id INTEGER REFERENCES users (id);
