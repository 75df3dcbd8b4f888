-- Issue 17, finding 2: the provisioning network's trust.
-- A one-time agent token is bound to the address that fetched the script
-- carrying it (the node's inventory address when it has one); registration
-- must come from that address. Unused tokens minted before this column
-- existed could never be bound: they go.
ALTER TABLE agent_tokens ADD COLUMN bound_ip TEXT;
DELETE FROM agent_tokens WHERE used_at IS NULL;

-- Boot-service tokens (`ferrum admin boot-token`): they read the MAC → node
-- table (`GET /api/v1/boot/hosts`) and nothing else. Stored hashed.
CREATE TABLE boot_tokens (
    token_sha256 TEXT PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
