//! The [`Store`] driver on SQLite: one file in WAL mode (or one in-memory database for
//! `store = "memory"`), migrations embedded in the binary. Writes take turns on one
//! connection (SQLite has one writer) and a batch of messages is one transaction; each
//! conversation's numbers come from its row (`last_change`), inside the writing transaction.
//! The aggregates live in their own files: [`users`], [`conversations`], [`messages`].

pub(super) mod conversations;
pub(super) mod messages;
mod users;

use super::user_cache::UserCache;
use super::{CacheLimits, MemoryUsage, Store};
use crate::error::AppError;
use crate::protocol::{
    Author, ConversationId, ConversationInfo, ConversationKind, Message, MessageId, Reaction,
    ThreadParent, ThreadSummary, UserId,
};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Rows per multi-row statement (well under SQLite's parameter limit).
const CHUNK_ROWS: usize = 400;

/// Selects messages (as `m`); add a `WHERE` on `m`.
const SELECT_MESSAGES: &str = "SELECT m.conversation_id, m.seq, m.change, m.id, m.author_id,
    m.author_name, m.body, m.sent_at, m.client_id, m.deleted, m.edited_at, m.reactions,
    m.thread_id, m.reply_count, m.last_reply_at, m.mentions, m.mentions_all FROM messages m";

/// Selects conversations (as `c`); add a `WHERE` on `c`.
const SELECT_CONVERSATIONS: &str = "SELECT c.id, c.kind, c.name, c.parent_conversation,
    c.parent_message, c.created_at FROM conversations c";

/// SQLite, with the users seen lately cached in memory.
pub struct SqliteStore {
    /// Readers.
    pool: SqlitePool,
    /// The one connection that writes. Always the same one, so its page cache stays warm: a
    /// write on a pooled connection first re-read the pages other connections had changed.
    writes: SqlitePool,
    users: Mutex<UserCache>,
    /// SQLite allows one writer; taking turns here avoids busy retries.
    writer: tokio::sync::Mutex<()>,
}

fn db_error(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "database error");
    AppError::internal("database error")
}

/// The first row of a fully read result. (Reading every row matters: a statement left
/// half-read keeps its connection's WAL snapshot open, and later reads on it would be stale.)
fn first<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

