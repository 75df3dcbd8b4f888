-- Secrets at rest (issue 17): BMC credentials (nodes.bmc_url) are sealed
-- with a key kept outside the database; the database records the key's
-- fingerprint (`sha256:<hex>`), set by the first ferrumd that opens it with
-- a key. A ferrumd holding another key refuses to start. Plaintext values
-- left by an older ferrumd are sealed at start (`db::seal_plaintext`).
ALTER TABLE meta ADD COLUMN key_fingerprint TEXT;
