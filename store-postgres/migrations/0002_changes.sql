-- Replicas wake each other: every committed change to a table that one of
-- the background loops or an agent's long poll waits on notifies the
-- channel `ferrum_changes` with the table's name (one notification per
-- table and transaction: PostgreSQL folds identical ones).

CREATE FUNCTION ferrum_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ferrum_changes', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER leases_changes AFTER INSERT OR UPDATE ON leases
    FOR EACH STATEMENT EXECUTE FUNCTION ferrum_notify_change();
CREATE TRIGGER nodes_changes AFTER INSERT OR UPDATE ON nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ferrum_notify_change();
CREATE TRIGGER node_macs_changes AFTER INSERT OR UPDATE OR DELETE ON node_macs
    FOR EACH STATEMENT EXECUTE FUNCTION ferrum_notify_change();
CREATE TRIGGER power_requests_changes AFTER INSERT OR UPDATE ON power_requests
    FOR EACH STATEMENT EXECUTE FUNCTION ferrum_notify_change();
CREATE TRIGGER agent_commands_changes AFTER INSERT OR UPDATE ON agent_commands
    FOR EACH STATEMENT EXECUTE FUNCTION ferrum_notify_change();
CREATE TRIGGER node_inventories_changes AFTER INSERT OR UPDATE ON node_inventories
    FOR EACH STATEMENT EXECUTE FUNCTION ferrum_notify_change();
CREATE TRIGGER node_operations_changes AFTER INSERT OR UPDATE ON node_operations
    FOR EACH STATEMENT EXECUTE FUNCTION ferrum_notify_change();
CREATE TRIGGER deployments_changes AFTER INSERT ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION ferrum_notify_change();
