-- ferrum's initial schema (SQLite). Times are whole seconds since the Unix
-- epoch (UTC). JSON documents are stored as TEXT.

CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- Bumped by every change to lease_nodes; controllers compare it with the
    -- generation of their in-memory calendar to know when to reload it.
    calendar_generation INTEGER NOT NULL,
    -- Bumped by every change to nodes, for the in-memory node index.
    nodes_generation INTEGER NOT NULL
);
INSERT INTO meta (id, calendar_generation, nodes_generation) VALUES (1, 0, 0);

CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    class TEXT,
    quota_node_hours INTEGER,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    email TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE project_members (
    project_id INTEGER NOT NULL REFERENCES projects (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (project_id, user_id)
);

-- Only the SHA-256 of a token is kept.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE nodes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    site TEXT NOT NULL,
    cluster TEXT NOT NULL,
    ip TEXT,
    -- Secret: holds the BMC password. Never selected for API views.
    bmc_url TEXT,
    state TEXT NOT NULL,
    policy TEXT NOT NULL CHECK (policy IN ('in_service', 'maintenance', 'retired')),
    -- The lease the node's busy state (reserved, deploying, deployed)
    -- belongs to; NULL when idle. Lets the clock loop reset a node between
    -- two back-to-back leases.
    lease_id INTEGER REFERENCES leases (id),
    -- Effective flattened properties (JSON object): reference + admin overrides.
    properties TEXT NOT NULL,
    -- Properties set by admins (JSON object); they win over the reference.
    admin_properties TEXT NOT NULL DEFAULT '{}',
    -- The Grid'5000-style reference description, whole (JSON), and its hash.
    reference TEXT,
    reference_sha256 TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE node_macs (
    mac TEXT PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    position INTEGER NOT NULL
);
CREATE INDEX node_macs_node ON node_macs (node_id);

-- Every change of a node's shown state, with who and why.
CREATE TABLE node_events (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id),
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX node_events_node ON node_events (node_id, id);

CREATE TABLE leases (
    id INTEGER PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES users (id),
    project_id INTEGER REFERENCES projects (id),
    lease_type TEXT NOT NULL CHECK (lease_type IN ('default', 'deploy', 'besteffort')),
    state TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    exotic INTEGER NOT NULL,
    filter TEXT,
    deploy TEXT,
    reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK (start < "end")
);
CREATE INDEX leases_state_start ON leases (state, start);
CREATE INDEX leases_owner ON leases (owner_id);

-- The calendar: which node a lease holds over which interval. A row exists
-- while the lease holds (or held) the node; a lease ended early has its
-- rows cut at the time it ended, a cancelled lease has none.
CREATE TABLE lease_nodes (
    lease_id INTEGER NOT NULL REFERENCES leases (id),
    node_id INTEGER NOT NULL REFERENCES nodes (id),
    position INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    PRIMARY KEY (lease_id, node_id),
    CHECK (start < "end")
);
CREATE INDEX lease_nodes_node_end ON lease_nodes (node_id, "end");
CREATE INDEX lease_nodes_end ON lease_nodes ("end");

-- No double booking, enforced by the database itself: no two rows of one
-- node may overlap. Writers run in BEGIN IMMEDIATE transactions, so the
-- check and the write cannot interleave with another writer's.
CREATE TRIGGER lease_nodes_no_overlap_insert
BEFORE INSERT ON lease_nodes
WHEN EXISTS (
    SELECT 1 FROM lease_nodes
    WHERE node_id = NEW.node_id AND "end" > NEW.start AND start < NEW."end"
)
BEGIN
    SELECT RAISE(ABORT, 'ferrum: double booking');
END;

CREATE TRIGGER lease_nodes_no_overlap_update
BEFORE UPDATE OF node_id, start, "end" ON lease_nodes
WHEN EXISTS (
    SELECT 1 FROM lease_nodes
    WHERE node_id = NEW.node_id AND "end" > NEW.start AND start < NEW."end"
      AND NOT (lease_id = OLD.lease_id AND node_id = OLD.node_id)
)
BEGIN
    SELECT RAISE(ABORT, 'ferrum: double booking');
END;

CREATE TRIGGER lease_nodes_generation_insert AFTER INSERT ON lease_nodes
BEGIN
    UPDATE meta SET calendar_generation = calendar_generation + 1 WHERE id = 1;
END;
CREATE TRIGGER lease_nodes_generation_update AFTER UPDATE ON lease_nodes
BEGIN
    UPDATE meta SET calendar_generation = calendar_generation + 1 WHERE id = 1;
END;
CREATE TRIGGER lease_nodes_generation_delete AFTER DELETE ON lease_nodes
BEGIN
    UPDATE meta SET calendar_generation = calendar_generation + 1 WHERE id = 1;
END;

CREATE TRIGGER nodes_generation_insert AFTER INSERT ON nodes
BEGIN
    UPDATE meta SET nodes_generation = nodes_generation + 1 WHERE id = 1;
END;
-- Only what placement reads moves the generation: names, properties,
-- policy, and health (in or out of suspect/dead). A node going from
-- available to reserved and back does not.
CREATE TRIGGER nodes_generation_update AFTER UPDATE OF name, properties, policy ON nodes
BEGIN
    UPDATE meta SET nodes_generation = nodes_generation + 1 WHERE id = 1;
END;
CREATE TRIGGER nodes_generation_health AFTER UPDATE OF state ON nodes
WHEN (OLD.state IN ('suspect', 'dead')) != (NEW.state IN ('suspect', 'dead'))
BEGIN
    UPDATE meta SET nodes_generation = nodes_generation + 1 WHERE id = 1;
END;
