-- A multi-group lease's groups (OAR's `{A}/nodes=2+{B}/nodes=1`): a JSON
-- array of {"count": N, "filter": TEXT|null, "nodes": [node id, ...]} in
-- the order they were asked; NULL for a lease of one group.
ALTER TABLE leases ADD COLUMN groups TEXT;
