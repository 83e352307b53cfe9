//! Reading: opening a conversation (subscribing to it), its history, what a reconnecting
//! client missed, and read positions. Every read asks [`access`] first.

use super::{Chat, Publish};
use crate::error::AppError;
use crate::protocol::{
    ConversationHistory, ConversationId, ConversationInfo, ServerEvent, UserInfo,
};
use crate::server::access::{self, Readable};
use crate::server::hub::{Frame, Subscription, Topic};
use crate::server::store::{Changes, Window};
use crate::server::window_frames::Joined;
use std::sync::Arc;

/// A page of a conversation as its reader gets it.
fn history_of(readable: Readable, window: Window) -> ConversationHistory {
    ConversationHistory {
        conversation: readable.info,
        messages: window.messages,
        has_older: window.has_older,
        last_change: window.last_change,
        read_seq: readable.member.map_or(0, |m| m.read_seq),
        member: readable.member.is_some(),
    }
}

/// Changes a reconnecting client is sent at most; past it, the recent window instead.
pub const MAX_CATCH_UP: usize = 1000;

impl Chat {
    /// Spends one of the user's socket subscribes (each answer can be a whole window).
    pub async fn spend_open(&self, user: &UserInfo) -> Result<(), AppError> {
        self.opens.check(&user.id.0, 1).await
    }

    /// Opens a conversation `user` may read (by id, or a channel by name): subscribes to its
    /// changes before anything is read (so nothing published meanwhile is missed), and
    /// joins a default channel on a first visit. Nothing is subscribed for a conversation
    /// the user may not read, so made-up ids cost nothing.
    pub async fn open(
        &self,
        user: &UserInfo,
        conversation: Option<ConversationId>,
        channel: Option<&str>,
    ) -> Result<(Readable, Subscription), AppError> {
        let readable = match (conversation, channel) {
            (Some(id), _) => access::readable(self.store.as_ref(), &user.id, id).await?,
            (None, Some(name)) => self.channel_named(&user.id, name).await?,
            (None, None) => {
                return Err(AppError::BadFrame {
                    detail: "subscribe needs a conversation or a channel".into(),
                })
            }
        };
        let frames = self
            .hub
            .subscribe(&Topic::Conversation(readable.info.id))
            .await?;
        if readable.member.is_none() && self.is_default(readable.info.id) {
            if let Ok(author) = Self::author(user) {
                if let Err(e) = self.join_unchecked(readable.info.id, &author).await {
                    tracing::debug!(error = %e, "could not join a default channel");
                }
            }
        }
        Ok((readable, frames))
    }

    /// A conversation `user` may read, with its recent messages and their read position.
    pub async fn history(&self, readable: Readable) -> Result<ConversationHistory, AppError> {
        let window = self.recent(readable.info.id).await?;
        Ok(history_of(readable, Window::clone(&window)))
    }

    /// A conversation's recent window: read from the store once, then shared (pages and
    /// joins alike) until the conversation changes.
    async fn recent(&self, id: ConversationId) -> Result<Arc<Window>, AppError> {
        if !self.hub.follows(&Topic::Conversation(id)) {
            // This node would not hear of its changes: nothing kept of it can be trusted.
            return Ok(Arc::new(self.store.recent(id, self.limits.window).await?));
        }
        let generation = match self.frames.window(id) {
            Ok(window) => return Ok(window),
            Err(generation) => generation,
        };
        let window = Arc::new(self.store.recent(id, self.limits.window).await?);
        self.frames.put_window(id, generation, window.clone());
        Ok(window)
    }

    /// Up to a window's worth of messages older than `before_seq`.
    pub async fn older(
        &self,
        user: &UserInfo,
        id: ConversationId,
        before_seq: u64,
    ) -> Result<ConversationHistory, AppError> {
        let readable = access::readable(self.store.as_ref(), &user.id, id).await?;
        let window = self
            .store
            .before(id, before_seq, self.limits.window)
            .await?;
        Ok(history_of(readable, window))
    }

