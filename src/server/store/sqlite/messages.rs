//! Messages: posting (in batches), replies in threads, edits, deletions and reactions, each
//! taking the next number of its conversation's change sequence inside its transaction.

use super::{
    db_error, first, limit_of, message_from_row, to_i64, to_u64, SqliteStore, CHUNK_ROWS,
    SELECT_CONVERSATIONS, SELECT_MESSAGES,
};
use crate::error::AppError;
use crate::protocol::{
    Author, ConversationId, ConversationInfo, ConversationKind, Message, MessageId, Reaction,
    UserId, MAX_REACTIONS_PER_MESSAGE, MAX_REACTORS_SHOWN, MEMBERS_SHOWN,
};
use crate::server::store::batch::{self, Batch, MemberKey};
use crate::server::store::{Appended, Changes, Conversations, Messages, NewMessage, Window};
use async_trait::async_trait;
use chrono::Utc;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use std::collections::{HashMap, HashSet};

impl SqliteStore {
    /// A conversation's latest change number, read on a reader connection.
    async fn last_change(&self, id: ConversationId) -> Result<u64, AppError> {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_change FROM conversations WHERE id = ?")
                .bind(to_i64(id.0))
                .fetch_all(&self.pool)
                .await
                .map(first)
                .map_err(db_error)?;
        last.map(to_u64).ok_or(AppError::NoSuchConversation)
    }

    /// The message with this id, read inside `tx`.
    async fn message_in(
        tx: &mut Transaction<'_, Sqlite>,
        id: &MessageId,
    ) -> Result<Option<Message>, AppError> {
        let sql = format!("{SELECT_MESSAGES} WHERE m.id = ?");
        let row = sqlx::query(&sql)
            .bind(&id.0)
            .fetch_all(&mut **tx)
            .await
            .map(first)
            .map_err(db_error)?;
        row.as_ref().map(message_from_row).transpose()
    }

    /// The live message with this id, read inside `tx`; [`AppError::NoSuchMessage`] if it
    /// does not exist or was deleted.
    async fn live_in(
        tx: &mut Transaction<'_, Sqlite>,
        id: &MessageId,
    ) -> Result<Message, AppError> {
        match Self::message_in(tx, id).await? {
            Some(message) if !message.deleted => Ok(message),
            _ => Err(AppError::NoSuchMessage),
        }
    }

    /// Messages already stored under these (author, client id) pairs, read inside `tx`.
    async fn sent_before(
        tx: &mut Transaction<'_, Sqlite>,
        pairs: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), Message>, AppError> {
        let mut stored = HashMap::new();
        for chunk in pairs.chunks(CHUNK_ROWS) {
            // A join against the pairs, not `IN (VALUES …)`: that form scans the whole table,
            // this one probes the unique index once per pair.
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT m.conversation_id, m.seq, m.change, m.id, m.author_id, m.author_name,
                 m.body, m.sent_at, m.client_id, m.deleted, m.edited_at, m.reactions,
                 m.thread_id, m.reply_count, m.last_reply_at, m.mentions, m.mentions_all FROM (",
            );
            query.push_values(chunk, |mut row, (author, id)| {
                row.push_bind(*author).push_bind(*id);
            });
            query
                .push(") v JOIN messages m ON m.author_id = v.column1 AND m.client_id = v.column2");
            for row in query.build().fetch_all(&mut **tx).await.map_err(db_error)? {
                let message = message_from_row(&row)?;
                let id = message.client_id.clone().unwrap_or_default();
                stored.insert((message.author.id.0.clone(), id), message);
            }
        }
        Ok(stored)
    }

