-- The server's own settings (the secret tokens are signed with).
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);

-- Tokens signed out: a signed token found here is never an identity again.
CREATE TABLE revoked_tokens (
    token_hash  TEXT PRIMARY KEY,
    revoked_at  TEXT NOT NULL
);

-- The channels each user opened lately (the sidebar lists them); a few dozen per user.
CREATE TABLE channel_visits (
    user_id     TEXT NOT NULL,
    channel_key TEXT NOT NULL REFERENCES channels (key),
    visited_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, channel_key)
) WITHOUT ROWID;
