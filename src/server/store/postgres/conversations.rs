//! Conversations, their members and each member's read position.

use super::{db_error, now, Fail, PostgresStore, SELECT_CONVERSATIONS};
use crate::error::AppError;
use crate::protocol::{
    channel_key, Author, ConversationId, ConversationInfo, ConversationKind, ConversationSummary,
    UserId, MAX_UNREAD_COUNT,
};
use crate::server::store::batch::Join;
use crate::server::store::sqlite::conversations::direct_key;
use crate::server::store::sqlite::{limit_of, to_i64, to_u64};
use crate::server::store::{Conversations, MemberChange, Membership};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use std::collections::HashMap;

impl PostgresStore {
    /// Inserts a conversation and its first members inside `tx`; every member joins with
    /// change 1. `None` if a conversation with this `key` exists (the unique key decides,
    /// whichever node got there first).
    async fn insert_conversation(
        tx: &mut Transaction<'_, Postgres>,
        kind: ConversationKind,
        name: Option<&str>,
        key: &str,
        members: &[Author],
    ) -> Result<Option<(ConversationId, DateTime<Utc>)>, sqlx::Error> {
        let now = now();
        // Its first members join together, taking change 1 (if there are any).
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO conversations (kind, name, name_key, created_at, last_change)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name_key) DO NOTHING RETURNING id",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(key)
        .bind(now)
        .bind(i64::from(!members.is_empty()))
        .fetch_optional(&mut **tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        for member in members {
            sqlx::query(
                "INSERT INTO members (conversation_id, user_id, user_name, change, joined_at)
                 VALUES ($1, $2, $3, 1, $4)",
            )
            .bind(id)
            .bind(&member.id.0)
            .bind(&member.name)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(Some((ConversationId(to_u64(id)), now)))
    }

    /// The conversation row with this `name_key`.
    async fn conversation_keyed(&self, key: &str) -> Result<Option<ConversationInfo>, AppError> {
        let sql = format!("{SELECT_CONVERSATIONS} WHERE c.name_key = $1");
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => Ok(Some(self.conversation_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    /// Creates a conversation with this key and its first members; `None` if it exists.
    async fn create_keyed(
        &self,
        kind: ConversationKind,
        name: Option<&str>,
        key: &str,
        members: &[Author],
    ) -> Result<Option<(ConversationId, DateTime<Utc>)>, AppError> {
        let mut tx = self.begin().await.map_err(db_error)?;
        let made = Self::insert_conversation(&mut tx, kind, name, key, members)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(made)
    }

    /// The summaries of the rows of a member query, people filled in.
    async fn summaries(&self, rows: Vec<PgRow>) -> Result<Vec<ConversationSummary>, AppError> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let count = |column: &str| -> Result<u32, AppError> {
                let n: i64 = row.try_get(column).map_err(db_error)?;
                Ok(u32::try_from(n).unwrap_or(u32::MAX).min(MAX_UNREAD_COUNT))
            };
            out.push(ConversationSummary {
                conversation: self.conversation_from_row(&row).await?,
                last_seq: to_u64(row.try_get("last_seq").map_err(db_error)?),
                read_seq: to_u64(row.try_get("read_seq").map_err(db_error)?),
                unread: count("unread")?,
                mentions: count("mentioned")?.saturating_add(count("mentioned_all")?),
            });
        }
        Ok(out)
    }

    /// Joins inside `tx`: the conversation's row is locked first (its next number taken), so
    /// two nodes joining the same person take turns and the second finds them in.
    async fn try_join(
        tx: &mut Transaction<'_, Postgres>,
        id: ConversationId,
        user: &Author,
    ) -> Result<Option<MemberChange>, Fail> {
        let change = Self::take_changes(tx, id, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        let active: Option<bool> = sqlx::query_scalar(
            "SELECT active FROM members WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(to_i64(id.0))
        .bind(&user.id.0)
        .fetch_optional(&mut **tx)
        .await?;
        if active == Some(true) {
            return Ok(None); // rolled back: the number is not spent
        }
        let join = Join::numbered(id, user, change);
        let reads = Self::insert_members(tx, std::slice::from_ref(&join), now()).await?;
        Ok(Some(MemberChange {
            conversation: id,
            change,
            read_seq: reads[0],
        }))
    }

    /// Makes members inside `tx` (their conversations locked and numbered): each has read
    /// everything stored before they came. One statement for all of them. Returns where each
    /// one's reading starts, in the order given.
    pub(super) async fn insert_members(
        tx: &mut Transaction<'_, Postgres>,
        joins: &[Join<'_>],
        at: DateTime<Utc>,
    ) -> Result<Vec<u64>, Fail> {
        if joins.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "INSERT INTO members (conversation_id, user_id, user_name, change, read_seq, joined_at)
             SELECT v.c, v.u, v.n, v.change,
                COALESCE((SELECT MAX(seq) FROM messages WHERE conversation_id = v.c), 0), $5
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS v (c, u, n, change)
             ON CONFLICT (conversation_id, user_id) DO UPDATE SET active = TRUE,
                change = excluded.change, read_seq = excluded.read_seq,
                user_name = excluded.user_name, joined_at = excluded.joined_at
             RETURNING conversation_id, user_id, read_seq",
        )
        .bind(
            joins
                .iter()
                .map(|j| to_i64(j.conversation.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            joins
                .iter()
                .map(|j| j.author.id.0.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            joins
                .iter()
                .map(|j| j.author.name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(joins.iter().map(|j| to_i64(j.change)).collect::<Vec<_>>())
        .bind(at)
        .fetch_all(&mut **tx)
        .await?;
        // RETURNING keeps no promise of order: match the rows to the joins by key (a batch
        // joins each person to a conversation once).
        let reads: HashMap<(i64, &str), i64> = rows
            .iter()
            .map(|(c, u, read)| ((*c, u.as_str()), *read))
            .collect();
        Ok(joins
            .iter()
            .map(|j| {
                let key = (to_i64(j.conversation.0), j.author.id.0.as_str());
                reads.get(&key).copied().map_or(0, to_u64)
            })
            .collect())
    }

    /// Leaves inside `tx`, the conversation's row locked first as for a join.
    async fn try_leave(
        tx: &mut Transaction<'_, Postgres>,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<MemberChange>, Fail> {
        let Some(change) = Self::take_changes(tx, id, 1).await? else {
            return Ok(None); // no conversation, no member
        };
        let done = sqlx::query(
            "UPDATE members SET active = FALSE, change = $1
             WHERE conversation_id = $2 AND user_id = $3 AND active",
        )
        .bind(to_i64(change))
        .bind(to_i64(id.0))
        .bind(&user.0)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None); // not a member: rolled back, the number is not spent
        }
        Ok(Some(MemberChange {
            conversation: id,
            change,
            read_seq: 0,
        }))
    }
}

/// Selects a member's conversations with unread counts (as `c`, the member as `m`).
const SELECT_SUMMARIES: &str = "SELECT c.id, c.kind, c.name, c.parent_conversation,
    c.parent_message, c.created_at, m.read_seq,
    COALESCE((SELECT MAX(x.seq) FROM messages x WHERE x.conversation_id = c.id), 0) AS last_seq,
    COALESCE((SELECT x.sent_at FROM messages x WHERE x.conversation_id = c.id
        ORDER BY x.seq DESC LIMIT 1), c.created_at) AS active_at,
    (SELECT COUNT(*) FROM (SELECT 1 FROM messages x WHERE x.conversation_id = c.id
        AND x.seq > m.read_seq AND NOT x.deleted AND x.author_id != m.user_id
        LIMIT 999) u) AS unread,
    (SELECT COUNT(*) FROM (SELECT 1 FROM mentions n WHERE n.user_id = m.user_id
        AND n.conversation_id = c.id AND n.seq > m.read_seq LIMIT 999) u) AS mentioned,
    (SELECT COUNT(*) FROM (SELECT 1 FROM messages x WHERE x.conversation_id = c.id
        AND x.seq > m.read_seq AND x.mentions_all AND NOT x.deleted
        AND x.author_id != m.user_id LIMIT 999) u) AS mentioned_all
    FROM members m JOIN conversations c ON c.id = m.conversation_id";

// Counts stop at the most a badge shows: a newcomer to a busy channel costs 999 index
// entries, not one per message it ever had (every join reads this, in the write pipeline).
const _: () = assert!(
    MAX_UNREAD_COUNT == 999,
    "the LIMITs above are MAX_UNREAD_COUNT"
);

#[async_trait]
impl Conversations for PostgresStore {
    async fn create_channel(
        &self,
        name: String,
        kind: ConversationKind,
        creator: Option<&Author>,
    ) -> Result<ConversationInfo, AppError> {
        let key = channel_key(&name);
        let members: Vec<Author> = creator.into_iter().cloned().collect();
        match self.create_keyed(kind, Some(&name), &key, &members).await? {
            Some((id, created_at)) => Ok(ConversationInfo {
                id,
                kind,
                name: Some(name),
                people: Vec::new(),
                parent: None,
                created_at,
            }),
            None => {
                let existing = self.conversation_keyed(&key).await?;
                Err(AppError::ChannelTaken {
                    name: existing.and_then(|c| c.name).unwrap_or(name),
                })
            }
        }
    }

    async fn open_direct(&self, people: &[Author]) -> Result<(ConversationInfo, bool), AppError> {
        let key = direct_key(people);
        if let Some(found) = self.conversation_keyed(&key).await? {
            return Ok((found, false));
        }
        let mut unique: Vec<Author> = people.to_vec();
        unique.sort_by(|a, b| a.id.cmp(&b.id));
        unique.dedup_by(|a, b| a.id == b.id);
        match self
            .create_keyed(ConversationKind::Direct, None, &key, &unique)
            .await?
        {
            Some((id, created_at)) => Ok((
                ConversationInfo {
                    id,
                    kind: ConversationKind::Direct,
                    name: None,
                    people: unique,
                    parent: None,
                    created_at,
                },
                true,
            )),
            // Another node opened it meanwhile.
            None => self
                .conversation_keyed(&key)
                .await?
                .map(|found| (found, false))
                .ok_or_else(|| AppError::internal("direct conversation vanished")),
        }
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<ConversationInfo>, AppError> {
        let sql = format!("{SELECT_CONVERSATIONS} WHERE c.id = $1");
        let row = sqlx::query(&sql)
            .bind(to_i64(id.0))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        match row {
            Some(row) => Ok(Some(self.conversation_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    async fn channel_named(&self, name: &str) -> Result<Option<ConversationInfo>, AppError> {
        let key = channel_key(name);
        if key.starts_with("dm:") {
            return Ok(None);
        }
        self.conversation_keyed(&key).await
    }

    async fn channel_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConversationInfo>, AppError> {
        let sql = format!(
            "{SELECT_CONVERSATIONS} WHERE c.kind = 'public' AND c.name_key > $1
             ORDER BY c.name_key LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after.map(channel_key).unwrap_or_default())
            .bind(limit_of(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(super::conversation_from_row).collect()
    }

    async fn channel_count(&self) -> Result<usize, AppError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM conversations WHERE kind IN ('public', 'private')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn membership(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<Membership>, AppError> {
        let read: Option<i64> = sqlx::query_scalar(
            "SELECT read_seq FROM members WHERE conversation_id = $1 AND user_id = $2 AND active",
        )
        .bind(to_i64(id.0))
        .bind(&user.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(read.map(|read| Membership {
            read_seq: to_u64(read),
        }))
    }

    async fn members(&self, id: ConversationId, limit: usize) -> Result<Vec<Author>, AppError> {
        let rows = sqlx::query(
            "SELECT m.user_id, COALESCE(u.name, m.user_name) AS name FROM members m
             LEFT JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = $1 AND m.active ORDER BY m.joined_at, m.user_id LIMIT $2",
        )
        .bind(to_i64(id.0))
        .bind(limit_of(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.iter().map(super::author_from_row).collect())
    }

    async fn membership_count(&self, user: &UserId) -> Result<usize, AppError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE user_id = $1 AND active")
                .bind(&user.0)
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn join(
        &self,
        id: ConversationId,
        user: &Author,
    ) -> Result<Option<MemberChange>, AppError> {
        let mut tx = self.begin().await.map_err(db_error)?;
        let joined = Self::try_join(&mut tx, id, user)
            .await
            .map_err(Fail::into_app)?;
        if joined.is_some() {
            tx.commit().await.map_err(db_error)?;
        }
        Ok(joined)
    }

    async fn leave(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<MemberChange>, AppError> {
        let mut tx = self.begin().await.map_err(db_error)?;
        let left = Self::try_leave(&mut tx, id, user)
            .await
            .map_err(Fail::into_app)?;
        if left.is_some() {
            tx.commit().await.map_err(db_error)?;
        }
        Ok(left)
    }

    async fn conversations_of(&self, user: &UserId) -> Result<Vec<ConversationSummary>, AppError> {
        let sql = format!(
            "{SELECT_SUMMARIES} WHERE m.user_id = $1 AND m.active AND c.kind != 'thread'
             ORDER BY active_at DESC, c.id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(&user.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        self.summaries(rows).await
    }

    async fn memberships_of(&self, user: &UserId) -> Result<Vec<ConversationInfo>, AppError> {
        let sql = format!(
            "{SELECT_CONVERSATIONS} JOIN members m ON m.conversation_id = c.id
             WHERE m.user_id = $1 AND m.active AND c.kind != 'thread' ORDER BY c.id"
        );
        let rows = sqlx::query(&sql)
            .bind(&user.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.conversation_from_row(row).await?);
        }
        Ok(out)
    }

    async fn summary(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<ConversationSummary>, AppError> {
        let sql = format!("{SELECT_SUMMARIES} WHERE m.user_id = $1 AND m.active AND c.id = $2");
        let rows = sqlx::query(&sql)
            .bind(&user.0)
            .bind(to_i64(id.0))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(self.summaries(rows).await?.pop())
    }

    async fn mark_read(
        &self,
        id: ConversationId,
        user: &UserId,
        seq: u64,
    ) -> Result<bool, AppError> {
        let done = sqlx::query(
            "UPDATE members SET read_seq = LEAST($1, (SELECT last_change FROM conversations
                WHERE id = $2))
             WHERE conversation_id = $2 AND user_id = $3 AND active AND read_seq < $1",
        )
        .bind(to_i64(seq))
        .bind(to_i64(id.0))
        .bind(&user.0)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }
}