    /// Inserts numbered messages (and their mentions) inside `tx`.
    async fn insert_messages(
        tx: &mut Transaction<'_, Sqlite>,
        rows: &[Message],
    ) -> Result<(), AppError> {
        for chunk in rows.chunks(CHUNK_ROWS / 2) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO messages (conversation_id, seq, change, id, author_id, author_name,
                 body, sent_at, client_id, mentions, mentions_all) ",
            );
            insert.push_values(chunk, |mut row, m| {
                row.push_bind(to_i64(m.conversation.0))
                    .push_bind(to_i64(m.seq))
                    .push_bind(to_i64(m.change))
                    .push_bind(m.id.0.as_str())
                    .push_bind(m.author.id.0.as_str())
                    .push_bind(m.author.name.as_str())
                    .push_bind(m.body.as_str())
                    .push_bind(m.sent_at)
                    .push_bind(m.client_id.as_deref())
                    .push_bind(mentions_json(&m.mentions))
                    .push_bind(i64::from(m.mentions_all));
            });
            insert.build().execute(&mut **tx).await.map_err(db_error)?;
        }
        Self::insert_mentions(tx, rows).await
    }

    /// Records who these messages mention, inside `tx`.
    async fn insert_mentions(
        tx: &mut Transaction<'_, Sqlite>,
        rows: &[Message],
    ) -> Result<(), AppError> {
        let mentioned: Vec<(&Message, &UserId)> = rows
            .iter()
            .flat_map(|m| m.mentions.iter().map(move |user| (m, user)))
            .collect();
        for chunk in mentioned.chunks(CHUNK_ROWS) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO mentions (user_id, conversation_id, seq) ",
            );
            insert.push_values(chunk, |mut row, (m, user)| {
                row.push_bind(user.0.as_str())
                    .push_bind(to_i64(m.conversation.0))
                    .push_bind(to_i64(m.seq));
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert.build().execute(&mut **tx).await.map_err(db_error)?;
        }
        Ok(())
    }

    /// Which of these memberships are active, read inside `tx`: one query per chunk, as
    /// `sent_before` (an index probe per pair).
    async fn active_members(
        tx: &mut Transaction<'_, Sqlite>,
        asked: &[MemberKey],
    ) -> Result<HashSet<MemberKey>, AppError> {
        let mut found = HashSet::new();
        for chunk in asked.chunks(CHUNK_ROWS) {
            let mut query =
                QueryBuilder::<Sqlite>::new("SELECT m.conversation_id, m.user_id FROM (");
            query.push_values(chunk, |mut row, (conversation, user)| {
                row.push_bind(to_i64(conversation.0))
                    .push_bind(user.0.as_str());
            });
            query.push(
                ") v JOIN members m ON m.conversation_id = v.column1 AND m.user_id = v.column2
                 AND m.active = 1",
            );
            let rows: Vec<(i64, String)> = query
                .build_query_as()
                .fetch_all(&mut **tx)
                .await
                .map_err(db_error)?;
            found.extend(
                rows.into_iter()
                    .map(|(c, u)| (ConversationId(to_u64(c)), UserId(u))),
            );
        }
        Ok(found)
    }

    /// Stores a batch inside `tx` (prepared by [`Batch`]): looks up the client ids sent
    /// before and the memberships it depends on, numbers its joins and messages per
    /// conversation and inserts them all.
    async fn write_batch(
        tx: &mut Transaction<'_, Sqlite>,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<Appended, AppError>>, AppError> {
        let stored = Self::sent_before(tx, &batch::client_ids(batch)).await?;
        let mut prepared = Batch::new(batch, stored);
        let members = Self::active_members(tx, &prepared.memberships_asked()).await?;
        prepared.admit(members);
        // Each conversation's first new number, taken in one statement per conversation.
        let mut next: HashMap<ConversationId, u64> = HashMap::new();
        for (conversation, count) in prepared.counts() {
            if let Some(last) = Self::take_changes(tx, conversation, count).await? {
                next.insert(conversation, last + 1 - count);
            }
        }
        let now = Utc::now();
        let numbered = prepared.number(next, now);
        let reads = Self::insert_members(tx, &numbered.joins, now).await?;
        Self::insert_messages(tx, &numbered.rows).await?;
        Ok(numbered.answers(&reads))
    }
}

pub(in crate::server::store) fn mentions_json(mentions: &[UserId]) -> Option<String> {
    (!mentions.is_empty()).then(|| serde_json::to_string(mentions).expect("ids serialize"))
}

