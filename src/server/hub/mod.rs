//! Fan-out: every event is serialized once and the same bytes go to every subscriber of its
//! topic. [`Hub`] is the contract, and every driver runs the same [`contract`] suite:
//! [`MemoryHub`] fans out within this process (one node); [`RedisHub`] also carries frames
//! between nodes over Redis pub/sub, and heals what the bus lost from the store
//! (see [`Relay`]). A driver for another bus (NATS JetStream, say) is one more file here.

#[cfg(test)]
pub mod contract;
mod memory;
mod redis;

pub use memory::MemoryHub;
pub use redis::{RedisHub, RedisHubOptions, HEAL_LIMIT};

use crate::protocol::{ConversationId, UserId};
use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Frames a user's own stream holds for a subscriber that has not read them. A broadcast
/// queue allocates all its slots at once (about 100 bytes each), and every user online
/// has a stream: at the conversations' capacity (1,024) that is some 100 KiB per user. The
/// stream carries few events, its socket's session reads it at once, and one that lags
/// reloads the sidebar instead.
pub const USER_STREAM_CAPACITY: usize = 64;

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Sockets with this conversation open: its changes, typing.
    Conversation(ConversationId),
    /// Every socket of this user: their own stream (activity elsewhere, joins, read moves).
    User(UserId),
}

/// One serialized event, cheap to clone (the text is reference-counted).
#[derive(Debug, Clone)]
pub struct Frame {
    /// For a change of a conversation, its change number: a subscriber skips what it has
    /// and replays a gap from the store.
    pub change: Option<u64>,
    /// The first change number the frame brings (a catch-up brings several, up to `change`):
    /// with `change`, or 0.
    pub first: u64,
    /// On a user's stream, the conversation it is about (a socket that has it open hears
    /// of it there instead).
    pub about: Option<ConversationId>,
    /// This membership (conversation, user) changed: whoever delivers the frame forgets
    /// what it kept of it (every node does, with several).
    pub member: Option<Arc<(ConversationId, UserId)>>,
    /// On a user's stream: news for the user's sockets themselves, on every node (the frame
    /// is not written to any socket).
    pub note: Option<Arc<StreamNote>>,
    /// The JSON text of a [`crate::protocol::ServerEvent`].
    pub text: Utf8Bytes,
}

impl Frame {
    /// Serializes an event once: a change numbered `change`, or (`None`) a signal that takes
    /// no number (typing, presence).
    pub fn new(change: Option<u64>, event: &crate::protocol::ServerEvent) -> Self {
        let text = serde_json::to_string(event).expect("server events always serialize");
        Frame {
            change,
            first: change.unwrap_or(0),
            about: None,
            member: None,
            note: None,
            text: text.into(),
        }
    }

    /// A catch-up: the changes after `after` up to `last`, as one frame.
    pub fn catch_up(after: u64, last: u64, event: &crate::protocol::ServerEvent) -> Self {
        Frame {
            first: after + 1,
            ..Frame::new(Some(last), event)
        }
    }

    /// For a user's stream: news for the user's sockets themselves.
    pub fn note(note: StreamNote) -> Self {
        Frame {
            note: Some(Arc::new(note)),
            ..Frame::new(None, &crate::protocol::ServerEvent::Refresh)
        }
    }

    /// The same frame, saying that `user`'s membership of `conversation` changed.
    pub fn for_member(self, conversation: ConversationId, user: &UserId) -> Self {
        Frame {
            member: Some(Arc::new((conversation, user.clone()))),
            ..self
        }
    }

    /// Serializes an event for users' streams, about conversation `about`.
    pub fn about(about: ConversationId, event: &crate::protocol::ServerEvent) -> Self {
        Frame {
            about: Some(about),
            ..Frame::new(None, event)
        }
    }
}

/// News on a user's stream for the user's sockets themselves, wherever they are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StreamNote {
    /// The token with this hash was signed out: its sockets close.
    SignedOut(String),
    /// The user as stored now (a new display name): what their sockets post under.
    Renamed(crate::protocol::UserInfo),
}

/// A subscription: a bounded queue of frames. A receiver that falls more than the queue's
/// capacity behind gets `RecvError::Lagged` and must resynchronise from the store.
pub type Subscription = broadcast::Receiver<Frame>;

/// Why the hub could not do something: the bus is unreachable. Nothing stored is lost by
/// it (subscribers heal from the store), but other nodes may hear of a change late.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the bus is unreachable: {0}")]
pub struct HubError(pub String);

impl From<HubError> for crate::error::AppError {
    fn from(e: HubError) -> Self {
        tracing::warn!(error = %e, "hub error");
        crate::error::AppError::Unavailable
    }
}

/// What a hub has done, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    /// Frames handed to subscribers on this node (one per subscriber reached).
    pub deliveries: u64,
    /// Frames received from other nodes.
    pub relayed: u64,
    /// Gaps in what the bus delivered, filled from the store.
    pub gaps_healed: u64,
    /// Publishes the bus refused (other nodes healed them later).
    pub publish_errors: u64,
    /// Times the connection to the bus was lost and made again.
    pub reconnects: u64,
}

