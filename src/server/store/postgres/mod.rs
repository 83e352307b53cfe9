//! The [`Store`] driver on PostgreSQL, for several nodes sharing one database. The schema is
//! `migrations-postgres/` (embedded; sqlx's migrator holds an advisory lock while it runs, so
//! nodes starting together apply it once). PostgreSQL is the source of truth for numbers:
//! each conversation's change numbers come from its row (`last_change`), taken inside the
//! writing transaction, and that row's lock is what makes writers of one conversation take
//! turns — there is no writer lock in the process. Transactions that lock several
//! conversations lock them in ascending id order, then the messages they touch, so that two
//! nodes never wait on each other in a circle. The aggregates live in their own files:
//! [`users`], [`conversations`], [`messages`].
//!
//! A lost database (refused or broken connections, an administrator's shutdown, no
//! connection within the acquire timeout) is [`AppError::Unavailable`]: nothing changed.

mod conversations;
mod messages;
mod users;

use super::sqlite::{to_i64, to_u64};
use super::user_cache::UserCache;
use super::{CacheLimits, MemoryUsage, Store};
use crate::error::AppError;
use crate::protocol::{
    Author, ConversationId, ConversationInfo, ConversationKind, Message, MessageId, Reaction,
    ThreadParent, ThreadSummary, UserId,
};
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::sync::Mutex;
use std::time::Duration;

/// How long a request waits for a pooled connection (or a new one) before the database counts
/// as unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a write transaction runs again after losing a race it cannot settle in place
/// (a deadlock PostgreSQL broke, or the same client id stored by another node meanwhile).
const ATTEMPTS: usize = 5;

/// Rows per multi-row statement (well under PostgreSQL's 65,535 parameters).
const CHUNK_ROWS: usize = 1000;

/// Selects messages (as `m`); add a `WHERE` on `m`.
const SELECT_MESSAGES: &str = "SELECT m.conversation_id, m.seq, m.change, m.id, m.author_id,
    m.author_name, m.body, m.sent_at, m.client_id, m.deleted, m.edited_at, m.reactions,
    m.thread_id, m.reply_count, m.last_reply_at, m.mentions, m.mentions_all FROM messages m";

/// Selects conversations (as `c`); add a `WHERE` on `c`.
const SELECT_CONVERSATIONS: &str = "SELECT c.id, c.kind, c.name, c.parent_conversation,
    c.parent_message, c.created_at FROM conversations c";

/// PostgreSQL, with the users seen lately cached in memory.
///
/// The cache is this node's: a name another node sets reaches it only once the entry is
/// evicted or [`PostgresStore::forget_user`] is called (cross-node invalidation is the bus's
/// job).
pub struct PostgresStore {
    pool: PgPool,
    users: Mutex<UserCache>,
    /// See [`Store::batch_linger`] (`postgres_batch_linger_ms`).
    linger: Duration,
    /// Commits wait for PostgreSQL's WAL flush (`postgres_full_sync`).
    full_sync: bool,
}

/// Whether the error means the database cannot be reached (rather than refusing a query).
fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Whether the transaction lost a race PostgreSQL settled by failing it (deadlock,
/// serialization failure): running it again is safe.
fn is_lost_race(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().is_some_and(|code| matches!(code.as_ref(), "40P01" | "40001")))
}

/// An unexpected database error as the caller sees it (logged here).
fn db_error(e: sqlx::Error) -> AppError {
    if is_unreachable(&e) {
        tracing::warn!(error = %e, "database unreachable");
        AppError::Unavailable
    } else {
        tracing::error!(error = %e, "database error");
        AppError::internal("database error")
    }
}

/// Why a write transaction stopped (it is rolled back).
#[derive(Debug)]
enum Fail {
    /// An answer for the caller (no such message, ...).
    App(AppError),
    /// The database failed or refused.
    Db(sqlx::Error),
    /// Another node stored one of the client ids between our look-up and our insert; running
    /// again finds its message.
    Raced,
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<AppError> for Fail {
    fn from(e: AppError) -> Self {
        Fail::App(e)
    }
}

impl Fail {
    /// Whether running the transaction again may succeed.
    fn retry(&self) -> bool {
        match self {
            Fail::Raced => true,
            Fail::Db(e) => is_lost_race(e),
            Fail::App(_) => false,
        }
    }

