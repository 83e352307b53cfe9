//! Messages: posting (in batches), replies in threads, edits, deletions and reactions, each
//! taking the next number of its conversation's change sequence inside its transaction.
//!
//! Lock order, the same in every transaction: conversation rows (ascending ids), then message
//! rows. A change to a message locks its conversation first and only then reads the message
//! again, so what it changes is what the last committed writer left.

use super::{
    db_error, message_from_row, now, Fail, PostgresStore, ATTEMPTS, CHUNK_ROWS,
    SELECT_CONVERSATIONS, SELECT_MESSAGES,
};
use crate::error::AppError;
use crate::protocol::{
    ConversationId, ConversationInfo, ConversationKind, Message, MessageId, UserId,
    MAX_REACTIONS_PER_MESSAGE, MEMBERS_SHOWN,
};
use crate::server::store::batch::{self, Batch, MemberKey};
use crate::server::store::sqlite::messages::{mentions_json, summarize};
use crate::server::store::sqlite::{limit_of, to_i64, to_u64};
use crate::server::store::{Appended, Changes, Conversations, Messages, NewMessage, Window};
use async_trait::async_trait;
use sqlx::{Postgres, Row, Transaction};
use std::collections::{HashMap, HashSet};

impl PostgresStore {
    /// Begins a write transaction on messages. Its statements are key look-ups and array
    /// inserts, so each is planned once per connection (a generic plan) instead of at every
    /// run: with the small arrays of a quiet node PostgreSQL judged a fresh plan cheaper each
    /// time, and planning took a tenth of its CPU. Same round trip as a plain BEGIN; with
    /// `postgres_full_sync` off, its commit does not wait for the WAL flush.
    pub(super) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let begin = if self.full_sync {
            "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"
        } else {
            "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan;
             SET LOCAL synchronous_commit = off"
        };
        self.pool.begin_with(begin).await
    }

    /// A conversation's latest change number.
    async fn last_change(&self, id: ConversationId) -> Result<u64, AppError> {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_change FROM conversations WHERE id = $1")
                .bind(to_i64(id.0))
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        last.map(to_u64).ok_or(AppError::NoSuchConversation)
    }

    /// The message with this id, read inside `tx`.
    async fn message_in(
        tx: &mut Transaction<'_, Postgres>,
        id: &MessageId,
    ) -> Result<Option<Message>, Fail> {
        let sql = format!("{SELECT_MESSAGES} WHERE m.id = $1");
        let row = sqlx::query(&sql)
            .bind(&id.0)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.as_ref().map(message_from_row).transpose()?)
    }

    /// The live message with this id, read inside `tx`; [`AppError::NoSuchMessage`] if it
    /// does not exist or was deleted.
    async fn live_in(tx: &mut Transaction<'_, Postgres>, id: &MessageId) -> Result<Message, Fail> {
        match Self::message_in(tx, id).await? {
            Some(message) if !message.deleted => Ok(message),
            _ => Err(AppError::NoSuchMessage.into()),
        }
    }

    /// Locks the conversation of the message with this id and takes its next number, then
    /// reads the message as the last writer left it: the live message and the number.
    async fn lock_live(
        tx: &mut Transaction<'_, Postgres>,
        id: &MessageId,
    ) -> Result<(Message, u64), Fail> {
        let conversation: Option<i64> =
            sqlx::query_scalar("SELECT conversation_id FROM messages WHERE id = $1")
                .bind(&id.0)
                .fetch_optional(&mut **tx)
                .await?;
        let conversation = ConversationId(to_u64(conversation.ok_or(AppError::NoSuchMessage)?));
        let change = Self::take_changes(tx, conversation, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        Ok((Self::live_in(tx, id).await?, change))
    }

    /// Messages already stored under these (author, client id) pairs, read inside `tx`.
    async fn sent_before(
        tx: &mut Transaction<'_, Postgres>,
        pairs: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), Message>, Fail> {
        let mut stored = HashMap::new();
        for chunk in pairs.chunks(CHUNK_ROWS) {
            let authors: Vec<&str> = chunk.iter().map(|(author, _)| *author).collect();
            let ids: Vec<&str> = chunk.iter().map(|(_, id)| *id).collect();
            // One unique-index probe per pair, whatever the statistics say: the plan made
            // while the table was young (a hash join over all of it) stayed cached in the
            // prepared statement, and cost a scan of every message per batch.
            let sql = format!(
                "SELECT m.* FROM UNNEST($1::text[], $2::text[]) AS v (author_id, client_id)
                 CROSS JOIN LATERAL ({SELECT_MESSAGES}
                    WHERE m.author_id = v.author_id AND m.client_id = v.client_id
                      AND m.client_id IS NOT NULL LIMIT 1) m"
            );
            let rows = sqlx::query(&sql)
                .bind(authors)
                .bind(ids)
                .fetch_all(&mut **tx)
                .await?;
            for row in rows {
                let message = message_from_row(&row)?;
                let id = message.client_id.clone().unwrap_or_default();
                stored.insert((message.author.id.0.clone(), id), message);
            }
        }
        Ok(stored)
    }

    /// Inserts numbered messages (and their mentions) inside `tx`. [`Fail::Raced`] if another
    /// transaction stored one of their client ids first (this one then runs again).
    async fn insert_messages(
        tx: &mut Transaction<'_, Postgres>,
        rows: &[Message],
    ) -> Result<(), Fail> {
        // In one order of client ids in every transaction: two that wait on each other's
        // uncommitted ids never wait in a circle.
        let mut sorted: Vec<&Message> = rows.iter().collect();
        sorted.sort_by(|a, b| (&a.author.id, &a.client_id).cmp(&(&b.author.id, &b.client_id)));
        for chunk in sorted.chunks(CHUNK_ROWS) {
            sqlx::query(
                "INSERT INTO messages (conversation_id, seq, change, id, author_id, author_name,
                 body, sent_at, client_id, mentions, mentions_all)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[],
                    $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::text[],
                    $10::text[], $11::boolean[])",
            )
            .bind(
                chunk
                    .iter()
                    .map(|m| to_i64(m.conversation.0))
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|m| to_i64(m.seq)).collect::<Vec<_>>())
            .bind(chunk.iter().map(|m| to_i64(m.change)).collect::<Vec<_>>())
            .bind(chunk.iter().map(|m| m.id.0.as_str()).collect::<Vec<_>>())
            .bind(
                chunk
                    .iter()
                    .map(|m| m.author.id.0.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                chunk
                    .iter()
                    .map(|m| m.author.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
            .bind(chunk.iter().map(|m| m.sent_at).collect::<Vec<_>>())
            .bind(
                chunk
                    .iter()
                    .map(|m| m.client_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                chunk
                    .iter()
                    .map(|m| mentions_json(&m.mentions))
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|m| m.mentions_all).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                if sent_meanwhile(&e) {
                    Fail::Raced
                } else {
                    Fail::Db(e)
                }
            })?;
        }
        Self::insert_mentions(tx, rows).await
    }

    /// Records who these messages mention, inside `tx`.
    async fn insert_mentions(
        tx: &mut Transaction<'_, Postgres>,
        rows: &[Message],
    ) -> Result<(), Fail> {
        let mentioned: Vec<(&Message, &UserId)> = rows
            .iter()
            .flat_map(|m| m.mentions.iter().map(move |user| (m, user)))
            .collect();
        for chunk in mentioned.chunks(CHUNK_ROWS) {
            sqlx::query(
                "INSERT INTO mentions (user_id, conversation_id, seq)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])
                 ON CONFLICT DO NOTHING",
            )
            .bind(
                chunk
                    .iter()
                    .map(|(_, user)| user.0.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                chunk
                    .iter()
                    .map(|(m, _)| to_i64(m.conversation.0))
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|(m, _)| to_i64(m.seq)).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Which of these memberships are active, read inside `tx`: one query for the batch.
    async fn active_members(
        tx: &mut Transaction<'_, Postgres>,
        asked: &[MemberKey],
    ) -> Result<HashSet<MemberKey>, Fail> {
        if asked.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<(i64, String)> = sqlx::query_as(
            // A key probe per post, as in `sent_before`: never a join over all members.
            "SELECT m.conversation_id, m.user_id FROM UNNEST($1::bigint[], $2::text[]) AS q(c, u)
             CROSS JOIN LATERAL (SELECT conversation_id, user_id FROM members
                WHERE conversation_id = q.c AND user_id = q.u AND active LIMIT 1) m",
        )
        .bind(asked.iter().map(|(c, _)| to_i64(c.0)).collect::<Vec<_>>())
        .bind(asked.iter().map(|(_, u)| u.0.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(c, u)| (ConversationId(to_u64(c)), UserId(u)))
            .collect())
    }

    /// Stores a batch inside `tx` (prepared by [`Batch`]): looks up the client ids sent
    /// before and the memberships it depends on, numbers its joins and messages per
    /// conversation (locking the conversations in ascending id order) and inserts them all.
    async fn write_batch(
        tx: &mut Transaction<'_, Postgres>,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<Appended, AppError>>, Fail> {
        let stored = Self::sent_before(tx, &batch::client_ids(batch)).await?;
        let mut prepared = Batch::new(batch, stored);
        let members = Self::active_members(tx, &prepared.memberships_asked()).await?;
        prepared.admit(members);
        let mut next: HashMap<ConversationId, u64> = HashMap::new();
        for (conversation, count) in prepared.counts() {
            // A conversation that does not exist fails its own messages only.
            if let Some(last) = Self::take_changes(tx, conversation, count).await? {
                next.insert(conversation, last + 1 - count);
            }
        }
        let now = now();
        let numbered = prepared.number(next, now);
        let reads = Self::insert_members(tx, &numbered.joins, now).await?;
        Self::insert_messages(tx, &numbered.rows).await?;
        Ok(numbered.answers(&reads))
    }

    /// One attempt at [`Messages::append_batch`]: one transaction.
    async fn try_append_batch(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<Appended, AppError>>, Fail> {
        let mut tx = self.begin_write().await?;
        let results = Self::write_batch(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(results)
    }

    /// One attempt at [`Messages::reply`]: one transaction.
    async fn try_reply(&self, parent: &MessageId, new: &NewMessage) -> Result<Appended, Fail> {
        let mut tx = self.begin_write().await?;
        if let Some(client_id) = &new.client_id {
            let pair = [(new.author.id.0.as_str(), client_id.as_str())];
            if let Some(message) = Self::sent_before(&mut tx, &pair)
                .await?
                .into_values()
                .next()
            {
                return Ok(Appended {
                    message,
                    fresh: false,
                    parent: None,
                    joined: None,
                });
            }
        }
        // The parent's conversation first (its number for the reply count), then the parent
        // as it is now, then the thread (created after it: a higher id).
        let (parent_message, change) = Self::lock_live(&mut tx, parent).await?;
        let thread = match parent_message.thread.as_ref() {
            Some(thread) => thread.conversation,
            None => {
                let kind: Option<String> =
                    sqlx::query_scalar("SELECT kind FROM conversations WHERE id = $1")
                        .bind(to_i64(parent_message.conversation.0))
                        .fetch_optional(&mut *tx)
                        .await?;
                if kind.as_deref() == Some(ConversationKind::Thread.as_str()) {
                    return Err(AppError::NestedThread.into());
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO conversations (kind, parent_conversation, parent_message,
                     created_at, last_change) VALUES ('thread', $1, $2, $3, 0) RETURNING id",
                )
                .bind(to_i64(parent_message.conversation.0))
                .bind(&parent.0)
                .bind(now())
                .fetch_one(&mut *tx)
                .await?;
                ConversationId(to_u64(id))
            }
        };
        let seq = Self::take_changes(&mut tx, thread, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        let now = now().max(parent_message.sent_at);
        let message = batch::fresh_message(new, thread, seq, now);
        Self::insert_messages(&mut tx, std::slice::from_ref(&message)).await?;
        sqlx::query(
            "UPDATE messages SET thread_id = $1, reply_count = reply_count + 1,
             last_reply_at = $2, change = $3 WHERE id = $4",
        )
        .bind(to_i64(thread.0))
        .bind(now)
        .bind(to_i64(change))
        .bind(&parent.0)
        .execute(&mut *tx)
        .await?;
        let parent_message = Self::live_in(&mut tx, parent).await?;
        tx.commit().await?;
        Ok(Appended {
            message,
            fresh: true,
            parent: Some(parent_message),
            joined: None,
        })
    }

    async fn try_edit(
        &self,
        id: &MessageId,
        body: &str,
        mentions: &[UserId],
        mentions_all: bool,
    ) -> Result<Message, Fail> {
        let mut tx = self.begin_write().await?;
        let (message, change) = Self::lock_live(&mut tx, id).await?;
        sqlx::query(
            "UPDATE messages SET body = $1, edited_at = $2, change = $3, mentions = $4,
             mentions_all = $5 WHERE id = $6",
        )
        .bind(body)
        .bind(now())
        .bind(to_i64(change))
        .bind(mentions_json(mentions))
        .bind(mentions_all)
        .bind(&id.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM mentions WHERE conversation_id = $1 AND seq = $2")
            .bind(to_i64(message.conversation.0))
            .bind(to_i64(message.seq))
            .execute(&mut *tx)
            .await?;
        let edited = Self::live_in(&mut tx, id).await?;
        Self::insert_mentions(&mut tx, std::slice::from_ref(&edited)).await?;
        tx.commit().await?;
        Ok(edited)
    }

    async fn try_delete(&self, id: &MessageId) -> Result<Message, Fail> {
        let mut tx = self.begin_write().await?;
        let (message, change) = Self::lock_live(&mut tx, id).await?;
        sqlx::query(
            "UPDATE messages SET deleted = TRUE, body = '', reactions = NULL, mentions = NULL,
             mentions_all = FALSE, change = $1 WHERE id = $2",
        )
        .bind(to_i64(change))
        .bind(&id.0)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM mentions WHERE conversation_id = $1 AND seq = $2")
            .bind(to_i64(message.conversation.0))
            .bind(to_i64(message.seq))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM reactions WHERE message_id = $1")
            .bind(&id.0)
            .execute(&mut *tx)
            .await?;
        let deleted = Self::message_in(&mut tx, id)
            .await?
            .ok_or(AppError::NoSuchMessage)?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn try_react(
        &self,
        id: &MessageId,
        user: &crate::protocol::Author,
        emoji: &str,
        on: bool,
    ) -> Result<Option<Message>, Fail> {
        let mut tx = self.begin_write().await?;
        // Nothing changed: the transaction rolls back and the number is not spent.
        let (message, change) = Self::lock_live(&mut tx, id).await?;
        let changed = if on {
            let new_emoji = !message.reactions.iter().any(|r| r.emoji == emoji);
            if new_emoji && message.reactions.len() >= MAX_REACTIONS_PER_MESSAGE {
                return Err(AppError::TooManyReactions {
                    max: MAX_REACTIONS_PER_MESSAGE,
                }
                .into());
            }
            sqlx::query(
                "INSERT INTO reactions (message_id, emoji, user_id, user_name, reacted_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&id.0)
            .bind(emoji)
            .bind(&user.id.0)
            .bind(&user.name)
            .bind(now())
            .execute(&mut *tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query(
                "DELETE FROM reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
            )
            .bind(&id.0)
            .bind(emoji)
            .bind(&user.id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        if changed == 0 {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT emoji, user_id, user_name FROM reactions WHERE message_id = $1
             ORDER BY reacted_at, emoji, user_id",
        )
        .bind(&id.0)
        .fetch_all(&mut *tx)
        .await?;
        let rows: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.get("emoji"), r.get("user_id"), r.get("user_name")))
            .collect();
        let summary = summarize(&rows);
        sqlx::query("UPDATE messages SET reactions = $1, change = $2 WHERE id = $3")
            .bind(
                (!summary.is_empty()).then(|| serde_json::to_string(&summary).expect("serializes")),
            )
            .bind(to_i64(change))
            .bind(&id.0)
            .execute(&mut *tx)
            .await?;
        let reacted = Self::live_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(reacted))
    }
}

/// Whether `e` is the unique index on (author, client id) refusing a row: another transaction
/// stored that client id after this one looked. A plain insert, not `ON CONFLICT DO NOTHING`:
/// the look-up inside the transaction makes the conflict rare, and a speculative insert
/// costs every row an extra index probe and WAL record.
fn sent_meanwhile(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505") && db.constraint() == Some("messages_sent_once"))
}

/// Runs a write transaction again while it loses races it may win next time (at most
/// [`ATTEMPTS`] times).
macro_rules! retrying {
    ($attempt:expr) => {{
        let mut tries = 1;
        loop {
            match $attempt.await {
                Err(fail) if fail.retry() && tries < ATTEMPTS => {
                    tracing::debug!(?fail, tries, "write lost a race; running it again");
                    tries += 1;
                }
                result => break result.map_err(Fail::into_app),
            }
        }
    }};
}

#[async_trait]
impl Messages for PostgresStore {
    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, AppError>> {
        match retrying!(self.try_append_batch(&batch)) {
            Ok(results) => results,
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn reply(&self, parent: &MessageId, new: NewMessage) -> Result<Appended, AppError> {
        retrying!(self.try_reply(parent, &new))
    }

    async fn thread_of(&self, parent: &MessageId) -> Result<Option<ConversationInfo>, AppError> {
        let sql = format!("{SELECT_CONVERSATIONS} WHERE c.parent_message = $1");
        let row = sqlx::query(&sql)
            .bind(&parent.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(super::conversation_from_row).transpose()
    }

    async fn message(&self, id: &MessageId) -> Result<Option<Message>, AppError> {
        let sql = format!("{SELECT_MESSAGES} WHERE m.id = $1");
        let row = sqlx::query(&sql)
            .bind(&id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(message_from_row).transpose()
    }

    async fn recent(&self, id: ConversationId, limit: usize) -> Result<Window, AppError> {
        self.before(id, u64::MAX, limit).await
    }

    async fn before(
        &self,
        id: ConversationId,
        before_seq: u64,
        limit: usize,
    ) -> Result<Window, AppError> {
        // The number first: a commit landing between the two reads makes it lower than the
        // messages show, which a resuming client only sees again, never misses.
        let last = self.last_change(id).await?;
        let sql = format!(
            "{SELECT_MESSAGES} WHERE m.conversation_id = $1 AND NOT m.deleted AND m.seq < $2
             ORDER BY m.seq DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(to_i64(id.0))
            .bind(to_i64(before_seq))
            .bind(limit_of(limit.saturating_add(1)))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_older = messages.len() > limit;
        messages.truncate(limit);
        messages.reverse();
        Ok(Window {
            messages,
            has_older,
            last_change: last,
        })
    }

    async fn changes(
        &self,
        id: ConversationId,
        after_change: u64,
        limit: usize,
    ) -> Result<Option<Changes>, AppError> {
        // Every number up to `last` belongs to a committed transaction: numbers are taken
        // under the conversation's row lock, held until the commit.
        let last = self.last_change(id).await?;
        if after_change > last {
            return Ok(None); // numbers this conversation never gave out
        }
        let sql = format!(
            "{SELECT_MESSAGES} WHERE m.conversation_id = $1 AND m.change > $2 AND m.change <= $3
             ORDER BY m.change LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(to_i64(id.0))
            .bind(to_i64(after_change))
            .bind(to_i64(last))
            .bind(limit_of(limit.saturating_add(1)))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        // A page that stops early brings the client to its last message's number only.
        let upto = match (more, messages.last()) {
            (true, Some(m)) => m.change,
            _ => last,
        };
        let moved: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM members WHERE conversation_id = $1 AND change > $2 AND change <= $3
             LIMIT 1",
        )
        .bind(to_i64(id.0))
        .bind(to_i64(after_change))
        .bind(to_i64(upto))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let members = match moved {
            Some(_) => Some(self.members(id, MEMBERS_SHOWN).await?),
            None => None,
        };
        Ok(Some(Changes {
            messages,
            members,
            last_change: upto,
            more,
        }))
    }

    async fn edit(
        &self,
        id: &MessageId,
        body: String,
        mentions: Vec<UserId>,
        mentions_all: bool,
    ) -> Result<Message, AppError> {
        retrying!(self.try_edit(id, &body, &mentions, mentions_all))
    }

    async fn delete(&self, id: &MessageId) -> Result<Message, AppError> {
        retrying!(self.try_delete(id))
    }

    async fn react(
        &self,
        id: &MessageId,
        user: &crate::protocol::Author,
        emoji: &str,
        on: bool,
    ) -> Result<Option<Message>, AppError> {
        retrying!(self.try_react(id, user, emoji, on))
    }
}