/// Publishes frames to topics and hands out subscriptions.
#[async_trait]
pub trait Hub: Send + Sync + 'static {
    /// Sends a frame to every current subscriber of `topic`, on every node. Subscribers here
    /// get it whatever happens; an error says other nodes may not have (they heal from the
    /// store when they notice). A frame on a user's stream [`about`](Frame::about) a
    /// conversation that every one of that user's streams on a node has open (see
    /// [`Hub::views`]) wakes nobody there: those sockets hear of it in the conversation.
    async fn publish(&self, topic: &Topic, frame: Frame) -> Result<(), HubError>;
    /// Publishes one frame on the streams of all of `users` (activity in a conversation, for
    /// its members): a bus driver sends it once for all of them.
    async fn publish_to_users(&self, users: &[UserId], frame: Frame) -> Result<(), HubError> {
        let mut result = Ok(());
        for user in users {
            if let Err(e) = self
                .publish(&Topic::User(user.clone()), frame.clone())
                .await
            {
                result = Err(e);
            }
        }
        result
    }
    /// Subscribes to `topic`: once this returns, every frame published from then on, on any
    /// node, arrives, each conversation's in change order (a gap is filled or left for the
    /// subscriber to replay, never hidden).
    async fn subscribe(&self, topic: &Topic) -> Result<Subscription, HubError>;
    /// Topics held now (each costs a queue): for tests and metrics.
    fn topic_count(&self) -> usize;
    /// Which conversation each subscriber of a user's stream here has open.
    fn views(&self) -> &Arc<Views>;
    /// Gives the hub what it needs to heal gaps from the store and to keep caches fresh:
    /// the application service calls this once, as it starts.
    fn attach(&self, relay: Arc<dyn Relay>) {
        let _ = relay;
    }
    /// What the hub has done so far.
    fn stats(&self) -> HubStats {
        HubStats::default()
    }
    /// Whether this node hears every change of `topic` now, wherever it is made: what is
    /// cached of a conversation this node does not follow may be stale.
    fn follows(&self, topic: &Topic) -> bool {
        let _ = topic;
        true
    }
}

/// The application's side of a hub that carries frames between nodes.
#[async_trait]
pub trait Relay: Send + Sync + 'static {
    /// A frame from another node is about to be delivered here: forget whatever it makes
    /// stale (the recent window of its conversation, a changed membership).
    fn arriving(&self, topic: &Topic, frame: &Frame);
    /// The changes of `conversation` after `after` as one catch-up frame
    /// ([`Frame::catch_up`]), to fill a gap in what the bus delivered; `None` when the
    /// store cannot say (the subscribers then replay on their own).
    async fn heal(&self, conversation: ConversationId, after: u64) -> Option<Frame>;
    /// The bus was lost (or is back): changes may have been missed, so nothing cached in
    /// front of the store can be trusted.
    fn bus_lost(&self);
    /// This node stopped following `topic` (no socket here has it open): it will not hear
    /// of its changes until it follows it again.
    fn unfollowed(&self, topic: &Topic);
}

/// Which conversation each local follower of a user's stream (a socket) has open, so that
/// activity about it is not delivered to a user all of whose sockets see the conversation
/// itself: a message in a conversation of 20 open sockets would otherwise wake 20 more
/// tasks, each to drop the note. With several nodes, each node's hub keeps its own and
/// applies it as it delivers.
#[derive(Default)]
pub struct Views {
    users: Mutex<HashMap<UserId, UserViews>>,
}

#[derive(Default)]
struct UserViews {
    /// Streams followed here.
    streams: usize,
    /// Conversations open, with how many of those streams have each.
    open: Vec<(ConversationId, usize)>,
}

impl Views {
    /// Counts one more stream of `user` (a socket), with nothing open yet.
    pub fn watch(self: &Arc<Self>, user: &UserId) -> View {
        self.users
            .lock()
            .expect("views lock")
            .entry(user.clone())
            .or_default()
            .streams += 1;
        View {
            views: self.clone(),
            user: user.clone(),
            open: Mutex::new(None),
        }
    }

    /// Whether every stream of `user` here has `conversation` open (false with none).
    pub fn all_open(&self, user: &UserId, conversation: ConversationId) -> bool {
        let users = self.users.lock().expect("views lock");
        users.get(user).is_some_and(|views| {
            views
                .open
                .iter()
                .any(|&(id, count)| id == conversation && count == views.streams)
        })
    }

    /// Users with a stream here (for tests).
    pub fn users(&self) -> usize {
        self.users.lock().expect("views lock").len()
    }

    fn change(&self, user: &UserId, from: Option<ConversationId>, to: Option<ConversationId>) {
        let mut users = self.users.lock().expect("views lock");
        let Some(views) = users.get_mut(user) else {
            return;
        };
        if let Some(from) = from {
            if let Some(at) = views.open.iter().position(|&(id, _)| id == from) {
                views.open[at].1 -= 1;
                if views.open[at].1 == 0 {
                    views.open.swap_remove(at);
                }
            }
        }
        if let Some(to) = to {
            match views.open.iter_mut().find(|(id, _)| *id == to) {
                Some((_, count)) => *count += 1,
                None => views.open.push((to, 1)),
            }
        }
    }
}

/// One stream's entry in [`Views`]; gone when dropped.
pub struct View {
    views: Arc<Views>,
    user: UserId,
    open: Mutex<Option<ConversationId>>,
}

impl View {
    /// The conversation this stream's socket has open now (`None`: none, or it is about to
    /// change and activity about any conversation must reach it).
    pub fn set(&self, conversation: Option<ConversationId>) {
        let mut open = self.open.lock().expect("view lock");
        if *open != conversation {
            self.views.change(&self.user, *open, conversation);
            *open = conversation;
        }
    }

    /// What [`View::set`] last said.
    pub fn get(&self) -> Option<ConversationId> {
        *self.open.lock().expect("view lock")
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let open = *self.open.get_mut().expect("view lock");
        let mut users = self.views.users.lock().expect("views lock");
        let Some(views) = users.get_mut(&self.user) else {
            return;
        };
        views.streams -= 1;
        if views.streams == 0 {
            users.remove(&self.user);
            return;
        }
        drop(users);
        self.views.change(&self.user, open, None);
    }
}
