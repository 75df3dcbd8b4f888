-- Erasure of a user's personal data on request (GDPR art. 17; issue 19).
-- The erasure rewrites the user's login to a pseudonym everywhere it is
-- stored as text, usage records and the audit log included, in one
-- transaction. Those two tables stay append-only for everything else:
-- the only update they take is that rewrite, and only while an erasure's
-- row is open (`open = 1`), which it is inside its own transaction only
-- (the store sets it back to 0 before committing). The old login is kept
-- nowhere.
CREATE TABLE erasures (
    id INTEGER PRIMARY KEY,
    pseudonym TEXT NOT NULL UNIQUE,
    erased_at INTEGER NOT NULL,
    -- The admin who erased.
    erased_by TEXT NOT NULL,
    open INTEGER NOT NULL DEFAULT 0
);

-- Usage records: every column but `user_name` stays as written; the
-- user's name may become the open erasure's pseudonym, nothing else.
DROP TRIGGER usage_records_no_update;
CREATE TRIGGER usage_records_no_update
BEFORE UPDATE OF id, lease_id, node_id, project_name, node_name, site, cluster, gpu_model, gpu_count, lease_type,
                 reserved_start, reserved_end, start, "end", recorded_at ON usage_records
BEGIN
    SELECT RAISE(ABORT, 'ferrum: usage records are append-only');
END;
CREATE TRIGGER usage_records_pseudonym BEFORE UPDATE OF user_name ON usage_records
WHEN NOT EXISTS (SELECT 1 FROM erasures WHERE open = 1 AND pseudonym = NEW.user_name)
BEGIN
    SELECT RAISE(ABORT, 'ferrum: usage records are append-only');
END;

-- The audit log: who, on what and the detail may be rewritten by an open
-- erasure only; when and which action never.
DROP TRIGGER audit_log_no_update;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OF id, at, action ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'ferrum: the audit log is append-only');
END;
CREATE TRIGGER audit_log_pseudonym BEFORE UPDATE OF actor, target, detail ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM erasures WHERE open = 1)
BEGIN
    SELECT RAISE(ABORT, 'ferrum: the audit log is append-only');
END;
