//! The application's side of a hub that carries frames between nodes ([`Relay`]): what a
//! change made on another node makes stale here, and catch-ups that fill the bus's gaps.

use super::{Chat, Forget};
use crate::protocol::ConversationId;
use crate::server::hub::{Frame, Relay, Topic, HEAL_LIMIT};
use crate::server::store::Store;
use async_trait::async_trait;
use std::sync::Arc;

/// See the module documentation.
pub(super) struct ChatRelay {
    store: Arc<dyn Store>,
    forget: Arc<Forget>,
}

impl ChatRelay {
    pub(super) fn new(store: Arc<dyn Store>, forget: Arc<Forget>) -> Self {
        ChatRelay { store, forget }
    }
}

#[async_trait]
impl Relay for ChatRelay {
    fn arriving(&self, topic: &Topic, frame: &Frame) {
        self.forget.published(topic, frame);
    }

    async fn heal(&self, conversation: ConversationId, after: u64) -> Option<Frame> {
        let info = self.store.conversation(conversation).await.ok()??;
        let changes = self
            .store
            .changes(conversation, after, HEAL_LIMIT)
            .await
            .ok()??;
        if changes.more {
            return None;
        }
        let last = changes.last_change;
        Some(Frame::catch_up(
            after,
            last,
            &Chat::caught_up(&info, changes),
        ))
    }

    fn bus_lost(&self) {
        self.forget.everything();
    }

    fn unfollowed(&self, topic: &Topic) {
        if let Topic::Conversation(id) = topic {
            self.forget.frames.invalidate(*id);
        }
    }
}
