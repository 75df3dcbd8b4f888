-- Token lifecycle and disabled users (issue 17).
-- Tokens get a name, an optional expiry and a read-only flag (a read-only
-- token may only read: GET). Revocation already had its column.
ALTER TABLE api_tokens ADD COLUMN name TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE api_tokens ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0 CHECK (read_only IN (0, 1));
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- An admin disables a user (with a reason); their tokens stop working.
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
ALTER TABLE users ADD COLUMN disabled_reason TEXT;

-- User names are unique regardless of case (`ALICE` beside `alice` would
-- read as one person); names keep the case they were created with. A
-- database holding two such users already fails here, naming this index:
-- rename one of them first.
CREATE UNIQUE INDEX users_name_folded ON users (lower(name));

-- Account requests: the public endpoint stores every well-formed request,
-- whether its login is taken or asked for already (its answer must not
-- tell); the admin sees the clash and approval refuses it.
DROP INDEX account_requests_pending_name;
CREATE INDEX account_requests_name_folded ON account_requests (lower(name));
