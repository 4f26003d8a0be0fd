"""The schema as it stood before migrations (issue 24): every table the stores created for themselves.
CREATE ... IF NOT EXISTS, so that a SQLite file made by an older version is taken over as it is.

Revision ID: 0001_baseline
Revises:
"""

from voiceagent.migrations.ddl import run

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

# calls and handoffs (voiceagent/store.py)
CALLS = """
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    language TEXT,
    customer_id TEXT,
    duration_s REAL,
    handoff INTEGER NOT NULL,
    handoff_reason TEXT,
    resolved INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
CREATE TABLE IF NOT EXISTS handoffs (
    call_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    reason TEXT,
    target TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS handoffs_created ON handoffs(created_at);
"""

# call history, its text and ratings (voiceagent/ops/history.py)
HISTORY = """
CREATE TABLE IF NOT EXISTS call_history (
    call_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    started_ts REAL NOT NULL,        -- seconds since the epoch: buckets and windows whatever the offset written
    channel TEXT,                    -- sip, audiosocket, webrtc, campaign (outbound), chat, file
    language TEXT,
    customer_id TEXT,
    duration_s REAL NOT NULL DEFAULT 0,
    intent TEXT,                     -- the caller's main intent: the first beyond greetings and small talk
    outcome TEXT NOT NULL,           -- resolved, handoff, unresolved, error, machine
    emotion TEXT,                    -- the caller's worst: angry > anxious > hesitant > neutral > satisfied
    peak_anger REAL NOT NULL DEFAULT 0,
    handoff INTEGER NOT NULL DEFAULT 0,
    handoff_reason TEXT,
    resolved INTEGER NOT NULL DEFAULT 0
);
-- apart, so that the figures' scans read short rows
CREATE TABLE IF NOT EXISTS call_history_text (
    call_id TEXT PRIMARY KEY,
    transcript TEXT NOT NULL         -- both sides' words, masked and lower-cased: the text search
);
CREATE INDEX IF NOT EXISTS call_history_started ON call_history(started_ts);
CREATE INDEX IF NOT EXISTS call_history_customer ON call_history(customer_id, started_ts);
CREATE INDEX IF NOT EXISTS call_history_intent ON call_history(intent, started_ts);
CREATE INDEX IF NOT EXISTS call_history_outcome ON call_history(outcome, started_ts);
CREATE INDEX IF NOT EXISTS call_history_emotion ON call_history(emotion, started_ts);
CREATE TABLE IF NOT EXISTS ratings (
    call_id TEXT PRIMARY KEY,        -- a call id, or a chat session's key
    stars INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
    channel TEXT,
    at TEXT NOT NULL,
    at_ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ratings_at ON ratings(at_ts);
"""

# campaigns, contacts, attempts, do-not-call, outbox (voiceagent/campaigns/store.py)
CAMPAIGNS = """
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,            -- running, paused, stopped, waiting, done
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner TEXT,                     -- the dialer running it (host:pid:random), while its lease lasts
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS campaign_contacts (
    campaign TEXT NOT NULL,
    idx INTEGER NOT NULL,
    ref TEXT NOT NULL,
    phone TEXT NOT NULL,            -- as the campaign dials it
    phone_key TEXT NOT NULL,        -- the number in E.164 (+8613800000001): what the rules compare
    customer_id TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    language TEXT NOT NULL DEFAULT '',
    timezone TEXT NOT NULL DEFAULT '',
    consent TEXT NOT NULL DEFAULT '',
    segment TEXT,
    script TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT 'pending',
    next_at REAL NOT NULL DEFAULT 0,
    last_rule TEXT NOT NULL DEFAULT '',
    answered INTEGER NOT NULL DEFAULT 0,    -- a person was talked to
    callback_at TEXT,
    call_ids TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (campaign, idx)
);
CREATE INDEX IF NOT EXISTS campaign_contacts_due ON campaign_contacts(campaign, outcome, next_at);
CREATE UNIQUE INDEX IF NOT EXISTS campaign_contacts_key ON campaign_contacts(campaign, phone_key);
CREATE TABLE IF NOT EXISTS campaign_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign TEXT NOT NULL,
    contact_idx INTEGER NOT NULL,
    phone TEXT NOT NULL,             -- E.164, as phone_key
    script TEXT,
    rule TEXT NOT NULL,              -- why this dial was allowed (window, consent, dnc, cap checked)
    started_at REAL NOT NULL,
    answered_at REAL,
    person INTEGER NOT NULL DEFAULT 0,
    ended_at REAL,
    outcome TEXT,                    -- busy, no_answer, rejected, failed, machine, converted, ... interrupted
    sip_status INTEGER,
    call_id TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS campaign_attempts_phone ON campaign_attempts(phone, answered_at);
CREATE INDEX IF NOT EXISTS campaign_attempts_campaign ON campaign_attempts(campaign);
CREATE TABLE IF NOT EXISTS dnc (
    phone TEXT PRIMARY KEY,          -- E.164
    added_at REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign TEXT,
    customer_id TEXT,
    phone TEXT NOT NULL,
    channel TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
);
"""

# operators, API tokens, console sessions (voiceagent/ops/auth.py)
OPERATORS = """
CREATE TABLE IF NOT EXISTS operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL
);
CREATE TABLE IF NOT EXISTS operator_sessions (
    session_sha256 TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS operator_sessions_operator ON operator_sessions(operator);
"""

# alerts (voiceagent/ops/alerts.py)
ALERTS = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    at REAL NOT NULL,
    level INTEGER NOT NULL,
    kind TEXT NOT NULL,
    call_id TEXT,
    channel TEXT,
    message TEXT NOT NULL,
    message_zh TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    acked_by TEXT,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts(acked_at, at);
"""


def upgrade() -> None:
    for script in (CALLS, HISTORY, CAMPAIGNS, OPERATORS, ALERTS):
        run(script)


def downgrade() -> None:
    raise NotImplementedError("the baseline is not undone: drop the database instead")
