//! Where users, conversations, messages and read positions live. The contract is split by
//! aggregate ([`Users`], [`Conversations`], [`Messages`]); [`Store`] is all of them.
//! The drivers: [`SqliteStore`] (on a file, or in memory for `store = "memory"`; one node) and
//! [`PostgresStore`] (`store = "postgres"`; several nodes sharing one database, numbers taken
//! under each conversation's row lock). Every driver runs the same [`contract`] suite,
//! unchanged.
//!
//! Drivers keep the database's own constraints (uniqueness, numbering, existence); who may do
//! what is decided before they are called, in [`crate::server::access`].

mod batch;
#[cfg(test)]
pub mod contract;
mod postgres;
mod sqlite;
mod user_cache;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::error::AppError;
use crate::protocol::{
    Author, ConversationId, ConversationInfo, ConversationKind, ConversationSummary, Message,
    MessageId, UserId, UserInfo,
};
use async_trait::async_trait;

/// The result of storing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message.
    pub message: Message,
    /// `false` when the author had already sent this `client_id`: `message` is the original,
    /// nothing new was stored.
    pub fresh: bool,
    /// For a reply: its parent as the reply left it (reply count, last reply time).
    pub parent: Option<Message>,
    /// The author's join of the conversation, stored with the message (see
    /// [`Admission::Joins`]); its number comes before the message's.
    pub joined: Option<MemberChange>,
}

/// A message about to be stored; the store assigns id, sequence number and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The conversation.
    pub conversation: ConversationId,
    /// Who sends it.
    pub author: Author,
    /// Already validated text.
    pub body: String,
    /// The sender's own id for it.
    pub client_id: Option<String>,
    /// Members it mentions (already resolved), and whether it mentions everyone.
    pub mentions: Vec<UserId>,
    /// Whether it mentions everyone.
    pub mentions_all: bool,
    /// What it needs of its author's membership when its batch commits.
    pub admission: Admission,
}

/// What a new message needs of its author's membership, checked in the transaction that
/// stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Nothing (the caller checked, or needs no member).
    Unchecked,
    /// Stored only if the author is a member of this conversation (the one that decides
    /// access): a leave committed meanwhile, on any node, refuses it (as
    /// [`AppError::NoSuchConversation`]).
    MemberOf(ConversationId),
    /// The author joins the message's conversation (a public channel) first, in the same
    /// transaction, unless a member already: one commit for both, and the join's change
    /// number comes just before the batch's messages ([`Appended::joined`]).
    Joins,
}

/// A conversation's recent messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    /// Live messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether live messages older than the first exist.
    pub has_older: bool,
    /// The conversation's latest change number when it was read.
    pub last_change: u64,
}

/// What changed in a conversation after a change number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    /// The current state of every message changed after it, in change order.
    pub messages: Vec<Message>,
    /// The members now, if membership changed after it.
    pub members: Option<Vec<Author>>,
    /// The change number these bring a client to: the conversation's latest, or with
    /// `more` the last of `messages`.
    pub last_change: u64,
    /// More changes follow (the page stopped at its limit).
    pub more: bool,
}

/// A join or leave, with the change number it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberChange {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its change number.
    pub change: u64,
    /// For a join, where the member's reading starts: the newest message stored before they
    /// came (what [`Store::summary`] then says of them). 0 for a leave.
    pub read_seq: u64,
}

/// A user's standing in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    /// The newest message they have read.
    pub read_seq: u64,
}

/// How much the in-memory caches in front of a durable store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Users.
    pub users: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits { users: 50_000 }
    }
}

/// What a store holds in memory now (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// Users held.
    pub users: usize,
}

/// People: identities, names, the server's secret and signed-out tokens.
#[async_trait]
pub trait Users: Send + Sync {
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
    /// Up to `limit` named users whose name starts with `prefix` (any case), by name.
    async fn users_named(&self, prefix: &str, limit: usize) -> Result<Vec<UserInfo>, AppError>;
    /// Sets a user's display name.
    async fn set_display_name(&self, id: &UserId, name: String) -> Result<UserInfo, AppError>;
    /// The server's secret (for signing tokens), created on first use and kept from then on.
    async fn secret(&self) -> Result<Vec<u8>, AppError>;
    /// Revokes a stored user's token ("Sign out"): it finds nobody from now on, and
    /// [`Users::token_revoked`] says so.
    async fn revoke_token(&self, id: &UserId, token_hash: &str) -> Result<(), AppError>;
    /// Whether the token with this hash was revoked.
    async fn token_revoked(&self, token_hash: &str) -> Result<bool, AppError>;
}

