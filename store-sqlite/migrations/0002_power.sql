-- Power: what the BMC last said, and the queue of requested operations.

ALTER TABLE nodes ADD COLUMN power_state TEXT CHECK (power_state IN ('on', 'off'));
ALTER TABLE nodes ADD COLUMN power_observed_at INTEGER;
-- Where the reading came from: 'sync' (the periodic sweep) or 'request'.
ALTER TABLE nodes ADD COLUMN power_source TEXT;

-- Requested power and boot operations. The power loop carries them out one
-- at a time per BMC; a restarted controller finds the queued ones here.
CREATE TABLE power_requests (
    id INTEGER PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id),
    -- on | off | soft-off | cycle | status | boot-pxe | boot-disk
    operation TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    finished_at INTEGER,
    -- The named error of a failed request (never a secret).
    error TEXT
);
CREATE INDEX power_requests_state ON power_requests (state, id);
CREATE INDEX power_requests_node ON power_requests (node_id, id);
