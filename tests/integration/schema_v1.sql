-- Version 1 of lib/schema.sql, as shipped before schema version 2: the migration test starts from it.
-- schema.sql — the database otp-fcgi and otp-deleter share (PRAGMA user_version = 1).
-- Compiled into store.c; README.md documents it for people who inspect it with sqlite3.
-- Times are milliseconds since the Unix epoch (UTC); the *_readable view shows them as text.

-- One row per sent message still to be deleted. Never the OTP, never the message text.
CREATE TABLE IF NOT EXISTS pending_deletions (
    id            INTEGER PRIMARY KEY,
    chat_id       TEXT    NOT NULL,          -- as the client named it: 123, -100123, @channel
    message_id    INTEGER NOT NULL,          -- Telegram's id of the message in that chat
    delete_at_ms  INTEGER NOT NULL,          -- confirmation time + expire_seconds; never earlier
    next_try_ms   INTEGER NOT NULL,          -- delete_at_ms, later the time of the next retry
    attempts      INTEGER NOT NULL DEFAULT 0,-- failed attempts so far
    created_at_ms INTEGER NOT NULL,
    UNIQUE (chat_id, message_id)
);
CREATE INDEX IF NOT EXISTS pending_deletions_by_next_try ON pending_deletions (next_try_ms);

-- Rolling-window rate limits: one row per counted request, pruned once out of its window.
CREATE TABLE IF NOT EXISTS rate_events (
    id      INTEGER PRIMARY KEY,
    scope   TEXT    NOT NULL,                -- 'chat' or 'ip'
    subject TEXT    NOT NULL,                -- the chat_id or the client address
    at_ms   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_events_by_subject ON rate_events (scope, subject, at_ms);

-- Liveness of the daemons: otp-fcgi refuses to send while otp-deleter's beat is stale.
CREATE TABLE IF NOT EXISTS heartbeats (
    program TEXT PRIMARY KEY,
    pid     INTEGER NOT NULL,
    beat_ms INTEGER NOT NULL
);

CREATE VIEW IF NOT EXISTS pending_deletions_readable AS
SELECT id, chat_id, message_id,
       strftime('%Y-%m-%dT%H:%M:%fZ', delete_at_ms / 1000.0, 'unixepoch') AS delete_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', next_try_ms / 1000.0, 'unixepoch') AS next_try,
       attempts,
       strftime('%Y-%m-%dT%H:%M:%fZ', created_at_ms / 1000.0, 'unixepoch') AS created_at,
       round(delete_at_ms / 1000.0 - (julianday('now') - 2440587.5) * 86400.0, 1)
           AS seconds_left
FROM pending_deletions ORDER BY delete_at_ms;

CREATE VIEW IF NOT EXISTS heartbeats_readable AS
SELECT program, pid,
       strftime('%Y-%m-%dT%H:%M:%fZ', beat_ms / 1000.0, 'unixepoch') AS beat_at,
       round((julianday('now') - 2440587.5) * 86400.0 - beat_ms / 1000.0, 1) AS age_seconds
FROM heartbeats;

-- Telegram's flood control: after a 429, no process calls the Bot API before until_ms.
CREATE TABLE IF NOT EXISTS telegram_pause (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    until_ms INTEGER NOT NULL,
    set_by   TEXT    NOT NULL                -- the program that got the 429
);

-- /metrics: every process adds its counts here, so the totals are the whole pool's.
-- Histograms are stored as their Prometheus series (_bucket with le, _sum, _count).
CREATE TABLE IF NOT EXISTS metrics (
    name   TEXT NOT NULL,
    labels TEXT NOT NULL,                    -- Prometheus label text: path="/send-otp",status="200"
    value  REAL NOT NULL,
    PRIMARY KEY (name, labels)
) WITHOUT ROWID;
