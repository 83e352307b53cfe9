-- Conversations: channels (public or private), direct messages and threads, addressed by id.
-- A channel's name is an attribute; every change to a conversation takes the next number of
-- its change sequence (`last_change`), and a message's `seq` is the number it was created with.

CREATE TABLE conversations (
    id                  INTEGER PRIMARY KEY,
    kind                TEXT NOT NULL,          -- public, private, direct, thread
    name                TEXT,                   -- channels only
    name_key            TEXT UNIQUE,            -- lower-cased channel name, or 'dm:' + member ids
    parent_conversation INTEGER REFERENCES conversations (id),
    parent_message      TEXT UNIQUE,            -- a thread's parent message
    created_at          TEXT NOT NULL,
    last_change         INTEGER NOT NULL DEFAULT 0
);

-- Who belongs where, and how far they have read. A member who left keeps the row (active 0)
-- so that catch-up can tell the change; `change` is the number the last join or leave took.
CREATE TABLE members (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    active          INTEGER NOT NULL DEFAULT 1,
    change          INTEGER NOT NULL,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    joined_at       TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_of_user ON members (user_id, conversation_id) WHERE active = 1;

CREATE TABLE conversation_messages (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    change          INTEGER NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    author_id       TEXT NOT NULL,
    author_name     TEXT NOT NULL,
    body            TEXT NOT NULL,
    sent_at         TEXT NOT NULL,
    client_id       TEXT,
    deleted         INTEGER NOT NULL DEFAULT 0,
    edited_at       TEXT,
    reactions       TEXT,                       -- JSON summary of `reactions`, NULL if none
    thread_id       INTEGER,
    reply_count     INTEGER NOT NULL DEFAULT 0,
    last_reply_at   TEXT,
    mentions        TEXT,                       -- JSON array of user ids, NULL if none
    mentions_all    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;

-- Existing channels become public conversations, their messages keep their numbers, and
-- the channels people visited become theirs, read to the end.
INSERT INTO conversations (kind, name, name_key, created_at, last_change)
SELECT 'public', c.name, c.key, c.created_at,
       COALESCE((SELECT MAX(m.seq) FROM messages m WHERE m.channel_key = c.key), 0)
FROM channels c ORDER BY c.created_at, c.key;

INSERT INTO conversation_messages
    (conversation_id, seq, change, id, author_id, author_name, body, sent_at, client_id, deleted)
SELECT v.id, m.seq, m.seq, m.id, m.author_id, m.author_name, m.body, m.sent_at, m.client_id,
       m.deleted
FROM messages m JOIN conversations v ON v.name_key = m.channel_key;

INSERT INTO members (conversation_id, user_id, user_name, change, read_seq, joined_at)
SELECT v.id, cv.user_id, COALESCE(u.name, ''), 0, v.last_change, cv.visited_at
FROM channel_visits cv
JOIN conversations v ON v.name_key = cv.channel_key
JOIN users u ON u.id = cv.user_id;

DROP TABLE channel_visits;
DROP INDEX messages_sent_once;
DROP TABLE messages;
DROP TABLE channels;
ALTER TABLE conversation_messages RENAME TO messages;

-- A retried send (same author, same client id) is stored once.
CREATE UNIQUE INDEX messages_sent_once ON messages (author_id, client_id)
    WHERE client_id IS NOT NULL;
-- Catch-up reads what changed after a number.
CREATE INDEX messages_by_change ON messages (conversation_id, change);

-- One row per person and emoji on a message; the message keeps a summary for reading.
CREATE TABLE reactions (
    message_id  TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    reacted_at  TEXT NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
) WITHOUT ROWID;

-- Who each message mentions, for counting a user's unread mentions.
CREATE TABLE mentions (
    user_id         TEXT NOT NULL,
    conversation_id INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq)
) WITHOUT ROWID;
