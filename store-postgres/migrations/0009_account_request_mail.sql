-- Paperless account requests (issue 19): what the requester is (student,
-- academic, start-up, company), and the proof they read the mailbox they
-- gave: a one-time link's token (its SHA-256) until they follow it.
ALTER TABLE account_requests ADD COLUMN status TEXT;
ALTER TABLE account_requests ADD COLUMN email_token_sha256 TEXT;
ALTER TABLE account_requests ADD COLUMN email_verified_at BIGINT;
CREATE UNIQUE INDEX account_requests_email_token ON account_requests (email_token_sha256);
