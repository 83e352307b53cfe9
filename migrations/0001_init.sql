-- Flack's durable state. Messages keep their row when deleted (as a tombstone without its
-- text) so that reconnecting clients can be told exactly which ones disappeared.

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    name        TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE channels (
    key         TEXT PRIMARY KEY,   -- the name, lower-cased: uniqueness ignores case
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE messages (
    channel_key TEXT NOT NULL REFERENCES channels (key),
    seq         INTEGER NOT NULL,
    id          TEXT NOT NULL UNIQUE,
    author_id   TEXT NOT NULL,
    author_name TEXT NOT NULL,
    body        TEXT NOT NULL,
    sent_at     TEXT NOT NULL,
    client_id   TEXT,
    deleted     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_key, seq)
) WITHOUT ROWID;

-- A retried send (same author, same client id) is stored once.
CREATE UNIQUE INDEX messages_sent_once ON messages (author_id, client_id)
    WHERE client_id IS NOT NULL;
