-- schema.sql — the database otp-fcgi and otp-deleter share (PRAGMA user_version = 4).
-- Compiled into store_sqlite_file.c; docs/store.md documents it for people who inspect it with
-- sqlite3.
-- Times are milliseconds since the Unix epoch (UTC); the *_readable view shows them as text.

-- One row per sent message still to be deleted. Never the OTP, never the message text.
CREATE TABLE IF NOT EXISTS pending_deletions (
    id            INTEGER PRIMARY KEY,
    chat_id       TEXT    NOT NULL,          -- as the client named it: 123, -100123, @channel
    chat_key      TEXT    NOT NULL,          -- chat_id with an @username in lower case: one chat
    message_id    INTEGER NOT NULL,          -- Telegram's id of the message in that chat
    delete_at_ms  INTEGER NOT NULL,          -- confirmation time + expire_seconds; never earlier
    next_try_ms   INTEGER NOT NULL,          -- delete_at_ms, later the time of the next retry
    attempts      INTEGER NOT NULL DEFAULT 0,-- failed attempts so far
    created_at_ms INTEGER NOT NULL,
    owner         TEXT,                      -- the API key's name that sent it; NULL: no keys
    UNIQUE (chat_id, message_id)
);
CREATE INDEX IF NOT EXISTS pending_deletions_by_next_try ON pending_deletions (next_try_ms);
-- POST /revoke-otp finds its row by equality here (inside its write transaction: no scan)
CREATE INDEX IF NOT EXISTS pending_deletions_by_chat_key
    ON pending_deletions (chat_key, message_id);

-- Rolling-window rate limits: the counted requests of each (scope, subject), as one row per
-- millisecond that holds any, with how many (a busy client address counts several requests in
-- one millisecond: one row updated, not a row and its index entries per request). A row leaves
-- once out of its window: when its subject reaches its limit (the check drops what expired
-- first), or by otp-deleter's sweep every 10 s.
CREATE TABLE IF NOT EXISTS rate_log (
    scope   TEXT    NOT NULL,                -- 'chat' or 'ip'
    subject TEXT    NOT NULL,                -- the normalised chat_id or the client address
    at_ms   INTEGER NOT NULL,
    events  INTEGER NOT NULL,                -- requests counted at at_ms (≥ 1)
    PRIMARY KEY (scope, subject, at_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_log_by_time ON rate_log (scope, at_ms);

-- One row per counted request, as before version 3 (for people and tests that read them).
CREATE VIEW IF NOT EXISTS rate_events (scope, subject, at_ms) AS
WITH RECURSIVE one (scope, subject, at_ms, n) AS (
    SELECT scope, subject, at_ms, events FROM rate_log
    UNION ALL
    SELECT scope, subject, at_ms, n - 1 FROM one WHERE n > 1
)
SELECT scope, subject, at_ms FROM one;

-- How many events each (scope, subject) holds in rate_log, expired ones included until they
-- are dropped: a limit is checked by reading one row, never by counting the window. The store
-- adds each event's count with the event (it has just read the row: one update, no trigger);
-- the trigger below takes deleted rows' events off (pruning, otp-deleter's sweep).
CREATE TABLE IF NOT EXISTS rate_counts (
    scope   TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    events  INTEGER NOT NULL,
    PRIMARY KEY (scope, subject)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS rate_log_uncounted AFTER DELETE ON rate_log BEGIN
    UPDATE rate_counts SET events = events - old.events
        WHERE scope = old.scope AND subject = old.subject;
    DELETE FROM rate_counts WHERE scope = old.scope AND subject = old.subject AND events <= 0;
END;

-- The bot's send queue (generic cell rate algorithm): the instant, in microseconds since the
-- epoch, from which the next send may go. Each send reserves max(now, next_us) and moves
-- next_us one spacing (1 / TELEGRAM_MAX_SENDS_PER_SECOND) past it.
CREATE TABLE IF NOT EXISTS send_queue (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    next_us INTEGER NOT NULL
);

-- Liveness of the daemons: otp-fcgi refuses to send while otp-deleter's beat is stale.
CREATE TABLE IF NOT EXISTS heartbeats (
    program TEXT PRIMARY KEY,
    pid     INTEGER NOT NULL,
    beat_ms INTEGER NOT NULL
);

CREATE VIEW IF NOT EXISTS pending_deletions_readable AS
SELECT id, chat_id, message_id, owner,
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

-- Telegram's flood control, by kind of call: after a 429 on sendMessage no process sends before
-- the 'send' row's until_ms; after one on deleteMessage(s) no deletion starts before the
-- 'delete' row's. Neither holds the other. until_ms is clamped (TELEGRAM_MAX_PAUSE_SECONDS);
-- deleting or shortening a row ends or shortens the pause for every process.
CREATE TABLE IF NOT EXISTS telegram_pauses (
    kind     TEXT    PRIMARY KEY,            -- 'send' or 'delete'
    until_ms INTEGER NOT NULL,
    set_by   TEXT    NOT NULL                -- the program that got the 429
) WITHOUT ROWID;

CREATE VIEW IF NOT EXISTS telegram_pauses_readable AS
SELECT kind, strftime('%Y-%m-%dT%H:%M:%fZ', until_ms / 1000.0, 'unixepoch') AS until,
       round(until_ms / 1000.0 - (julianday('now') - 2440587.5) * 86400.0, 1) AS seconds_left,
       set_by
FROM telegram_pauses;

-- /metrics: every process adds its counts here, so the totals are the whole pool's.
-- Histograms are stored as their Prometheus series (_bucket with le, _sum, _count).
CREATE TABLE IF NOT EXISTS metrics (
    name   TEXT NOT NULL,
    labels TEXT NOT NULL,                    -- Prometheus label text: path="/send-otp",status="200"
    value  REAL NOT NULL,
    PRIMARY KEY (name, labels)
) WITHOUT ROWID;