    fn into_app(self) -> AppError {
        match self {
            Fail::App(e) => e,
            Fail::Db(e) => db_error(e),
            Fail::Raced => AppError::internal("client id raced too often"),
        }
    }
}

/// The time as PostgreSQL keeps it (microseconds), so that what a write returns equals what
/// a read finds later.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

impl PostgresStore {
    /// Connects to the database at `url` with up to `pool_size` connections and brings its
    /// schema up to date. A database that does not answer within a few seconds is
    /// [`AppError::Unavailable`].
    pub async fn connect(url: &str, pool_size: u32, caches: CacheLimits) -> Result<Self, AppError> {
        let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(|e| {
            tracing::error!(error = %e, "bad database_url");
            AppError::internal("bad database_url")
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before each use: it was one more round trip per batch. A connection that
            // died (a database restart) fails its next query as `Unavailable` and is dropped.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        sqlx::migrate!("./migrations-postgres")
            .run(&pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => db_error(e),
                e => {
                    tracing::error!(error = %e, "database migration failed");
                    AppError::internal("database migration failed")
                }
            })?;
        Ok(PostgresStore {
            pool,
            users: Mutex::new(UserCache::new(caches.users)),
            linger: Duration::ZERO,
            full_sync: true,
        })
    }

    /// The same store, its write pipeline waiting up to `linger` for more posts before
    /// storing a small batch.
    pub fn with_batch_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The same store, its commits waiting for PostgreSQL's WAL flush or (`false`) not:
    /// then a commit survives a crash of this node, but a crash of PostgreSQL or of its
    /// machine may lose the last fraction of a second of them (`synchronous_commit = off`
    /// on Flack's transactions only).
    pub fn with_full_sync(mut self, full_sync: bool) -> Self {
        self.full_sync = full_sync;
        self
    }

    /// Begins a write transaction, with `postgres_full_sync`'s durability.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        if self.full_sync {
            self.pool.begin().await
        } else {
            self.pool
                .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                .await
        }
    }

    /// Forgets what this node cached about a user (another node renamed them, say): the next
    /// look-up reads the database.
    pub fn forget_user(&self, id: &UserId) {
        self.users.lock().expect("users lock").forget(id);
    }

    /// Closes every connection; from then on every call is [`AppError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Takes the conversation's next `count` change numbers inside `tx` (locking its row until
    /// the commit); returns the last, `None` if there is no such conversation.
    async fn take_changes(
        tx: &mut Transaction<'_, Postgres>,
        id: ConversationId,
        count: u64,
    ) -> Result<Option<u64>, sqlx::Error> {
        let last: Option<i64> = sqlx::query_scalar(
            "UPDATE conversations SET last_change = last_change + $1 WHERE id = $2
             RETURNING last_change",
        )
        .bind(to_i64(count))
        .bind(to_i64(id.0))
        .fetch_optional(&mut **tx)
        .await?;
        Ok(last.map(to_u64))
    }

    /// A direct conversation's members, by id (its title).
    async fn people(&self, id: ConversationId) -> Result<Vec<Author>, AppError> {
        let rows = sqlx::query(
            "SELECT m.user_id, COALESCE(u.name, m.user_name) AS name FROM members m
             LEFT JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = $1 ORDER BY m.user_id",
        )
        .bind(to_i64(id.0))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.iter().map(author_from_row).collect())
    }

    /// A conversation from its row, with its people if it is direct.
    async fn conversation_from_row(&self, row: &PgRow) -> Result<ConversationInfo, AppError> {
        let mut info = conversation_from_row(row)?;
        if info.kind == ConversationKind::Direct {
            info.people = self.people(info.id).await?;
        }
        Ok(info)
    }
}

impl Store for PostgresStore {
    fn memory_usage(&self) -> MemoryUsage {
        MemoryUsage {
            users: self.users.lock().expect("users lock").count(),
        }
    }

    fn batch_linger(&self) -> Duration {
        self.linger
    }
}

fn author_from_row(row: &PgRow) -> Author {
    Author {
        id: UserId(row.get("user_id")),
        name: row.get("name"),
    }
}

