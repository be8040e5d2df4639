-- Tenants: a rule belongs to the tenant of the API key that created it, and
-- each firing to its rule's tenant. NULL: a rule of a pipeline file (shared).
ALTER TABLE fx_alert_rules ADD COLUMN tenant TEXT;
-- Rules created before tenants belong to the tenant of bare keys. Their JSON
-- is left as it was, so the Alert stage sees the same definition (its saved
-- state and retirements still apply); the column is what the API reads.
UPDATE fx_alert_rules SET tenant = 'default' WHERE tenant IS NULL;
-- A tenant's rules by id: the API's listing and the per-tenant limits.
CREATE INDEX IF NOT EXISTS fx_alert_rules_tenant ON fx_alert_rules (tenant, id);

ALTER TABLE fx_alert_history ADD COLUMN tenant TEXT;
UPDATE fx_alert_history SET tenant = (SELECT r.tenant FROM fx_alert_rules r WHERE r.id = fx_alert_history.rule_id)
    WHERE tenant IS NULL;