pub(in crate::server::store) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(in crate::server::store) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(in crate::server::store) fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A fresh opaque id: 32 hex digits.
pub(in crate::server::store) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh message id: time-ordered (UUIDv7), so that SQLite's index of message ids grows at
/// its end. Random ids put every message of a batch on a different index page, and each of
/// those pages was written to the WAL again on every commit.
pub(in crate::server::store) fn new_message_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A fresh server secret: 32 random bytes.
pub(in crate::server::store) fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// `full_sync` makes every commit wait for the disk (survives power loss); without it
    /// commits survive a crash of the process, not of the OS.
    pub async fn open(path: &Path, full_sync: bool, caches: CacheLimits) -> Result<Self, AppError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // A connection to a local file cannot go stale: no ping (a round trip to the
        // connection's thread) before each use.
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        sqlx::migrate!("./migrations")
            .run(&writes)
            .await
            .map_err(db_error)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Ok(Self::with_pools(pool, writes, caches))
    }

    /// A database that lives in memory only and is gone when the store is dropped: one
    /// connection reads and writes.
    pub async fn in_memory(caches: CacheLimits) -> Result<Self, AppError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(db_error)?;
        Ok(Self::with_pools(pool.clone(), pool, caches))
    }

    fn with_pools(pool: SqlitePool, writes: SqlitePool, caches: CacheLimits) -> Self {
        SqliteStore {
            pool,
            writes,
            users: Mutex::new(UserCache::new(caches.users)),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes the conversation's next `count` change numbers inside `tx`; returns the last.
    async fn take_changes(
        tx: &mut Transaction<'_, Sqlite>,
        id: ConversationId,
        count: u64,
    ) -> Result<Option<u64>, AppError> {
        let last: Option<i64> = sqlx::query_scalar(
            "UPDATE conversations SET last_change = last_change + ? WHERE id = ?
             RETURNING last_change",
        )
        .bind(to_i64(count))
        .bind(to_i64(id.0))
        .fetch_all(&mut **tx)
        .await
        .map(first)
        .map_err(db_error)?;
        Ok(last.map(to_u64))
    }

    /// A direct conversation's members, by id (its title).
    async fn people(&self, id: ConversationId) -> Result<Vec<Author>, AppError> {
        let rows = sqlx::query(
            "SELECT m.user_id, COALESCE(u.name, m.user_name) AS name FROM members m
             LEFT JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = ? ORDER BY m.user_id",
        )
        .bind(to_i64(id.0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.iter().map(author_from_row).collect())
    }

    /// A conversation from its row, with its people if it is direct.
    async fn conversation_from_row(&self, row: &SqliteRow) -> Result<ConversationInfo, AppError> {
        let mut info = conversation_from_row(row)?;
        if info.kind == ConversationKind::Direct {
            info.people = self.people(info.id).await?;
        }
        Ok(info)
    }
}

impl Store for SqliteStore {
    fn memory_usage(&self) -> MemoryUsage {
        MemoryUsage {
            users: self.users.lock().expect("users lock").count(),
        }
    }
}

fn author_from_row(row: &SqliteRow) -> Author {
    Author {
        id: UserId(row.get("user_id")),
        name: row.get("name"),
    }
}

/// A conversation from a row of [`SELECT_CONVERSATIONS`] (without people).
fn conversation_from_row(row: &SqliteRow) -> Result<ConversationInfo, AppError> {
    let kind: String = row.try_get("kind").map_err(db_error)?;
    let parent_conversation: Option<i64> = row.try_get("parent_conversation").map_err(db_error)?;
    let parent_message: Option<String> = row.try_get("parent_message").map_err(db_error)?;
    Ok(ConversationInfo {
        id: ConversationId(to_u64(row.try_get("id").map_err(db_error)?)),
        kind: ConversationKind::parse(&kind)
            .ok_or_else(|| AppError::internal("unknown conversation kind"))?,
        name: row.try_get("name").map_err(db_error)?,
        people: Vec::new(),
        parent: parent_conversation
            .zip(parent_message)
            .map(|(conversation, message)| ThreadParent {
                conversation: ConversationId(to_u64(conversation)),
                message: MessageId(message),
            }),
        created_at: row.try_get("created_at").map_err(db_error)?,
    })
}

/// A message from a row of [`SELECT_MESSAGES`].
fn message_from_row(row: &SqliteRow) -> Result<Message, AppError> {
    let sent_at: DateTime<Utc> = row.try_get("sent_at").map_err(db_error)?;
    let reactions: Option<String> = row.try_get("reactions").map_err(db_error)?;
    let mentions: Option<String> = row.try_get("mentions").map_err(db_error)?;
    let thread_id: Option<i64> = row.try_get("thread_id").map_err(db_error)?;
    let last_reply_at: Option<DateTime<Utc>> = row.try_get("last_reply_at").map_err(db_error)?;
    let replies: i64 = row.try_get("reply_count").map_err(db_error)?;
    Ok(Message {
        id: MessageId(row.try_get("id").map_err(db_error)?),
        conversation: ConversationId(to_u64(row.try_get("conversation_id").map_err(db_error)?)),
        seq: to_u64(row.try_get("seq").map_err(db_error)?),
        change: to_u64(row.try_get("change").map_err(db_error)?),
        author: Author {
            id: UserId(row.try_get("author_id").map_err(db_error)?),
            name: row.try_get("author_name").map_err(db_error)?,
        },
        body: row.try_get("body").map_err(db_error)?,
        sent_at,
        edited_at: row.try_get("edited_at").map_err(db_error)?,
        deleted: row.try_get::<i64, _>("deleted").map_err(db_error)? != 0,
        reactions: match reactions {
            Some(json) => serde_json::from_str::<Vec<Reaction>>(&json).map_err(db_error)?,
            None => Vec::new(),
        },
        thread: thread_id
            .zip(last_reply_at)
            .map(|(thread, last_reply_at)| ThreadSummary {
                conversation: ConversationId(to_u64(thread)),
                replies: u32::try_from(replies).unwrap_or(u32::MAX),
                last_reply_at,
            }),
        mentions: match mentions {
            Some(json) => serde_json::from_str::<Vec<UserId>>(&json).map_err(db_error)?,
            None => Vec::new(),
        },
        mentions_all: row.try_get::<i64, _>("mentions_all").map_err(db_error)? != 0,
        client_id: row.try_get("client_id").map_err(db_error)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::{contract, Admission, Conversations, Messages, NewMessage, Users};

    async fn on_disk(dir: &Path) -> SqliteStore {
        SqliteStore::open(&dir.join("flack.db"), false, CacheLimits::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn passes_the_contract_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        contract::run_all(&on_disk(dir.path()).await).await;
    }

    #[tokio::test]
    async fn two_handles_on_one_file_never_share_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (on_disk(dir.path()).await, on_disk(dir.path()).await);
        contract::two_handles_never_share_a_number(&a, &b).await;
    }

    #[tokio::test]
    async fn passes_the_contract_in_memory() {
        contract::run_all(
            &SqliteStore::in_memory(CacheLimits::default())
                .await
                .unwrap(),
        )
        .await;
    }

    #[tokio::test]
    async fn everything_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (ada, channel, message) = {
            let store = on_disk(dir.path()).await;
            let ada = store
                .create_user("hash".into(), Some("Ada".into()))
                .await
                .unwrap();
            let author = Author {
                id: ada.id.clone(),
                name: "Ada".into(),
            };
            let channel = store
                .create_channel("Keep".into(), ConversationKind::Private, Some(&author))
                .await
                .unwrap();
            let message = store
                .append(NewMessage {
                    conversation: channel.id,
                    author,
                    body: "kept".into(),
                    client_id: Some("c-1".into()),
                    mentions: vec![],
                    mentions_all: false,
                    admission: Admission::Unchecked,
                })
                .await
                .unwrap()
                .message;
            (ada, channel, message)
        };
        let store = on_disk(dir.path()).await;
        assert_eq!(
            store.user_by_token("hash").await.unwrap(),
            Some(ada.clone())
        );
        assert_eq!(
            store.channel_named("keep").await.unwrap(),
            Some(channel.clone())
        );
        let window = store.recent(channel.id, 10).await.unwrap();
        assert_eq!(window.messages, vec![message.clone()]);
        assert!(store
            .membership(channel.id, &ada.id)
            .await
            .unwrap()
            .is_some());
        // Numbers continue where they stopped: the next message is not a reused number.
        let next = store
            .append(NewMessage {
                conversation: channel.id,
                author: message.author.clone(),
                body: "next".into(),
                client_id: None,
                mentions: vec![],
                mentions_all: false,
                admission: Admission::Unchecked,
            })
            .await
            .unwrap();
        assert_eq!(next.message.seq, window.last_change + 1);
    }

    /// A database written by the version before conversations opens with its channels as
    /// public conversations, its messages in order, and its visits as memberships.
    #[tokio::test]
    async fn an_old_database_is_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            for file in ["0001_init.sql", "0002_identity_and_visits.sql"] {
                let sql = std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("migrations")
                        .join(file),
                )
                .unwrap();
                sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
            }
            sqlx::raw_sql(
                "INSERT INTO users VALUES ('u1', 'h1', 'Ada', '2026-01-01T00:00:00Z');
                 INSERT INTO channels VALUES ('general', 'General', '2026-01-01T00:00:00Z');
                 INSERT INTO messages (channel_key, seq, id, author_id, author_name, body,
                    sent_at) VALUES
                    ('general', 1, 'm1', 'u1', 'Ada', 'one', '2026-01-01T00:00:01Z'),
                    ('general', 2, 'm2', 'u1', 'Ada', 'two', '2026-01-01T00:00:02Z');
                 INSERT INTO channel_visits VALUES ('u1', 'general', '2026-01-01T00:00:03Z');",
            )
            .execute(&pool)
            .await
            .unwrap();
            // Record both migrations as applied, the way sqlx would have.
            let migrator = sqlx::migrate!("./migrations");
            sqlx::raw_sql(
                "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
                 installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
                 checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            for m in migrator.iter().filter(|m| m.version <= 2) {
                sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, 1, ?, 0)")
                    .bind(m.version)
                    .bind(m.description.as_ref())
                    .bind(m.checksum.as_ref())
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
        let store = SqliteStore::open(&path, false, CacheLimits::default())
            .await
            .unwrap();
        let general = store.channel_named("GENERAL").await.unwrap().unwrap();
        assert_eq!(general.kind, ConversationKind::Public);
        assert_eq!(general.name.as_deref(), Some("General"));
        let window = store.recent(general.id, 10).await.unwrap();
        let bodies: Vec<_> = window.messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["one", "two"]);
        assert_eq!(window.last_change, 2);
        let mine = store.conversations_of(&UserId("u1".into())).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0].unread, mine[0].read_seq), (0, 2));
    }
}
