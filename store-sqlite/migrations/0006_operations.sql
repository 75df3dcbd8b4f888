-- Deployments and node operations (SPEC §5, §6): what the operations
-- engine carries out, phase by phase, so that a restarted controller
-- resumes every deploy and reset where it stood.

-- A request to deploy an environment on a lease's nodes.
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY,
    lease_id INTEGER NOT NULL REFERENCES leases (id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    environment_version INTEGER NOT NULL,
    -- JSON: the resolved environment (descriptor and image URL) and the
    -- SSH keys to install.
    spec TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX deployments_lease ON deployments (lease_id);

-- One node's deploy or reset. Times in milliseconds (phase timings are
-- shown to people and benchmarked).
CREATE TABLE node_operations (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('deploy', 'reset')),
    deployment_id INTEGER REFERENCES deployments (id) ON DELETE CASCADE,
    -- The lease the node was busy for when the operation began.
    lease_id INTEGER,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'cancelled')),
    phase TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    phase_started_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    -- JSON: what the current phase waits on (power requests, agent
    -- generation, agent command), so a restart picks it up.
    data TEXT NOT NULL DEFAULT '{}',
    -- JSON: [[phase, started_ms], ...]
    history TEXT NOT NULL DEFAULT '[]',
    -- Why it failed, or what the last check found.
    message TEXT,
    -- Reset outcome: clean | mismatch | bmc | error.
    outcome TEXT,
    controller_ms INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    finished_ms INTEGER,
    -- Bumped by every write: the compare-and-swap token of the engine.
    version INTEGER NOT NULL DEFAULT 0
);
-- At most one running operation per node: enforced by the database.
CREATE UNIQUE INDEX node_operations_one_running ON node_operations (node_id) WHERE state = 'running';
CREATE INDEX node_operations_node ON node_operations (node_id, kind, id);
CREATE INDEX node_operations_deployment ON node_operations (deployment_id);

-- The SSH host key the controller saw on a node's deployed system.
ALTER TABLE nodes ADD COLUMN ssh_host_key TEXT;

-- Set when a node is handed to a lease, cleared by a clean reset: a node
-- that left a lease another way (its BMC failed, a check failed) is reset
-- before it is available again, so no tenant's disk reaches the next one.
ALTER TABLE nodes ADD COLUMN needs_reset INTEGER NOT NULL DEFAULT 0;