/// A conversation from a row of [`SELECT_CONVERSATIONS`] (without people).
fn conversation_from_row(row: &PgRow) -> Result<ConversationInfo, AppError> {
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
fn message_from_row(row: &PgRow) -> Result<Message, AppError> {
    let reactions: Option<String> = row.try_get("reactions").map_err(db_error)?;
    let mentions: Option<String> = row.try_get("mentions").map_err(db_error)?;
    let thread_id: Option<i64> = row.try_get("thread_id").map_err(db_error)?;
    let last_reply_at: Option<DateTime<Utc>> = row.try_get("last_reply_at").map_err(db_error)?;
    let replies: i64 = row.try_get("reply_count").map_err(db_error)?;
    let json = |e: serde_json::Error| {
        tracing::error!(error = %e, "bad JSON in a message row");
        AppError::internal("database error")
    };
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
        sent_at: row.try_get("sent_at").map_err(db_error)?,
        edited_at: row.try_get("edited_at").map_err(db_error)?,
        deleted: row.try_get("deleted").map_err(db_error)?,
        reactions: match reactions {
            Some(text) => serde_json::from_str::<Vec<Reaction>>(&text).map_err(json)?,
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
            Some(text) => serde_json::from_str::<Vec<UserId>>(&text).map_err(json)?,
            None => Vec::new(),
        },
        mentions_all: row.try_get("mentions_all").map_err(db_error)?,
        client_id: row.try_get("client_id").map_err(db_error)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::store::{contract, Admission, Conversations, Messages, NewMessage, Users};
    use crate::server::testing::Services;
    use std::time::Instant;

    async fn connect(url: &str) -> PostgresStore {
        PostgresStore::connect(url, 8, CacheLimits::default())
            .await
            .unwrap()
    }

    async fn fresh() -> (String, PostgresStore) {
        let url = Services::shared().fresh_database().await;
        let store = connect(&url).await;
        (url, store)
    }

    fn note(to: ConversationId, who: &Author, body: &str, client_id: Option<&str>) -> NewMessage {
        NewMessage {
            conversation: to,
            author: who.clone(),
            body: body.into(),
            client_id: client_id.map(str::to_string),
            mentions: vec![],
            mentions_all: false,
            admission: Admission::Unchecked,
        }
    }

    async fn someone(store: &PostgresStore) -> Author {
        let user = store
            .create_user(new_id(), Some("Ada".into()))
            .await
            .unwrap();
        Author {
            id: user.id,
            name: "Ada".into(),
        }
    }

    use crate::server::store::sqlite::new_id;

    #[tokio::test]
    async fn passes_the_contract() {
        let (_, store) = fresh().await;
        contract::run_all(&store).await;
    }

    /// `postgres_full_sync = false` reaches every kind of write transaction, and only them
    /// (`SET LOCAL`: a pooled connection goes back as it was); the store keeps its contract.
    #[tokio::test]
    async fn without_full_sync_commits_do_not_wait_for_the_disk() {
        async fn setting(tx: &mut Transaction<'_, Postgres>) -> String {
            sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&mut **tx)
                .await
                .unwrap()
        }
        let (url, durable) = fresh().await;
        let mut tx = durable.begin_write().await.unwrap();
        assert_eq!(setting(&mut tx).await, "on");
        tx.rollback().await.unwrap();
        let quick = connect(&url).await.with_full_sync(false);
        let mut tx = quick.begin_write().await.unwrap();
        assert_eq!(setting(&mut tx).await, "off");
        tx.commit().await.unwrap();
        let mut tx = quick.begin().await.unwrap();
        assert_eq!(setting(&mut tx).await, "off");
        tx.rollback().await.unwrap();
        let outside: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&quick.pool)
            .await
            .unwrap();
        assert_eq!(outside, "on");
        contract::run_all(&quick).await;
    }

    #[tokio::test]
    async fn two_nodes_never_share_a_number() {
        let (url, a) = fresh().await;
        let b = connect(&url).await;
        contract::two_handles_never_share_a_number(&a, &b).await;
    }

    #[tokio::test]
    async fn nodes_starting_together_migrate_once() {
        let url = Services::shared().fresh_database().await;
        let (a, b, c) = tokio::join!(connect(&url), connect(&url), connect(&url));
        let ada = someone(&a).await;
        let channel = b
            .create_channel("Together".into(), ConversationKind::Public, Some(&ada))
            .await
            .unwrap();
        assert_eq!(c.channel_named("together").await.unwrap(), Some(channel));
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&a.pool)
            .await
            .unwrap();
        let migrations = sqlx::migrate!("./migrations-postgres").iter().count();
        assert_eq!(applied as usize, migrations, "each migration applied once");
    }

    #[tokio::test]
    async fn everything_survives_a_restart() {
        let url = Services::shared().fresh_database().await;
        let (ada, channel, message) = {
            let store = connect(&url).await;
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
                .append(note(channel.id, &author, "kept", Some("c-1")))
                .await
                .unwrap()
                .message;
            store.close().await;
            (ada, channel, message)
        };
        let store = connect(&url).await;
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
        // The client id is remembered, and numbers continue where they stopped.
        let again = store
            .append(note(channel.id, &message.author, "kept", Some("c-1")))
            .await
            .unwrap();
        assert!(!again.fresh);
        assert_eq!(again.message, message);
        let next = store
            .append(note(channel.id, &message.author, "next", None))
            .await
            .unwrap();
        assert_eq!(next.message.seq, window.last_change + 1);
    }

    /// A bad message in a batch fails alone; the others are numbered without a gap.
    #[tokio::test]
    async fn a_bad_message_fails_alone_in_its_batch() {
        let (_, store) = fresh().await;
        let ada = someone(&store).await;
        let id = store
            .create_channel("Batch".into(), ConversationKind::Public, Some(&ada))
            .await
            .unwrap()
            .id;
        let start = store.recent(id, 1).await.unwrap().last_change;
        let results = store
            .append_batch(vec![
                note(id, &ada, "one", None),
                note(ConversationId(9_999_999), &ada, "lost", None),
                note(id, &ada, "two", Some("k")),
                note(ConversationId(9_999_999), &ada, "lost", Some("k2")),
            ])
            .await;
        assert_eq!(results[1], Err(AppError::NoSuchConversation));
        assert_eq!(results[3], Err(AppError::NoSuchConversation));
        let seqs: Vec<u64> = [&results[0], &results[2]]
            .iter()
            .map(|r| r.as_ref().unwrap().message.seq)
            .collect();
        assert_eq!(seqs, [start + 1, start + 2]);
        assert_eq!(store.recent(id, 10).await.unwrap().last_change, start + 2);
    }

    /// Two nodes receiving the same retried send at once store it once, and the one that
    /// lost the race answers with the other's message; no number is wasted.
    #[tokio::test]
    async fn a_client_id_raced_by_two_nodes_is_stored_once() {
        let (url, a) = fresh().await;
        let b = connect(&url).await;
        let ada = someone(&a).await;
        let id = a
            .create_channel("Race".into(), ConversationKind::Public, Some(&ada))
            .await
            .unwrap()
            .id;
        let start = a.recent(id, 1).await.unwrap().last_change;
        let rounds = 30;
        for round in 0..rounds {
            let client_id = format!("r-{round}");
            let (x, y) = tokio::join!(
                a.append(note(id, &ada, "same", Some(&client_id))),
                b.append_batch(vec![
                    note(id, &ada, "other", None),
                    note(id, &ada, "same", Some(&client_id)),
                ]),
            );
            let x = x.unwrap();
            let y = y[1].clone().unwrap();
            assert!(x.fresh != y.fresh, "exactly one stored it");
            assert_eq!(x.message, y.message);
        }
        let window = a.recent(id, 1000).await.unwrap();
        assert_eq!(window.messages.len(), rounds * 2);
        assert_eq!(window.last_change, start + 2 * rounds as u64);
        let seqs: Vec<u64> = window.messages.iter().map(|m| m.seq).collect();
        let want: Vec<u64> = (start + 1..=start + 2 * rounds as u64).collect();
        assert_eq!(seqs, want);
    }

    #[tokio::test]
    async fn a_database_nobody_answers_is_unavailable_quickly() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let began = Instant::now();
        let result = PostgresStore::connect(
            &format!("postgres://flack@127.0.0.1:{port}/flack"),
            2,
            CacheLimits::default(),
        )
        .await;
        assert!(matches!(result, Err(AppError::Unavailable)));
        assert!(began.elapsed() < ACQUIRE_TIMEOUT + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_closed_pool_is_unavailable() {
        let (_, store) = fresh().await;
        let ada = someone(&store).await;
        store.close().await;
        assert_eq!(
            store.create_user("t".into(), None).await,
            Err(AppError::Unavailable)
        );
        let results = store
            .append_batch(vec![note(ConversationId(1), &ada, "x", None)])
            .await;
        assert_eq!(results, vec![Err(AppError::Unavailable)]);
    }

    /// The database stops under a running store: writes are refused as unavailable within
    /// the acquire timeout (not hanging), nothing half-done stays, and once it is back the
    /// same store works again.
    #[tokio::test]
    async fn a_stopped_database_is_unavailable_then_back() {
        let services = Services::private();
        let url = services.fresh_database().await;
        let store = connect(&url).await;
        let ada = someone(&store).await;
        let id = store
            .create_channel("Outage".into(), ConversationKind::Public, Some(&ada))
            .await
            .unwrap()
            .id;
        let before = store.append(note(id, &ada, "before", None)).await.unwrap();
        services.stop_postgres();
        let began = Instant::now();
        let during = store.append(note(id, &ada, "during", Some("d-1"))).await;
        assert_eq!(during, Err(AppError::Unavailable));
        assert!(began.elapsed() < ACQUIRE_TIMEOUT + Duration::from_secs(3));
        assert_eq!(store.recent(id, 10).await, Err(AppError::Unavailable));
        services.start_postgres();
        let after = store
            .append(note(id, &ada, "during", Some("d-1")))
            .await
            .unwrap();
        assert!(after.fresh, "the refused send was not stored");
        assert_eq!(after.message.seq, before.message.seq + 1);
    }
}
