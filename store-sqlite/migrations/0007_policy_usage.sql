-- Policy, accounting and audit (issue 8).

-- When a lease actually started (took its nodes) and stopped holding them
-- for its user; the usage records are cut from these.
ALTER TABLE leases ADD COLUMN started_at INTEGER;
ALTER TABLE leases ADD COLUMN ended_at INTEGER;

-- Usage accounting: one row per lease and node, written when the lease
-- stops holding the node for its user (end, early release, pre-emption,
-- failure). Names are copied so that a record stays true for years, whatever
-- happens to the inventory. Append-only: the triggers below refuse any
-- change or deletion.
CREATE TABLE usage_records (
    id INTEGER PRIMARY KEY,
    lease_id INTEGER NOT NULL REFERENCES leases (id),
    node_id INTEGER NOT NULL REFERENCES nodes (id),
    user_name TEXT NOT NULL,
    -- NULL for an operator lease (an admin's lease without a project).
    project_name TEXT,
    node_name TEXT NOT NULL,
    site TEXT NOT NULL,
    cluster TEXT NOT NULL,
    gpu_model TEXT,
    gpu_count INTEGER NOT NULL,
    lease_type TEXT NOT NULL,
    -- What the calendar held for the lease on this node.
    reserved_start INTEGER NOT NULL,
    reserved_end INTEGER NOT NULL,
    -- What the user had: from the lease's start to its end or release.
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    CHECK (start <= "end")
);
-- Covers the usage query's read of partial months (start range, clipped
-- by end, grouped by any dimension) without touching the table.
CREATE INDEX usage_records_start ON usage_records (start, "end", gpu_count, project_name, user_name, cluster, gpu_model);
CREATE INDEX usage_records_lease ON usage_records (lease_id);

CREATE TRIGGER usage_records_no_update BEFORE UPDATE ON usage_records
BEGIN
    SELECT RAISE(ABORT, 'ferrum: usage records are append-only');
END;
CREATE TRIGGER usage_records_no_delete BEFORE DELETE ON usage_records
BEGIN
    SELECT RAISE(ABORT, 'ferrum: usage records are append-only');
END;

-- Monthly sums of usage_records (UTC calendar months), one row per
-- dimension, key and project, maintained in the transaction that writes the
-- records. A usage query over years reads these for its whole months and
-- the raw records only for its partial months at both ends.
CREATE TABLE usage_rollups (
    dimension TEXT NOT NULL CHECK (dimension IN ('user', 'project', 'cluster', 'gpu_model')),
    -- The month's first second (UTC).
    period INTEGER NOT NULL,
    -- The user, project, cluster or GPU model; '' when there is none.
    key TEXT NOT NULL,
    -- The record's project; '' for operator leases.
    project TEXT NOT NULL,
    node_seconds INTEGER NOT NULL,
    gpu_seconds INTEGER NOT NULL,
    PRIMARY KEY (dimension, period, project, key)
) WITHOUT ROWID;

-- The longest usage record, which bounds how far before a window a record
-- overlapping it can start.
ALTER TABLE meta ADD COLUMN usage_max_seconds INTEGER NOT NULL DEFAULT 0;

-- Every admin action (approvals, quota changes, maintenance, power, ...),
-- with who and when. Append-only.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    -- JSON object; never holds a secret.
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'ferrum: the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'ferrum: the audit log is append-only');
END;
