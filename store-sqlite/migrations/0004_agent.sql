-- The agent protocol: sessions, reported inventories, commands.

-- Bumped at every agent registration of the node; uploads carry the
-- generation of their session and older ones are refused.
ALTER TABLE nodes ADD COLUMN agent_generation INTEGER NOT NULL DEFAULT 0;

-- Agent sessions (one per registration; only the SHA-256 is stored).
CREATE TABLE agent_sessions (
    token_sha256 TEXT PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX agent_sessions_node ON agent_sessions (node_id);

-- The latest inventory each node's agent reported (JSON, schema_version'd).
CREATE TABLE node_inventories (
    node_id INTEGER PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    reported_at INTEGER NOT NULL,
    report TEXT NOT NULL
);

-- Commands for a node's agent, carried out in id order.
CREATE TABLE agent_commands (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    -- The action as JSON (ferrum_api::agent::AgentAction).
    action TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'done', 'failed')),
    -- The agent generation it was sent to.
    generation INTEGER,
    done_bytes INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER,
    error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX agent_commands_node ON agent_commands (node_id, state, id);