    /// The answer to a subscribe, serialized: for a fresh join the conversation's window,
    /// built once and shared until it changes; after a reconnect what was missed (or the
    /// window, past [`MAX_CATCH_UP`] changes).
    pub async fn join_answer(
        &self,
        info: &ConversationInfo,
        after_change: Option<u64>,
    ) -> Result<Joined, AppError> {
        if let Some(after) = after_change {
            if let Some(changes) = self.store.changes(info.id, after, MAX_CATCH_UP).await? {
                if !changes.more {
                    return Ok(Self::serialize(&Self::caught_up(info, changes)));
                }
            }
        }
        if !self.hub.follows(&Topic::Conversation(info.id)) {
            return Ok(Self::serialize(&self.fresh_join(info).await?));
        }
        let generation = match self.frames.get(info.id) {
            Ok(joined) => return Ok(joined),
            Err(generation) => generation,
        };
        let joined = Self::serialize(&self.fresh_join(info).await?);
        self.frames.put(info.id, generation, joined.clone());
        Ok(joined)
    }

    /// A `subscribed` event that resets the client to the recent window.
    pub async fn fresh_join(&self, info: &ConversationInfo) -> Result<ServerEvent, AppError> {
        let window = self.recent(info.id).await?;
        Ok(ServerEvent::Subscribed {
            conversation: info.clone(),
            messages: window.messages.clone(),
            last_change: window.last_change,
            reset: true,
            has_older: window.has_older,
            members: None,
        })
    }

    /// A `subscribed` event carrying changes (and the members, if they changed).
    pub fn caught_up(info: &ConversationInfo, changes: Changes) -> ServerEvent {
        ServerEvent::Subscribed {
            conversation: info.clone(),
            messages: changes.messages,
            last_change: changes.last_change,
            reset: false,
            has_older: false,
            members: changes.members,
        }
    }

    fn serialize(event: &ServerEvent) -> Joined {
        let last_change = match event {
            ServerEvent::Subscribed { last_change, .. } => *last_change,
            _ => 0,
        };
        Joined {
            text: Frame::new(None, event).text,
            last_change,
        }
    }

    /// Up to `limit` changes of a conversation after `after_change`, for replaying a socket
    /// that fell behind; `None` for a number never given out.
    pub async fn changes(
        &self,
        id: ConversationId,
        after_change: u64,
        limit: usize,
    ) -> Result<Option<Changes>, AppError> {
        self.store.changes(id, after_change, limit).await
    }

    /// Moves `user`'s read position in a conversation forward; their other devices hear it.
    pub async fn mark_read(
        &self,
        user: &UserInfo,
        id: ConversationId,
        seq: u64,
    ) -> Result<(), AppError> {
        let readable = access::readable(self.store.as_ref(), &user.id, id).await?;
        if readable.member.is_none() {
            return Ok(()); // previewing a public channel: nothing to remember
        }
        self.opens.check(&user.id.0, 1).await?;
        if self.store.mark_read(id, &user.id, seq).await? {
            let event = ServerEvent::ReadMoved {
                conversation: id,
                seq,
            };
            let publish = Publish::to_user(&user.id, Frame::new(None, &event));
            super::publish(self.hub.as_ref(), &publish.topic, publish.frame).await;
        }
        Ok(())
    }
}

impl Chat {
    /// A message's thread for `user`: the parent, its conversation and the replies.
    pub async fn thread(
        &self,
        user: &UserInfo,
        parent: &crate::protocol::MessageId,
    ) -> Result<crate::protocol::ThreadView, AppError> {
        let (message, readable) =
            access::readable_message(self.store.as_ref(), &user.id, parent).await?;
        if readable.info.kind == crate::protocol::ConversationKind::Thread {
            return Err(AppError::NestedThread);
        }
        let thread = match self.store.thread_of(parent).await? {
            Some(info) => {
                let readable = access::readable(self.store.as_ref(), &user.id, info.id).await?;
                Some(self.history(readable).await?)
            }
            None => None,
        };
        Ok(crate::protocol::ThreadView {
            parent: message,
            conversation: readable.info,
            thread,
        })
    }

    /// The page a message is shown on, for `user` (its conversation's, or its thread's).
    pub async fn path_of(
        &self,
        user: &UserInfo,
        message: &crate::protocol::Message,
    ) -> Option<String> {
        let readable = access::readable(self.store.as_ref(), &user.id, message.conversation)
            .await
            .ok()?;
        match (&readable.info.parent, readable.info.kind) {
            (Some(parent), crate::protocol::ConversationKind::Thread) => Some(
                crate::paths::thread_path(&readable.governing, &parent.message),
            ),
            _ => Some(crate::paths::conversation_path(&readable.info)),
        }
    }
}

impl Chat {
    /// Bytes of shared join answers held now (for tests and metrics).
    pub fn join_cache_bytes(&self) -> usize {
        self.frames.bytes()
    }
}
