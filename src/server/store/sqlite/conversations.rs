//! Conversations, their members and each member's read position.

use super::{db_error, first, limit_of, to_i64, to_u64, SqliteStore, SELECT_CONVERSATIONS};
use crate::error::AppError;
use crate::protocol::{
    channel_key, Author, ConversationId, ConversationInfo, ConversationKind, ConversationSummary,
    UserId, MAX_UNREAD_COUNT,
};
use crate::server::store::batch::Join;
use crate::server::store::{Conversations, MemberChange, Membership};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, Transaction};

/// The key a direct conversation of these people is found by: their sorted ids.
pub(in crate::server::store) fn direct_key(people: &[Author]) -> String {
    let mut ids: Vec<&str> = people.iter().map(|p| p.id.0.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    format!("dm:{}", ids.join(","))
}

impl SqliteStore {
    /// Inserts a conversation and its first members inside `tx`; every member joins with
    /// change 1.
    async fn insert_conversation(
        tx: &mut Transaction<'_, Sqlite>,
        kind: ConversationKind,
        name: Option<&str>,
        key: &str,
        members: &[Author],
    ) -> Result<(ConversationId, chrono::DateTime<Utc>), AppError> {
        let now = Utc::now();
        // Its first members join together, taking change 1 (if there are any).
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO conversations (kind, name, name_key, created_at, last_change)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(key)
        .bind(now)
        .bind(i64::from(!members.is_empty()))
        .fetch_one(&mut **tx)
        .await
        .map_err(db_error)?;
        for member in members {
            sqlx::query(
                "INSERT INTO members (conversation_id, user_id, user_name, change, joined_at)
                 VALUES (?, ?, ?, 1, ?)",
            )
            .bind(id)
            .bind(&member.id.0)
            .bind(&member.name)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        }
        Ok((ConversationId(to_u64(id)), now))
    }

    /// The conversation row with this `name_key`.
    async fn conversation_keyed(&self, key: &str) -> Result<Option<ConversationInfo>, AppError> {
        let sql = format!("{SELECT_CONVERSATIONS} WHERE c.name_key = ?");
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map(first)
            .map_err(db_error)?;
        match row {
            Some(row) => Ok(Some(self.conversation_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    /// The summaries of the rows of a member query, people filled in.
    async fn summaries(
        &self,
        rows: Vec<sqlx::sqlite::SqliteRow>,
    ) -> Result<Vec<ConversationSummary>, AppError> {
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

    /// Makes members inside `tx` (their conversations numbered): each has read everything
    /// stored before they came. Returns where each one's reading starts, in the order given.
    pub(super) async fn insert_members(
        tx: &mut Transaction<'_, Sqlite>,
        joins: &[Join<'_>],
        at: DateTime<Utc>,
    ) -> Result<Vec<u64>, AppError> {
        let mut reads = Vec::with_capacity(joins.len());
        for join in joins {
            let read: i64 = sqlx::query_scalar(
                "INSERT INTO members (conversation_id, user_id, user_name, change, read_seq,
                    joined_at)
                 VALUES (?1, ?2, ?3, ?4,
                    COALESCE((SELECT MAX(seq) FROM messages WHERE conversation_id = ?1), 0), ?5)
                 ON CONFLICT (conversation_id, user_id) DO UPDATE SET active = 1,
                    change = excluded.change, read_seq = excluded.read_seq,
                    user_name = excluded.user_name, joined_at = excluded.joined_at
                 RETURNING read_seq",
            )
            .bind(to_i64(join.conversation.0))
            .bind(&join.author.id.0)
            .bind(&join.author.name)
            .bind(to_i64(join.change))
            .bind(at)
            .fetch_one(&mut **tx)
            .await
            .map_err(db_error)?;
            reads.push(to_u64(read));
        }
        Ok(reads)
    }
}

/// Selects a member's conversations with unread counts (as `c`, the member as `m`).
const SELECT_SUMMARIES: &str = "SELECT c.id, c.kind, c.name, c.parent_conversation,
    c.parent_message, c.created_at, m.read_seq,
    COALESCE((SELECT MAX(x.seq) FROM messages x WHERE x.conversation_id = c.id), 0) AS last_seq,
    COALESCE((SELECT x.sent_at FROM messages x WHERE x.conversation_id = c.id
        ORDER BY x.seq DESC LIMIT 1), c.created_at) AS active_at,
    (SELECT COUNT(*) FROM (SELECT 1 FROM messages x WHERE x.conversation_id = c.id
        AND x.seq > m.read_seq AND x.deleted = 0 AND x.author_id != m.user_id
        LIMIT 999) u) AS unread,
    (SELECT COUNT(*) FROM (SELECT 1 FROM mentions n WHERE n.user_id = m.user_id
        AND n.conversation_id = c.id AND n.seq > m.read_seq LIMIT 999) u) AS mentioned,
    (SELECT COUNT(*) FROM (SELECT 1 FROM messages x WHERE x.conversation_id = c.id
        AND x.seq > m.read_seq AND x.mentions_all = 1 AND x.deleted = 0
        AND x.author_id != m.user_id LIMIT 999) u) AS mentioned_all
    FROM members m JOIN conversations c ON c.id = m.conversation_id";

// Counts stop at the most a badge shows: a newcomer to a busy channel costs 999 index
// entries, not one per message it ever had (every join reads this, in the write pipeline).
const _: () = assert!(
    MAX_UNREAD_COUNT == 999,
    "the LIMITs above are MAX_UNREAD_COUNT"
);

#[async_trait]
impl Conversations for SqliteStore {
    async fn create_channel(
        &self,
        name: String,
        kind: ConversationKind,
        creator: Option<&Author>,
    ) -> Result<ConversationInfo, AppError> {
        let key = channel_key(&name);
        let _turn = self.writer.lock().await;
        if let Some(existing) = self.conversation_keyed(&key).await? {
            return Err(AppError::ChannelTaken {
                name: existing.name.unwrap_or_default(),
            });
        }
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        let members: Vec<Author> = creator.into_iter().cloned().collect();
        let (id, created_at) =
            Self::insert_conversation(&mut tx, kind, Some(&name), &key, &members).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(ConversationInfo {
            id,
            kind,
            name: Some(name),
            people: Vec::new(),
            parent: None,
            created_at,
        })
    }

    async fn open_direct(&self, people: &[Author]) -> Result<(ConversationInfo, bool), AppError> {
        let key = direct_key(people);
        if let Some(found) = self.conversation_keyed(&key).await? {
            return Ok((found, false));
        }
        let _turn = self.writer.lock().await;
        if let Some(found) = self.conversation_keyed(&key).await? {
            return Ok((found, false));
        }
        let mut unique: Vec<Author> = people.to_vec();
        unique.sort_by(|a, b| a.id.cmp(&b.id));
        unique.dedup_by(|a, b| a.id == b.id);
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        let (id, created_at) =
            Self::insert_conversation(&mut tx, ConversationKind::Direct, None, &key, &unique)
                .await?;
        tx.commit().await.map_err(db_error)?;
        Ok((
            ConversationInfo {
                id,
                kind: ConversationKind::Direct,
                name: None,
                people: unique,
                parent: None,
                created_at,
            },
            true,
        ))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<ConversationInfo>, AppError> {
        let sql = format!("{SELECT_CONVERSATIONS} WHERE c.id = ?");
        let row = sqlx::query(&sql)
            .bind(to_i64(id.0))
            .fetch_all(&self.pool)
            .await
            .map(first)
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
            "{SELECT_CONVERSATIONS} WHERE c.kind = 'public' AND c.name_key > ?
             ORDER BY c.name_key LIMIT ?"
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
        .fetch_all(&self.pool)
        .await
        .map(|rows| first(rows).unwrap_or(0))
        .map_err(db_error)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn membership(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<Membership>, AppError> {
        let read: Option<i64> = sqlx::query_scalar(
            "SELECT read_seq FROM members WHERE conversation_id = ? AND user_id = ? AND active = 1",
        )
        .bind(to_i64(id.0))
        .bind(&user.0)
        .fetch_all(&self.pool)
        .await
        .map(first)
        .map_err(db_error)?;
        Ok(read.map(|read| Membership {
            read_seq: to_u64(read),
        }))
    }

    async fn members(&self, id: ConversationId, limit: usize) -> Result<Vec<Author>, AppError> {
        let rows = sqlx::query(
            "SELECT m.user_id, COALESCE(u.name, m.user_name) AS name FROM members m
             LEFT JOIN users u ON u.id = m.user_id
             WHERE m.conversation_id = ? AND m.active = 1 ORDER BY m.joined_at, m.user_id LIMIT ?",
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
            sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE user_id = ? AND active = 1")
                .bind(&user.0)
                .fetch_all(&self.pool)
                .await
                .map(|rows| first(rows).unwrap_or(0))
                .map_err(db_error)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn join(
        &self,
        id: ConversationId,
        user: &Author,
    ) -> Result<Option<MemberChange>, AppError> {
        let _turn = self.writer.lock().await;
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        let active: Option<i64> = sqlx::query_scalar(
            "SELECT active FROM members WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(to_i64(id.0))
        .bind(&user.id.0)
        .fetch_all(&mut *tx)
        .await
        .map(first)
        .map_err(db_error)?;
        if active == Some(1) {
            return Ok(None);
        }
        let change = Self::take_changes(&mut tx, id, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        let join = Join::numbered(id, user, change);
        let reads = Self::insert_members(&mut tx, std::slice::from_ref(&join), Utc::now()).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(MemberChange {
            conversation: id,
            change,
            read_seq: reads[0],
        }))
    }

    async fn leave(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<MemberChange>, AppError> {
        let _turn = self.writer.lock().await;
        if self.membership(id, user).await?.is_none() {
            return Ok(None);
        }
        let mut tx = self.writes.begin().await.map_err(db_error)?;
        let change = Self::take_changes(&mut tx, id, 1)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        sqlx::query(
            "UPDATE members SET active = 0, change = ? WHERE conversation_id = ? AND user_id = ?",
        )
        .bind(to_i64(change))
        .bind(to_i64(id.0))
        .bind(&user.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(MemberChange {
            conversation: id,
            change,
            read_seq: 0,
        }))
    }

    async fn conversations_of(&self, user: &UserId) -> Result<Vec<ConversationSummary>, AppError> {
        let sql = format!(
            "{SELECT_SUMMARIES} WHERE m.user_id = ? AND m.active = 1 AND c.kind != 'thread'
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
             WHERE m.user_id = ? AND m.active = 1 AND c.kind != 'thread' ORDER BY c.id"
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
        let sql = format!("{SELECT_SUMMARIES} WHERE m.user_id = ? AND m.active = 1 AND c.id = ?");
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
        let _turn = self.writer.lock().await;
        let done = sqlx::query(
            "UPDATE members SET read_seq = MIN(?1, (SELECT last_change FROM conversations
                WHERE id = ?2))
             WHERE conversation_id = ?2 AND user_id = ?3 AND active = 1 AND read_seq < ?1",
        )
        .bind(to_i64(seq))
        .bind(to_i64(id.0))
        .bind(&user.0)
        .execute(&self.writes)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }
}