/// The summary a message shows of its reaction rows (emoji in the order first used).
pub(in crate::server::store) fn summarize(rows: &[(String, String, String)]) -> Vec<Reaction> {
    let mut out: Vec<Reaction> = Vec::new();
    for (emoji, user, name) in rows {
        let index = match out.iter().position(|r| &r.emoji == emoji) {
            Some(index) => index,
            None => {
                out.push(Reaction {
                    emoji: emoji.clone(),
                    count: 0,
                    users: Vec::new(),
                });
                out.len() - 1
            }
        };
        let reaction = &mut out[index];
        reaction.count += 1;
        if reaction.users.len() < MAX_REACTORS_SHOWN {
            reaction.users.push(Author {
                id: UserId(user.clone()),
                name: name.clone(),
            });
        }
    }
    out
}

#[async_trait]
impl Messages for SqliteStore {
    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, AppError>> {
        let count = batch.len();
        let failed = |e: AppError| (0..count).map(|_| Err(e.clone())).collect();
        let _turn = self.writer.lock().await;
        let mut tx = match self.writes.begin().await {
            Ok(tx) => tx,
            Err(e) => return failed(db_error(e)),
        };
        let results = match Self::write_batch(&mut tx, &batch).await {
            Ok(results) => results,
            Err(e) => return failed(e),
        };
        if let Err(e) = tx.commit().await {
            return failed(db_error(e));
        }
        results
    }

