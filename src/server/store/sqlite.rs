//! The durable [`Store`]: one SQLite file (WAL mode, migrations embedded in the binary), with
//! each channel's most recent messages also kept in memory so that joins never read the disk.
//! Writes are serialised (SQLite has one writer) and a whole batch is one transaction.

use super::hot::{HotChannel, SharedChannel, MAX_REMOVED};
use super::memory::{new_id, new_secret, next_message};
use super::window_cache::{UserCache, WindowCache};
use super::{Appended, CacheLimits, CatchUp, MemoryUsage, NewMessage, Store, RECENT_CHANNELS};
use crate::error::AppError;
use crate::protocol::{channel_key, Author, ChannelInfo, Message, MessageId, UserId, UserInfo};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Rows per multi-row statement (8 parameters each, well under SQLite's limit).
const CHUNK_ROWS: usize = 500;

/// Catch-ups longer than this are answered with a reset to the recent window.
const MAX_CATCH_UP: usize = 1000;

/// Selects messages (as `m`) with their channel's name; add a `WHERE` on `m`.
const SELECT_MESSAGES: &str = "SELECT m.seq, m.id, m.author_id, m.author_name, m.body, m.sent_at,
    m.client_id, c.name AS channel_name FROM messages m JOIN channels c ON c.key = m.channel_key";

/// SQLite on disk; the recent windows of channels in use and the users seen lately in memory.
pub struct SqliteStore {
    /// Readers.
    pool: SqlitePool,
    /// The one connection that writes. Always the same one, so its page cache stays warm: a
    /// write on a pooled connection first re-read the pages other connections had changed.
    writes: SqlitePool,
    window: usize,
    /// Recent windows (with each channel's last sequence number), loaded on demand. Loaded
    /// and written only while holding `writer`, so a cached window is never behind the disk.
    windows: WindowCache,
    users: Mutex<UserCache>,
    /// SQLite allows one writer; taking turns here avoids busy retries.
    writer: tokio::sync::Mutex<()>,
    /// Commits that changed messages, counted while holding `writer`: a window read without
    /// it is kept only if this did not move during the read.
    commits: AtomicU64,
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

fn to_seq(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn from_seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date and
    /// loads each channel's recent window. `full_sync` makes every commit wait for the disk
    /// (survives power loss); without it commits survive a crash of the process, not of the OS.
    pub async fn open(
        path: &Path,
        window: usize,
        full_sync: bool,
        caches: CacheLimits,
    ) -> Result<Self, AppError> {
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
        let writes = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        sqlx::migrate!("./migrations")
            .run(&writes)
            .await
            .map_err(db_error)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Ok(SqliteStore {
            pool,
            writes,
            window: window.max(1),
            windows: WindowCache::new(caches.window_bytes),
            users: Mutex::new(UserCache::new(caches.users)),
            writer: tokio::sync::Mutex::new(()),
            commits: AtomicU64::new(0),
        })
    }

    /// The channel row with this key, read from disk.
    async fn channel_row(&self, key: &str) -> Result<Option<ChannelInfo>, AppError> {
        let row = sqlx::query("SELECT name, created_at FROM channels WHERE key = ?")
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map(first)
            .map_err(db_error)?;
        Ok(row.as_ref().map(channel_from_row))
    }

    /// The channel's cached window, loading it from disk if it is not cached. The caller
    /// holds `writer`, so no commit can land between the read and the caching; the read is
    /// on a reader connection, since the writer's may be inside the caller's transaction.
    async fn window_locked(&self, key: &str) -> Result<Option<SharedChannel>, AppError> {
        if let Some(hot) = self.windows.get(key) {
            return Ok(Some(hot));
        }
        Ok(self
            .read_window(key)
            .await?
            .map(|hot| self.windows.insert(key.to_string(), hot)))
    }

    /// A channel's window as the disk has it now (not cached).
    async fn read_window(&self, key: &str) -> Result<Option<HotChannel>, AppError> {
        let Some(info) = self.channel_row(key).await? else {
            return Ok(None);
        };
        let mut hot = HotChannel::new(info, self.window);
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM messages WHERE channel_key = ?")
                .bind(key)
                .fetch_all(&self.pool)
                .await
                .map(|rows| first(rows).flatten())
                .map_err(db_error)?;
        for message in self.newest(key, i64::MAX, self.window).await? {
            hot.push(message);
        }
        hot.last_seq = last.map_or(0, to_seq);
        Ok(Some(hot))
    }

    /// The window of the channel named `channel` (any case), loaded if need be, and its key.
    async fn window(&self, channel: &str) -> Result<(String, SharedChannel), AppError> {
        let key = channel_key(channel);
        let missing = || AppError::NoSuchChannel {
            name: channel.to_string(),
        };
        if let Some(hot) = self.windows.get(&key) {
            return Ok((key, hot));
        }
        // Read from disk without taking turns with the writer (a window of big messages takes
        // a while), then keep it only if nothing was committed meanwhile; else read again in
        // turn. Look-ups of channels that do not exist stop at the first read.
        let before = self.commits.load(Ordering::Acquire);
        let read = self.read_window(&key).await?.ok_or_else(missing)?;
        let _turn = self.writer.lock().await;
        if let Some(hot) = self.windows.get(&key) {
            return Ok((key, hot));
        }
        let hot = if self.commits.load(Ordering::Acquire) == before {
            self.windows.insert(key.clone(), read)
        } else {
            self.window_locked(&key).await?.ok_or_else(missing)?
        };
        Ok((key, hot))
    }

    /// Up to `limit` live messages with `seq > after_seq`, oldest first.
    async fn live_after(
        &self,
        key: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, AppError> {
        let sql = format!(
            "{SELECT_MESSAGES} WHERE m.channel_key = ? AND m.deleted = 0 AND m.seq > ?
             ORDER BY m.seq LIMIT ?"
        );
        sqlx::query(&sql)
            .bind(key)
            .bind(from_seq(after_seq))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
            .iter()
            .map(message_from_row)
            .collect()
    }

    /// Up to `limit` live messages with `seq < before`, oldest first.
    async fn newest(&self, key: &str, before: i64, limit: usize) -> Result<Vec<Message>, AppError> {
        let sql = format!(
            "{SELECT_MESSAGES} WHERE m.channel_key = ? AND m.deleted = 0 AND m.seq < ?
             ORDER BY m.seq DESC LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(key)
            .bind(before)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    fn cache_user(&self, token_hash: Option<String>, user: &UserInfo) {
        self.users
            .lock()
            .expect("users lock")
            .insert(token_hash, user);
    }

    /// A user row looked up by `column` (`id` or `token_hash`), cached on the way.
    async fn load_user(&self, column: &str, value: &str) -> Result<Option<UserInfo>, AppError> {
        let sql = format!("SELECT id, name, token_hash FROM users WHERE {column} = ?");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_all(&self.pool)
            .await
            .map(first)
            .map_err(db_error)?;
        Ok(row.map(|row| {
            let user = UserInfo {
                id: UserId(row.get("id")),
                name: row.get("name"),
            };
            self.cache_user(Some(row.get("token_hash")), &user);
            user
        }))
    }

    /// Stores the batch inside `tx` with two statements whatever its size: one look-up of
    /// the client ids the windows do not know, one multi-row insert.
    async fn write_batch(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        batch: Vec<NewMessage>,
    ) -> Result<Vec<Result<Appended, AppError>>, AppError> {
        // Each channel's window as this batch leaves it (seq and time advance within it).
        let mut staged: HashMap<String, HotChannel> = HashMap::new();
        let mut slots: Vec<Slot> = Vec::with_capacity(batch.len());
        let mut first_of: HashMap<(UserId, String), usize> = HashMap::new();
        for new in batch {
            let key = channel_key(&new.channel);
            let hot = match self.window_locked(&key).await {
                Ok(Some(hot)) => hot,
                Ok(None) => {
                    slots.push(Slot::Done(Err(AppError::NoSuchChannel {
                        name: new.channel.clone(),
                    })));
                    continue;
                }
                Err(e) => {
                    slots.push(Slot::Done(Err(e)));
                    continue;
                }
            };
            let window = staged
                .entry(key.clone())
                .or_insert_with(|| hot.lock().expect("channel lock").clone());
            if let Some(client_id) = &new.client_id {
                let id = (new.author.id.clone(), client_id.clone());
                if let Some(&earlier) = first_of.get(&id) {
                    slots.push(Slot::SameAs(earlier));
                    continue;
                }
                if let Some(sent) = window.find_sent(&new.author.id, client_id) {
                    slots.push(Slot::Done(Ok(Appended {
                        message: sent.clone(),
                        fresh: false,
                    })));
                    continue;
                }
                first_of.insert(id, slots.len());
            }
            slots.push(Slot::New(key, new));
        }

        // Client ids sent before this batch and older than the windows.
        let unknown: Vec<(&str, &str)> = slots
            .iter()
            .filter_map(|slot| match slot {
                Slot::New(_, new) => new
                    .client_id
                    .as_deref()
                    .map(|id| (new.author.id.0.as_str(), id)),
                _ => None,
            })
            .collect();
        let mut stored: HashMap<(String, String), Message> = HashMap::new();
        for chunk in unknown.chunks(CHUNK_ROWS) {
            // A join against the pairs, not `IN (VALUES …)`: that form scans the whole table,
            // this one probes the unique index once per pair.
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT m.seq, m.id, m.author_id, m.author_name, m.body, m.sent_at, m.client_id,
                 c.name AS channel_name FROM (",
            );
            query.push_values(chunk, |mut row, (author, id)| {
                row.push_bind(*author).push_bind(*id);
            });
            query.push(
                ") v JOIN messages m ON m.author_id = v.column1 AND m.client_id = v.column2
                 JOIN channels c ON c.key = m.channel_key",
            );
            for row in query.build().fetch_all(&mut **tx).await.map_err(db_error)? {
                if let Ok(message) = message_from_row(&row) {
                    let id = message.client_id.clone().unwrap_or_default();
                    stored.insert((message.author.id.0.clone(), id), message);
                }
            }
        }

        // Number what is really new, in order, and insert it all at once.
        let mut rows: Vec<(String, Message)> = Vec::new();
        let mut results: Vec<Result<Appended, AppError>> = Vec::with_capacity(slots.len());
        for slot in slots {
            let result = match slot {
                Slot::Done(result) => result,
                Slot::SameAs(earlier) => match &results[earlier] {
                    Ok(first) => Ok(Appended {
                        message: first.message.clone(),
                        fresh: false,
                    }),
                    Err(e) => Err(e.clone()),
                },
                Slot::New(key, new) => {
                    let known = new
                        .client_id
                        .as_ref()
                        .and_then(|id| stored.remove(&(new.author.id.0.clone(), id.clone())));
                    match known {
                        Some(message) => Ok(Appended {
                            message,
                            fresh: false,
                        }),
                        None => {
                            let window = staged.get_mut(&key).expect("staged above");
                            let message = next_message(window, new);
                            window.push(message.clone());
                            rows.push((key, message.clone()));
                            Ok(Appended {
                                message,
                                fresh: true,
                            })
                        }
                    }
                }
            };
            results.push(result);
        }
        for chunk in rows.chunks(CHUNK_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages
                 (channel_key, seq, id, author_id, author_name, body, sent_at, client_id) ",
            );
            insert.push_values(chunk, |mut row, (key, m)| {
                row.push_bind(key.as_str())
                    .push_bind(from_seq(m.seq))
                    .push_bind(m.id.0.as_str())
                    .push_bind(m.author.id.0.as_str())
                    .push_bind(m.author.name.as_str())
                    .push_bind(m.body.as_str())
                    .push_bind(m.sent_at)
                    .push_bind(m.client_id.as_deref());
            });
            insert.build().execute(&mut **tx).await.map_err(db_error)?;
        }
        Ok(results)
    }
}

/// Where one message of a batch stands while the batch is prepared.
enum Slot {
    /// Answered already (an error, or a client id the window knows).
    Done(Result<Appended, AppError>),
    /// The same client id as an earlier message of this batch.
    SameAs(usize),
    /// To store in this channel (key), unless the disk knows its client id.
    New(String, NewMessage),
}

/// A channel from a row with `name` and `created_at`.
fn channel_from_row(row: &SqliteRow) -> ChannelInfo {
    ChannelInfo {
        name: row.get("name"),
        created_at: row.get("created_at"),
    }
}

fn message_from_row(row: &SqliteRow) -> Result<Message, AppError> {
    let channel: String = row.try_get("channel_name").map_err(db_error)?;
    let sent_at: DateTime<Utc> = row.try_get("sent_at").map_err(db_error)?;
    Ok(Message {
        id: MessageId(row.try_get("id").map_err(db_error)?),
        channel,
        seq: to_seq(row.try_get("seq").map_err(db_error)?),
        author: Author {
            id: UserId(row.try_get("author_id").map_err(db_error)?),
            name: row.try_get("author_name").map_err(db_error)?,
        },
        body: row.try_get("body").map_err(db_error)?,
        sent_at,
        client_id: row.try_get("client_id").map_err(db_error)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(
        &self,
        token_hash: String,
        name: Option<String>,
    ) -> Result<UserInfo, AppError> {
        let user = UserInfo {
            id: UserId(new_id()),
            name,
        };
        sqlx::query("INSERT INTO users (id, token_hash, name, created_at) VALUES (?, ?, ?, ?)")
            .bind(&user.id.0)
            .bind(&token_hash)
            .bind(&user.name)
            .bind(Utc::now())
            .execute(&self.writes)
            .await
            .map_err(db_error)?;
        self.cache_user(Some(token_hash), &user);
        Ok(user)
    }

    async fn store_user(
        &self,
        id: UserId,
        token_hash: String,
        name: String,
    ) -> Result<UserInfo, AppError> {
        sqlx::query(
            "INSERT INTO users (id, token_hash, name, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(&id.0)
        .bind(&token_hash)
        .bind(&name)
        .bind(Utc::now())
        .execute(&self.writes)
        .await
        .map_err(db_error)?;
        let user = UserInfo {
            id,
            name: Some(name),
        };
        self.cache_user(Some(token_hash), &user);
        Ok(user)
    }

    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserInfo>, AppError> {
        let cached = self.users.lock().expect("users lock").by_token(token_hash);
        match cached {
            Some(user) => Ok(Some(user)),
            None => self.load_user("token_hash", token_hash).await,
        }
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserInfo>, AppError> {
        let cached = self.users.lock().expect("users lock").by_id(id);
        match cached {
            Some(user) => Ok(Some(user)),
            None => self.load_user("id", &id.0).await,
        }
    }

    async fn set_display_name(&self, id: &UserId, name: String) -> Result<UserInfo, AppError> {
        let done = sqlx::query("UPDATE users SET name = ? WHERE id = ?")
            .bind(&name)
            .bind(&id.0)
            .execute(&self.writes)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(AppError::Unauthenticated);
        }
        let user = UserInfo {
            id: id.clone(),
            name: Some(name),
        };
        self.cache_user(None, &user);
        Ok(user)
    }

    async fn create_channel(&self, name: String) -> Result<ChannelInfo, AppError> {
        let _turn = self.writer.lock().await;
        let key = channel_key(&name);
        if let Some(existing) = self.channel_row(&key).await? {
            return Err(AppError::ChannelTaken {
                name: existing.name,
            });
        }
        let info = ChannelInfo {
            name,
            created_at: Utc::now(),
        };
        sqlx::query("INSERT INTO channels (key, name, created_at) VALUES (?, ?, ?)")
            .bind(&key)
            .bind(&info.name)
            .bind(info.created_at)
            .execute(&self.writes)
            .await
            .map_err(db_error)?;
        self.windows
            .insert(key, HotChannel::new(info.clone(), self.window));
        Ok(info)
    }

    async fn channel_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChannelInfo>, AppError> {
        let rows =
            sqlx::query("SELECT name, created_at FROM channels WHERE key > ? ORDER BY key LIMIT ?")
                .bind(after.map(channel_key).unwrap_or_default())
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(rows.iter().map(channel_from_row).collect())
    }

    async fn channel_count(&self) -> Result<usize, AppError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM channels")
            .fetch_all(&self.pool)
            .await
            .map(|rows| first(rows).unwrap_or(0))
            .map_err(db_error)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn channel(&self, name: &str) -> Result<Option<ChannelInfo>, AppError> {
        let key = channel_key(name);
        if let Some(hot) = self.windows.get(&key) {
            return Ok(Some(hot.lock().expect("channel lock").info.clone()));
        }
        self.channel_row(&key).await
    }

    async fn record_visit(&self, user: &UserId, channel: &str) -> Result<(), AppError> {
        let key = channel_key(channel);
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO channel_visits (user_id, channel_key, visited_at) VALUES (?, ?, ?)
             ON CONFLICT (user_id, channel_key) DO UPDATE SET visited_at = excluded.visited_at",
        )
        .bind(&user.0)
        .bind(&key)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "DELETE FROM channel_visits WHERE user_id = ?1 AND channel_key NOT IN
             (SELECT channel_key FROM channel_visits WHERE user_id = ?1
              ORDER BY visited_at DESC LIMIT ?2)",
        )
        .bind(&user.0)
        .bind(i64::try_from(RECENT_CHANNELS).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn recent_channels(&self, user: &UserId) -> Result<Vec<ChannelInfo>, AppError> {
        let rows = sqlx::query(
            "SELECT c.name, c.created_at FROM channel_visits v JOIN channels c
             ON c.key = v.channel_key WHERE v.user_id = ? ORDER BY v.visited_at DESC LIMIT ?",
        )
        .bind(&user.0)
        .bind(i64::try_from(RECENT_CHANNELS).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.iter().map(channel_from_row).collect())
    }

    fn memory_usage(&self) -> MemoryUsage {
        let (windows, window_bytes) = self.windows.usage();
        MemoryUsage {
            windows,
            window_bytes,
            users: self.users.lock().expect("users lock").count(),
        }
    }

    async fn secret(&self) -> Result<Vec<u8>, AppError> {
        let _turn = self.writer.lock().await;
        let found: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'token_secret'")
                .fetch_all(&self.writes)
                .await
                .map(first)
                .map_err(db_error)?;
        if let Some(secret) = found {
            return Ok(secret);
        }
        let secret = new_secret();
        sqlx::query("INSERT INTO settings (key, value) VALUES ('token_secret', ?)")
            .bind(&secret)
            .execute(&self.writes)
            .await
            .map_err(db_error)?;
        Ok(secret)
    }

    async fn revoke_token(&self, id: &UserId, token_hash: &str) -> Result<(), AppError> {
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO revoked_tokens (token_hash, revoked_at) VALUES (?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(token_hash)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // The user keeps their id and messages; no token reaches them any more.
        sqlx::query(
            "UPDATE users SET token_hash = 'revoked:' || id WHERE id = ? AND token_hash = ?",
        )
        .bind(&id.0)
        .bind(token_hash)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        self.users
            .lock()
            .expect("users lock")
            .forget_token(token_hash);
        Ok(())
    }

    async fn token_revoked(&self, token_hash: &str) -> Result<bool, AppError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM revoked_tokens WHERE token_hash = ?")
                .bind(token_hash)
                .fetch_all(&self.pool)
                .await
                .map(first)
                .map_err(db_error)?;
        Ok(found.is_some())
    }

    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, AppError>> {
        let count = batch.len();
        let failed = |e: AppError| (0..count).map(|_| Err(e.clone())).collect();
        let _turn = self.writer.lock().await;
        let mut tx = match self.writes.begin().await {
            Ok(tx) => tx,
            Err(e) => return failed(db_error(e)),
        };
        let results = match self.write_batch(&mut tx, batch).await {
            Ok(results) => results,
            Err(e) => return failed(e),
        };
        if let Err(e) = tx.commit().await {
            return failed(db_error(e));
        }
        self.commits.fetch_add(1, Ordering::Release);
        // Committed: now the windows may show the new messages.
        for appended in results.iter().flatten().filter(|a| a.fresh) {
            if let Some(hot) = self.windows.peek(&channel_key(&appended.message.channel)) {
                hot.lock()
                    .expect("channel lock")
                    .push(appended.message.clone());
            }
        }
        self.windows.trim();
        results
    }

    async fn recent(&self, channel: &str, limit: usize) -> Result<Vec<Message>, AppError> {
        let (key, hot) = self.window(channel).await?;
        if limit <= self.window {
            return Ok(hot.lock().expect("channel lock").recent(limit));
        }
        self.newest(&key, i64::MAX, limit).await
    }

    async fn before(
        &self,
        channel: &str,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, AppError> {
        let key = channel_key(channel);
        if self.channel(channel).await?.is_none() {
            return Err(AppError::NoSuchChannel {
                name: channel.to_string(),
            });
        }
        self.newest(&key, from_seq(before_seq), limit).await
    }

    async fn after(
        &self,
        channel: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<Vec<Message>>, AppError> {
        let key = channel_key(channel);
        if self.channel(channel).await?.is_none() {
            return Err(AppError::NoSuchChannel {
                name: channel.to_string(),
            });
        }
        let messages = self.live_after(&key, after_seq, limit).await?;
        Ok(Some(messages))
    }

    async fn since(
        &self,
        channel: &str,
        after_seq: u64,
        oldest_seq: u64,
    ) -> Result<CatchUp, AppError> {
        let (key, hot) = self.window(channel).await?;
        let reset = || hot.lock().expect("channel lock").reset();
        let last_seq = hot.lock().expect("channel lock").last_seq;
        if after_seq > last_seq {
            return Ok(reset());
        }
        // Read no further than the limit: past it the answer is a reset anyway.
        let messages = self.live_after(&key, after_seq, MAX_CATCH_UP + 1).await?;
        if messages.len() > MAX_CATCH_UP {
            return Ok(reset());
        }
        let removed: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM messages
             WHERE channel_key = ? AND deleted = 1 AND seq >= ? AND seq <= ?
             ORDER BY seq LIMIT ?",
        )
        .bind(&key)
        .bind(from_seq(oldest_seq))
        .bind(from_seq(after_seq))
        .bind(i64::try_from(MAX_REMOVED + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        if removed.len() > MAX_REMOVED {
            return Ok(reset());
        }
        Ok(CatchUp {
            messages,
            removed: removed.into_iter().map(to_seq).collect(),
            reset: false,
        })
    }

    async fn delete(&self, id: &MessageId, by: &UserId) -> Result<Message, AppError> {
        let _turn = self.writer.lock().await;
        let sql = format!("{SELECT_MESSAGES} WHERE m.id = ? AND m.deleted = 0");
        let row = sqlx::query(&sql)
            .bind(&id.0)
            .fetch_all(&self.writes)
            .await
            .map(first)
            .map_err(db_error)?
            .ok_or(AppError::NoSuchMessage)?;
        let message = message_from_row(&row)?;
        if &message.author.id != by {
            return Err(AppError::NotAuthor);
        }
        // Keep the row as a tombstone (its text gone) so catch-ups can report the deletion.
        sqlx::query("UPDATE messages SET deleted = 1, body = '' WHERE id = ?")
            .bind(&id.0)
            .execute(&self.writes)
            .await
            .map_err(db_error)?;
        self.commits.fetch_add(1, Ordering::Release);
        if let Some(hot) = self.windows.peek(&channel_key(&message.channel)) {
            hot.lock().expect("channel lock").remove(id);
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Author;

    crate::store_contract_tests!(|window| async move {
        // The directory lives as long as the test process; each test has its own file.
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        SqliteStore::open(
            &dir.path().join("flack.db"),
            window,
            false,
            CacheLimits::default(),
        )
        .await
        .unwrap()
    });

    #[tokio::test]
    async fn everything_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flack.db");
        let (ada, sent, deleted) = {
            let store = SqliteStore::open(&path, 100, true, CacheLimits::default())
                .await
                .unwrap();
            let ada = store
                .create_user("hash".into(), Some("Ada".into()))
                .await
                .unwrap();
            store.create_channel("General".into()).await.unwrap();
            let mut sent = Vec::new();
            for i in 1..=120 {
                let appended = store
                    .append(NewMessage {
                        channel: "general".into(),
                        author: Author {
                            id: ada.id.clone(),
                            name: "Ada".into(),
                        },
                        body: format!("m{i}"),
                        client_id: Some(format!("c{i}")),
                    })
                    .await
                    .unwrap();
                sent.push(appended.message);
            }
            let deleted = store.delete(&sent[119].id, &ada.id).await.unwrap();
            store.pool.close().await;
            store.writes.close().await;
            (ada, sent, deleted)
        };

        let store = SqliteStore::open(&path, 100, false, CacheLimits::default())
            .await
            .unwrap();
        assert_eq!(
            store.user_by_token("hash").await.unwrap(),
            Some(ada.clone())
        );
        assert_eq!(
            store.channel_page(None, 10).await.unwrap()[0].name,
            "General"
        );
        let recent = store.recent("general", 100).await.unwrap();
        assert_eq!(recent.len(), 100);
        // m120 was deleted: the window is m20..=m119.
        assert_eq!(recent.first().unwrap(), &sent[19]);
        assert_eq!(recent.last().unwrap(), &sent[118]);
        // Older history comes from disk, in order, with no gaps or repeats.
        let older = store.before("general", recent[0].seq, 100).await.unwrap();
        assert_eq!(older, sent[..19].to_vec());
        // The next message continues the sequence after the deleted one.
        let next = store
            .append(NewMessage {
                channel: "general".into(),
                author: Author {
                    id: ada.id.clone(),
                    name: "Ada".into(),
                },
                body: "after restart".into(),
                client_id: Some("c1".into()),
            })
            .await
            .unwrap();
        assert!(
            !next.fresh,
            "a client id used before the restart is still known"
        );
        // A client that saw m120 before it was deleted is told; one that did not never hears of it.
        let up = store.since("general", 120, 1).await.unwrap();
        assert_eq!(up.removed, [deleted.seq]);
        assert!(up.messages.is_empty());
        let up = store.since("general", 118, 1).await.unwrap();
        assert!(up.removed.is_empty());
        assert_eq!(up.messages, vec![sent[118].clone()]);
    }
}
