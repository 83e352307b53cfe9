//! Signals that take no change number and are never stored: "someone is typing" (throttled,
//! and the first thing a busy socket drops) and presence (online, away, offline), counted
//! per user from their open sockets by a
//! [`PresenceBook`](crate::server::limits::presence::PresenceBook) (in this process, or
//! over the cluster).

use super::Chat;
use crate::error::AppError;
use crate::protocol::{
    ConversationId, ConversationKind, PresenceStatus, ServerEvent, UserId, UserInfo,
};
use crate::server::access;
use crate::server::hub::{Frame, Hub, Topic};
use crate::server::limits::presence::{Change, PresenceBook};
use crate::server::store::Store;
use std::sync::Arc;
use tokio::sync::mpsc;

impl Chat {
    /// Tells the conversation's open sockets that `user` is typing, at most once every few
    /// seconds per user; more often is ignored, not an error.
    pub async fn typing(&self, user: &UserInfo, id: ConversationId) -> Result<(), AppError> {
        let author = Self::author(user)?;
        access::readable(self.store.as_ref(), &user.id, id).await?;
        if self.typing.check(&user.id.0, 1).await.is_err() {
            return Ok(());
        }
        let event = ServerEvent::Typing {
            conversation: id,
            user: author,
        };
        // Typing may be lost on the way to other nodes.
        super::publish(
            self.hub.as_ref(),
            &Topic::Conversation(id),
            Frame::new(None, &event),
        )
        .await;
        Ok(())
    }

    /// A socket of `user` opened.
    pub async fn socket_opened(&self, user: &UserId) {
        let status = self.presence.change(user, Change::Opened).await;
        self.announce(user, status).await;
    }

    /// A socket of `user` closed (`away`: it was away).
    pub async fn socket_closed(&self, user: &UserId, away: bool) {
        let status = self.presence.change(user, Change::Closed { away }).await;
        self.announce(user, status).await;
    }

    /// A socket of `user` went away or came back.
    pub async fn socket_away(&self, user: &UserId, away: bool) {
        let status = self.presence.change(user, Change::Away(away)).await;
        self.announce(user, status).await;
    }

    /// The user's status now (over the whole cluster).
    pub async fn presence_of(&self, user: &UserId) -> PresenceStatus {
        let statuses = self.presence.statuses(std::slice::from_ref(user)).await;
        statuses.first().copied().unwrap_or(PresenceStatus::Offline)
    }

    /// Tells those who would show it that `user`'s status changed.
    async fn announce(&self, user: &UserId, status: Option<PresenceStatus>) {
        if let Some(status) = status {
            announce(self.store.as_ref(), self.hub.as_ref(), user, status).await;
        }
    }
}

/// Tells those who would show it that `user`'s status is `status`: the open sockets of the
/// user's conversations, and the people of their direct conversations (sidebar dots).
async fn announce(store: &dyn Store, hub: &dyn Hub, user: &UserId, status: PresenceStatus) {
    let Ok(conversations) = store.memberships_of(user).await else {
        return;
    };
    let frame = Frame::new(
        None,
        &ServerEvent::Presence {
            user: user.clone(),
            status,
        },
    );
    for info in conversations {
        super::publish(hub, &Topic::Conversation(info.id), frame.clone()).await;
        if info.kind == ConversationKind::Direct {
            for person in info.people.iter().filter(|p| &p.id != user) {
                super::publish(hub, &Topic::User(person.id.clone()), frame.clone()).await;
            }
        }
    }
}

/// Users whose statuses are read at once when their node died.
const DEPARTED_AT_ONCE: usize = 100;

/// Tells the status now of each user whose node died (see
/// [`PresenceBook::departures`]): offline, unless they have a socket on a live node. One
/// user at a time, so a large node's death is a trickle of reads, not a burst. Ends when the
/// presence book is gone.
pub(super) async fn announce_departures(
    mut departures: mpsc::Receiver<Vec<UserId>>,
    presence: Arc<dyn PresenceBook>,
    store: Arc<dyn Store>,
    hub: Arc<dyn Hub>,
) {
    while let Some(users) = departures.recv().await {
        tracing::info!(
            users = users.len(),
            "presence: a node died; telling its users' status"
        );
        for chunk in users.chunks(DEPARTED_AT_ONCE) {
            let statuses = presence.statuses(chunk).await;
            for (user, status) in chunk.iter().zip(statuses) {
                announce(store.as_ref(), hub.as_ref(), user, status).await;
            }
        }
    }
}
