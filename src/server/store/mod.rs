//! Where channels, users and messages live. [`Store`] is the contract; [`MemoryStore`] keeps
//! everything in memory, [`SqliteStore`] on disk with a hot window in memory. Every driver
//! runs the same [`contract`] suite, unchanged.

#[cfg(test)]
pub mod contract;
mod hot;
mod memory;
mod sqlite;
mod window_cache;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::error::AppError;
use crate::protocol::{Author, ChannelInfo, Message, MessageId, UserId, UserInfo};
use async_trait::async_trait;

/// What a reconnecting subscriber missed; see [`crate::protocol::ServerEvent::Subscribed`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatchUp {
    /// Messages after the client's last sequence number, oldest first.
    pub messages: Vec<Message>,
    /// Sequence numbers the client may still show whose messages were deleted.
    pub removed: Vec<u64>,
    /// The gap was wider than the store can replay: `messages` is the whole recent window.
    pub reset: bool,
}

/// The result of storing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message.
    pub message: Message,
    /// `false` when the author had already sent this `client_id`: `message` is the original,
    /// nothing new was stored.
    pub fresh: bool,
}

/// A message about to be stored; the store assigns id, sequence number and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The channel's name (any case).
    pub channel: String,
    /// Who sends it.
    pub author: Author,
    /// Already validated text.
    pub body: String,
    /// The sender's own id for it.
    pub client_id: Option<String>,
}

/// How much the in-memory caches in front of a durable store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Bytes of recent windows, over every channel.
    pub window_bytes: usize,
    /// Users.
    pub users: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            window_bytes: 32 * 1024 * 1024,
            users: 50_000,
        }
    }
}

/// What a store holds in memory now (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Channel windows held.
    pub windows: usize,
    /// About how many bytes they hold.
    pub window_bytes: usize,
    /// Users held.
    pub users: usize,
}

/// Channels a user visited lately, remembered per user (for the sidebar).
pub const RECENT_CHANNELS: usize = 50;

/// Storage for Flack's state. Inputs are already validated by the caller; the store enforces
/// uniqueness, ordering, ownership and the history window.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user whose secret token hashes to `token_hash`.
    async fn create_user(
        &self,
        token_hash: String,
        name: Option<String>,
    ) -> Result<UserInfo, AppError>;
    /// Stores a provisional user (known so far only by its token) once it chooses a name:
    /// `id` and `token_hash` as the identity middleware derived them. Choosing again (two
    /// requests racing) just sets the name.
    async fn store_user(
        &self,
        id: UserId,
        token_hash: String,
        name: String,
    ) -> Result<UserInfo, AppError>;
    /// The user holding the token with this hash.
    async fn user_by_token(&self, token_hash: &str) -> Result<Option<UserInfo>, AppError>;
    /// The user with this id.
    async fn user(&self, id: &UserId) -> Result<Option<UserInfo>, AppError>;
    /// Sets a user's display name.
    async fn set_display_name(&self, id: &UserId, name: String) -> Result<UserInfo, AppError>;

    /// What the store holds in memory now.
    fn memory_usage(&self) -> MemoryUsage;
    /// The server's secret (for signing tokens), created on first use and kept from then on.
    async fn secret(&self) -> Result<Vec<u8>, AppError>;
    /// Revokes a stored user's token ("Sign out"): it finds nobody from now on, and
    /// [`Store::token_revoked`] says so.
    async fn revoke_token(&self, id: &UserId, token_hash: &str) -> Result<(), AppError>;
    /// Whether the token with this hash was revoked.
    async fn token_revoked(&self, token_hash: &str) -> Result<bool, AppError>;

    /// Creates a channel; [`AppError::ChannelTaken`] if the name is taken in any case.
    async fn create_channel(&self, name: String) -> Result<ChannelInfo, AppError>;
    /// Up to `limit` channels whose names sort (case-insensitively) after `after`, in order.
    async fn channel_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ChannelInfo>, AppError>;
    /// How many channels exist.
    async fn channel_count(&self) -> Result<usize, AppError>;
    /// Notes that `user` opened `channel` (it exists); keeps the latest [`RECENT_CHANNELS`].
    async fn record_visit(&self, user: &UserId, channel: &str) -> Result<(), AppError>;
    /// The channels `user` opened lately, most recent first.
    async fn recent_channels(&self, user: &UserId) -> Result<Vec<ChannelInfo>, AppError>;
    /// The channel with this name in any case.
    async fn channel(&self, name: &str) -> Result<Option<ChannelInfo>, AppError>;

    /// Stores messages, each as its channel's next sequence number, all in one commit where
    /// the driver has commits; one result per input, in order. A message whose author already
    /// sent its `client_id` is not stored again: the original comes back with `fresh: false`.
    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, AppError>>;
    /// Stores one message (see [`Store::append_batch`]).
    async fn append(&self, message: NewMessage) -> Result<Appended, AppError> {
        self.append_batch(vec![message])
            .await
            .pop()
            .unwrap_or_else(|| Err(AppError::internal("store returned no result")))
    }
    /// The channel's most recent messages (at most `limit`), oldest first.
    async fn recent(&self, channel: &str, limit: usize) -> Result<Vec<Message>, AppError>;
    /// Up to `limit` messages older than `before_seq`, oldest first (for scrolling back).
    async fn before(
        &self,
        channel: &str,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>, AppError>;
    /// Up to `limit` live messages with `seq > after_seq`, oldest first; `None` when the store
    /// no longer holds everything after `after_seq` (the memory store past its window).
    async fn after(
        &self,
        channel: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<Vec<Message>>, AppError>;
    /// What a client that last saw `after_seq` in `channel` has missed. Deletions are reported
    /// for sequence numbers from `oldest_seq` (the oldest the client shows) to `after_seq`.
    async fn since(
        &self,
        channel: &str,
        after_seq: u64,
        oldest_seq: u64,
    ) -> Result<CatchUp, AppError>;
    /// Deletes a message if `by` wrote it; returns the deleted message.
    async fn delete(&self, id: &MessageId, by: &UserId) -> Result<Message, AppError>;
}
