-- A lease's name, given by its owner (Grid'5000's job name, OAR's `-n`);
-- NULL when none was given.
ALTER TABLE leases ADD COLUMN name TEXT;
