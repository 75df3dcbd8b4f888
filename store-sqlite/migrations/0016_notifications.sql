-- Notifications (issue 19, item 7): what happened to a user's lease and
-- its deployments, kept for the portal and mailed once. The UNIQUE key
-- names the event, so each is recorded once whichever replica or restarted
-- controller sees it again: a writer mails only when its insert made the
-- row.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    lease_id INTEGER NOT NULL REFERENCES leases (id),
    -- ferrum_model::NotificationKind's names.
    kind TEXT NOT NULL,
    -- Which event of the kind: the deployment's id, or the lease end a
    -- reminder is for (an extended lease is reminded again); 0 for events
    -- a lease has once.
    about INTEGER NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    read_at INTEGER,
    UNIQUE (user_id, lease_id, kind, about)
);
CREATE INDEX notifications_user ON notifications (user_id, read_at);
