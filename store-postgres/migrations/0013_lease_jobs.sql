-- What the Grid'5000 API (`/stable`) keeps of a job beyond its lease: the
-- site it was submitted to, its OAR types exactly as given (a JSON array of
-- strings: EnOSlib compares them on reload), its queue, its command (stored
-- and echoed, never run) and its `properties`. One row per lease created
-- through `/stable`; leases created otherwise have none.
CREATE TABLE lease_jobs (
    lease_id BIGINT PRIMARY KEY REFERENCES leases (id) ON DELETE CASCADE,
    site TEXT NOT NULL,
    types TEXT NOT NULL,
    queue TEXT NOT NULL,
    command TEXT,
    properties TEXT
);