/// Conversations, their members and each member's read position.
#[async_trait]
pub trait Conversations: Send + Sync {
    /// Creates a channel (public or private) with its creator (if any) as first member;
    /// [`AppError::ChannelTaken`] if the name is taken in any case.
    async fn create_channel(
        &self,
        name: String,
        kind: ConversationKind,
        creator: Option<&Author>,
    ) -> Result<ConversationInfo, AppError>;
    /// The direct conversation of exactly these people (2 or more, distinct), created with
    /// all of them as members if it does not exist yet; `true` when it was created.
    async fn open_direct(&self, people: &[Author]) -> Result<(ConversationInfo, bool), AppError>;
    /// The conversation with this id.
    async fn conversation(&self, id: ConversationId) -> Result<Option<ConversationInfo>, AppError>;
    /// The channel with this name in any case.
    async fn channel_named(&self, name: &str) -> Result<Option<ConversationInfo>, AppError>;
    /// Up to `limit` public channels whose names sort (any case) after `after`, in order.
    async fn channel_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ConversationInfo>, AppError>;
    /// How many channels exist.
    async fn channel_count(&self) -> Result<usize, AppError>;
    /// The user's standing in the conversation, if they are a member.
    async fn membership(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<Membership>, AppError>;
    /// Up to `limit` members, in the order they joined.
    async fn members(&self, id: ConversationId, limit: usize) -> Result<Vec<Author>, AppError>;
    /// How many conversations the user is a member of.
    async fn membership_count(&self, user: &UserId) -> Result<usize, AppError>;
    /// Makes the user a member (read up to now); `None` if they were one already.
    async fn join(
        &self,
        id: ConversationId,
        user: &Author,
    ) -> Result<Option<MemberChange>, AppError>;
    /// Ends the user's membership; `None` if they were not a member.
    async fn leave(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<MemberChange>, AppError>;
    /// The conversations the user is a member of (threads excepted), with unread counts,
    /// the most recently active first.
    async fn conversations_of(&self, user: &UserId) -> Result<Vec<ConversationSummary>, AppError>;
    /// The conversations the user is a member of (threads excepted), without read positions
    /// or counts: who hears of their presence. Far cheaper than
    /// [`Conversations::conversations_of`], which counts unread messages in each.
    async fn memberships_of(&self, user: &UserId) -> Result<Vec<ConversationInfo>, AppError>;
    /// One conversation as [`Conversations::conversations_of`] lists it, for a member.
    async fn summary(
        &self,
        id: ConversationId,
        user: &UserId,
    ) -> Result<Option<ConversationSummary>, AppError>;
    /// Moves a member's read position forward to `seq` (never back); `true` if it moved.
    async fn mark_read(
        &self,
        id: ConversationId,
        user: &UserId,
        seq: u64,
    ) -> Result<bool, AppError>;
}

/// Messages, their edits, deletions, reactions and threads, each numbered by its
/// conversation's change sequence.
#[async_trait]
pub trait Messages: Send + Sync {
    /// Stores messages, each taking its conversation's next change number, all in one commit;
    /// one result per input, in order. A message whose author already sent its `client_id`
    /// is not stored again: the original comes back with `fresh: false`.
    async fn append_batch(&self, batch: Vec<NewMessage>) -> Vec<Result<Appended, AppError>>;
    /// Stores one message (see [`Messages::append_batch`]).
    async fn append(&self, message: NewMessage) -> Result<Appended, AppError> {
        self.append_batch(vec![message])
            .await
            .pop()
            .unwrap_or_else(|| Err(AppError::internal("store returned no result")))
    }
    /// Stores a reply to `parent` in its thread, creating the thread on the first reply, and
    /// updates the parent's reply count (a change of the parent's conversation).
    /// `new.conversation` is ignored.
    async fn reply(&self, parent: &MessageId, new: NewMessage) -> Result<Appended, AppError>;
    /// The thread answering this message, if it has one.
    async fn thread_of(&self, parent: &MessageId) -> Result<Option<ConversationInfo>, AppError>;
    /// The message with this id (deleted ones too).
    async fn message(&self, id: &MessageId) -> Result<Option<Message>, AppError>;
    /// The conversation's most recent live messages (at most `limit`).
    async fn recent(&self, id: ConversationId, limit: usize) -> Result<Window, AppError>;
    /// Up to `limit` live messages older than `before_seq`, oldest first (scrolling back).
    async fn before(
        &self,
        id: ConversationId,
        before_seq: u64,
        limit: usize,
    ) -> Result<Window, AppError>;
    /// What changed after `after_change`, at most `limit` messages (then `more` is set);
    /// `None` for a number the conversation never gave out (the client must reset).
    async fn changes(
        &self,
        id: ConversationId,
        after_change: u64,
        limit: usize,
    ) -> Result<Option<Changes>, AppError>;
    /// Replaces a live message's text (and mentions); marks it edited.
    async fn edit(
        &self,
        id: &MessageId,
        body: String,
        mentions: Vec<UserId>,
        mentions_all: bool,
    ) -> Result<Message, AppError>;
    /// Deletes a live message: its text and reactions go, a tombstone stays.
    async fn delete(&self, id: &MessageId) -> Result<Message, AppError>;
    /// Adds or removes `user`'s reaction; `None` when that changed nothing.
    async fn react(
        &self,
        id: &MessageId,
        user: &Author,
        emoji: &str,
        on: bool,
    ) -> Result<Option<Message>, AppError>;
}

/// Everything Flack keeps.
pub trait Store: Users + Conversations + Messages + 'static {
    /// What the store holds in memory now.
    fn memory_usage(&self) -> MemoryUsage;
    /// How long the write pipeline may wait for more posts before storing a small batch:
    /// zero for a store whose commit costs little next to its rows.
    fn batch_linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}