    async fn reply(&self, parent: &MessageId, new: NewMessage) -> Result<Appended, AppError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.writes.begin().await.map_err(db_error)?;
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
        let mut parent_message = Self::live_in(&mut tx, parent).await?;
        let thread = match parent_message.thread.as_ref() {
            Some(thread) => thread.conversation,
            None => {
                let kind: Option<String> =
                    sqlx::query_scalar("SELECT kind FROM conversations WHERE id = ?")
                        .bind(to_i64(parent_message.conversation.0))
                        .fetch_all(&mut *tx)
                        .await
                        .map(first)
                        .map_err(db_error)?;
                if kind.as_deref() == Some(ConversationKind::Thread.as_str()) {
                    return Err(AppError::NestedThread);
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO conversations (kind, parent_conversation, parent_message,
                     created_at, last_change) VALUES ('thread', ?, ?, ?, 0) RETURNING id",
                )
                .bind(to_i64(parent_message.conversation.0))
                .bind(&parent.0)
                .bind(Utc::now())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
                ConversationId(to_u64(id))
            }
        };
        let seq = Self::take_changes(&mut tx, thread, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        let now = Utc::now().max(parent_message.sent_at);
        let message = batch::fresh_message(&new, thread, seq, now);
        Self::insert_messages(&mut tx, std::slice::from_ref(&message)).await?;
        let change = Self::take_changes(&mut tx, parent_message.conversation, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        sqlx::query(
            "UPDATE messages SET thread_id = ?, reply_count = reply_count + 1, last_reply_at = ?,
             change = ? WHERE id = ?",
        )
        .bind(to_i64(thread.0))
        .bind(now)
        .bind(to_i64(change))
        .bind(&parent.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        parent_message = Self::live_in(&mut tx, parent).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Appended {
            message,
            fresh: true,
            parent: Some(parent_message),
            joined: None,
        })
    }

    async fn thread_of(&self, parent: &MessageId) -> Result<Option<ConversationInfo>, AppError> {
        let sql = format!("{SELECT_CONVERSATIONS} WHERE c.parent_message = ?");
        let row = sqlx::query(&sql)
            .bind(&parent.0)
            .fetch_all(&self.pool)
            .await
            .map(first)
            .map_err(db_error)?;
        row.as_ref().map(super::conversation_from_row).transpose()
    }

    async fn message(&self, id: &MessageId) -> Result<Option<Message>, AppError> {
        let sql = format!("{SELECT_MESSAGES} WHERE m.id = ?");
        let row = sqlx::query(&sql)
            .bind(&id.0)
            .fetch_all(&self.pool)
            .await
            .map(first)
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
            "{SELECT_MESSAGES} WHERE m.conversation_id = ? AND m.deleted = 0 AND m.seq < ?
             ORDER BY m.seq DESC LIMIT ?"
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
        let last = self.last_change(id).await?;
        if after_change > last {
            return Ok(None); // numbers this conversation never gave out
        }
        let sql = format!(
            "{SELECT_MESSAGES} WHERE m.conversation_id = ? AND m.change > ? AND m.change <= ?
             ORDER BY m.change LIMIT ?"
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
        let moved: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM members WHERE conversation_id = ? AND change > ? AND change <= ?
             LIMIT 1",
        )
        .bind(to_i64(id.0))
        .bind(to_i64(after_change))
        .bind(to_i64(upto))
        .fetch_all(&self.pool)
        .await
        .map(first)
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
        let _turn = self.writer.lock().await;
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        let message = Self::live_in(&mut tx, id).await?;
        let change = Self::take_changes(&mut tx, message.conversation, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        sqlx::query(
            "UPDATE messages SET body = ?, edited_at = ?, change = ?, mentions = ?,
             mentions_all = ? WHERE id = ?",
        )
        .bind(&body)
        .bind(Utc::now())
        .bind(to_i64(change))
        .bind(mentions_json(&mentions))
        .bind(i64::from(mentions_all))
        .bind(&id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM mentions WHERE conversation_id = ? AND seq = ?")
            .bind(to_i64(message.conversation.0))
            .bind(to_i64(message.seq))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let edited = Self::live_in(&mut tx, id).await?;
        Self::insert_mentions(&mut tx, std::slice::from_ref(&edited)).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(edited)
    }

    async fn delete(&self, id: &MessageId) -> Result<Message, AppError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        let message = Self::live_in(&mut tx, id).await?;
        let change = Self::take_changes(&mut tx, message.conversation, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        sqlx::query(
            "UPDATE messages SET deleted = 1, body = '', reactions = NULL, mentions = NULL,
             mentions_all = 0, change = ? WHERE id = ?",
        )
        .bind(to_i64(change))
        .bind(&id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM mentions WHERE conversation_id = ? AND seq = ?")
            .bind(to_i64(message.conversation.0))
            .bind(to_i64(message.seq))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM reactions WHERE message_id = ?")
            .bind(&id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let deleted = Self::message_in(&mut tx, id)
            .await?
            .ok_or(AppError::NoSuchMessage)?;
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }

    async fn react(
        &self,
        id: &MessageId,
        user: &Author,
        emoji: &str,
        on: bool,
    ) -> Result<Option<Message>, AppError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        let message = Self::live_in(&mut tx, id).await?;
        let changed = if on {
            let new_emoji = !message.reactions.iter().any(|r| r.emoji == emoji);
            if new_emoji && message.reactions.len() >= MAX_REACTIONS_PER_MESSAGE {
                return Err(AppError::TooManyReactions {
                    max: MAX_REACTIONS_PER_MESSAGE,
                });
            }
            sqlx::query(
                "INSERT INTO reactions (message_id, emoji, user_id, user_name, reacted_at)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&id.0)
            .bind(emoji)
            .bind(&user.id.0)
            .bind(&user.name)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected()
        } else {
            sqlx::query("DELETE FROM reactions WHERE message_id = ? AND emoji = ? AND user_id = ?")
                .bind(&id.0)
                .bind(emoji)
                .bind(&user.id.0)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected()
        };
        if changed == 0 {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT emoji, user_id, user_name FROM reactions WHERE message_id = ?
             ORDER BY reacted_at, emoji, user_id",
        )
        .bind(&id.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let rows: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.get("emoji"), r.get("user_id"), r.get("user_name")))
            .collect();
        let summary = summarize(&rows);
        let change = Self::take_changes(&mut tx, message.conversation, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        sqlx::query("UPDATE messages SET reactions = ?, change = ? WHERE id = ?")
            .bind(
                (!summary.is_empty()).then(|| serde_json::to_string(&summary).expect("serializes")),
            )
            .bind(to_i64(change))
            .bind(&id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let reacted = Self::live_in(&mut tx, id).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(reacted))
    }
}
