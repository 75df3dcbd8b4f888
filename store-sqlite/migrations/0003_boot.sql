-- Network boot: what each node boots next, and the one-time tokens that
-- the deploy ramdisk's agent presents to the controller.

-- 'local' (boot from the local disk) or 'ramdisk' (boot ferrum's deploy
-- ramdisk). The iPXE script served at /boot/ipxe?mac= follows it.
ALTER TABLE nodes ADD COLUMN boot_target TEXT NOT NULL DEFAULT 'local' CHECK (boot_target IN ('local', 'ramdisk'));

-- One-time agent tokens. Only the SHA-256 is stored; the token itself
-- travels once, on the kernel command line of the script that carries it.
-- Minting a new one for a node removes that node's unused ones.
CREATE TABLE agent_tokens (
    token_sha256 TEXT PRIMARY KEY,
    node_id INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER
);
CREATE INDEX agent_tokens_node ON agent_tokens (node_id);
