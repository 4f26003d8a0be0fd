"""Many workers on one store (issue 24): which worker took each call, contacts leased to a dialer, the
workers' heartbeats (shared capacity, the console's worker list), the recordings index and the call
center's tickets.

Revision ID: 0002_cluster
Revises: 0001_baseline
"""

from alembic import op

from voiceagent.migrations.ddl import run

revision = "0002_cluster"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

CLUSTER = """
ALTER TABLE calls ADD COLUMN worker TEXT;
ALTER TABLE call_history ADD COLUMN worker TEXT;
ALTER TABLE campaign_attempts ADD COLUMN worker TEXT;
-- a contact being dialled belongs to one dialer until its lease runs out (a dialer that dies mid-call
-- leaves it to be taken again, never lost, never called by two at once)
ALTER TABLE campaign_contacts ADD COLUMN leased_by TEXT;
ALTER TABLE campaign_contacts ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS campaign_contacts_lease ON campaign_contacts(campaign, lease_until);
CREATE TABLE IF NOT EXISTS workers (
    name TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL,           -- heartbeat: a worker not seen for a few beats is gone
    http_url TEXT NOT NULL DEFAULT '',
    sip TEXT NOT NULL DEFAULT '',
    calls INTEGER NOT NULL DEFAULT 0,
    max_calls INTEGER NOT NULL DEFAULT 0,
    campaign_calls INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS recordings (
    call_id TEXT PRIMARY KEY,
    worker TEXT,
    path TEXT NOT NULL,              -- on the worker's disk, or the shared volume every worker mounts
    format TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    duration_s REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_created ON recordings(created_at);
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    order_id TEXT,
    customer_id TEXT,
    reason TEXT,
    detail TEXT,
    status TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL,
    call_id TEXT,
    worker TEXT
);
CREATE INDEX IF NOT EXISTS tickets_order ON tickets(order_id, kind, status)
"""


def upgrade() -> None:
    run(CLUSTER)


def downgrade() -> None:
    for table in ("tickets", "recordings", "workers"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP INDEX IF EXISTS campaign_contacts_lease")
    for table, column in (("calls", "worker"), ("call_history", "worker"), ("campaign_attempts", "worker"),
                          ("campaign_contacts", "leased_by"), ("campaign_contacts", "lease_until")):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
