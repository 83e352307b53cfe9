//! Who may do what, decided in one place. Every path that reads or changes a conversation
//! (pages, server functions, form posts, the socket, catch-up) asks here first; the store
//! drivers only keep the database's own constraints.
//!
//! The rules:
//! - a public channel: anyone may read it; posting joins it; members may invite;
//! - a private channel or a direct conversation: only members may read, post, react or
//!   catch up, and to everyone else it does not exist (the same answer as a made-up id);
//!   members may invite to a private channel; a direct conversation's people are fixed;
//! - a thread: whoever may read its parent's conversation may read and reply;
//! - a message: whoever may read its conversation may react; only its author may edit or
//!   delete it;
//! - anyone may leave a channel they are in; nobody leaves a direct conversation or a thread.

use super::store::{Membership, Store};
use crate::error::AppError;
use crate::protocol::{ConversationId, ConversationInfo, ConversationKind, Message, UserId};

/// A conversation the user may read, with their membership (of the conversation itself;
/// for a thread, of its parent's conversation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readable {
    /// The conversation.
    pub info: ConversationInfo,
    /// The user's membership, if any.
    pub member: Option<Membership>,
    /// For a thread: the conversation its parent is in, which decides access.
    pub governing: ConversationInfo,
}

impl Readable {
    /// Whether a post needs the user to join first (a public channel they are not in).
    pub fn joins_on_post(&self) -> bool {
        self.member.is_none() && self.info.kind == ConversationKind::Public
    }
}

/// The conversation if `user` may read it; [`AppError::NoSuchConversation`] otherwise,
/// whether it exists or not.
pub async fn readable(
    store: &dyn Store,
    user: &UserId,
    id: ConversationId,
) -> Result<Readable, AppError> {
    let info = store
        .conversation(id)
        .await?
        .ok_or(AppError::NoSuchConversation)?;
    let governing = match (&info.kind, &info.parent) {
        (ConversationKind::Thread, Some(parent)) => store
            .conversation(parent.conversation)
            .await?
            .ok_or(AppError::NoSuchConversation)?,
        _ => info.clone(),
    };
    let member = store.membership(governing.id, user).await?;
    match governing.kind {
        ConversationKind::Public => {}
        ConversationKind::Private | ConversationKind::Direct if member.is_some() => {}
        _ => return Err(AppError::NoSuchConversation),
    }
    let member = if info.id == governing.id {
        member
    } else {
        store.membership(info.id, user).await?
    };
    Ok(Readable {
        info,
        member,
        governing,
    })
}

/// The conversation if `user` may post in it (see [`readable`]; posting is reading's rule).
pub async fn sendable(
    store: &dyn Store,
    user: &UserId,
    id: ConversationId,
) -> Result<Readable, AppError> {
    readable(store, user, id).await
}

/// The message and its conversation, if `user` may read it; [`AppError::NoSuchMessage`] for
/// a message they may not see, as for one that does not exist.
pub async fn readable_message(
    store: &dyn Store,
    user: &UserId,
    id: &crate::protocol::MessageId,
) -> Result<(Message, Readable), AppError> {
    let message = store.message(id).await?.ok_or(AppError::NoSuchMessage)?;
    match readable(store, user, message.conversation).await {
        Ok(readable) if !message.deleted => Ok((message, readable)),
        _ => Err(AppError::NoSuchMessage),
    }
}

/// The message and its conversation, if `user` wrote it and may still read it (edit, delete).
pub async fn own_message(
    store: &dyn Store,
    user: &UserId,
    id: &crate::protocol::MessageId,
) -> Result<(Message, Readable), AppError> {
    let (message, readable) = readable_message(store, user, id).await?;
    if &message.author.id != user {
        return Err(AppError::NotAuthor);
    }
    Ok((message, readable))
}

/// The channel, if `user` is a member of it (who may invite and leave).
async fn channel_member(
    store: &dyn Store,
    user: &UserId,
    id: ConversationId,
) -> Result<Readable, AppError> {
    let readable = readable(store, user, id).await?;
    if !readable.info.kind.is_channel() {
        return Err(AppError::WrongKind);
    }
    if readable.member.is_none() {
        return Err(AppError::NotMember);
    }
    Ok(readable)
}

/// The channel, if `user` may invite people to it: a member of a channel.
pub async fn invitable(
    store: &dyn Store,
    user: &UserId,
    id: ConversationId,
) -> Result<Readable, AppError> {
    channel_member(store, user, id).await
}

/// The channel, if `user` may join it by themselves: a public one.
pub async fn joinable(
    store: &dyn Store,
    user: &UserId,
    id: ConversationId,
) -> Result<Readable, AppError> {
    let readable = readable(store, user, id).await?;
    if readable.info.kind != ConversationKind::Public {
        return Err(if readable.member.is_some() {
            AppError::WrongKind
        } else {
            AppError::NoSuchConversation
        });
    }
    Ok(readable)
}

/// The channel, if `user` may leave it: a channel they are in.
pub async fn leavable(
    store: &dyn Store,
    user: &UserId,
    id: ConversationId,
) -> Result<Readable, AppError> {
    channel_member(store, user, id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Author;
    use crate::server::store::{
        CacheLimits, Conversations, Messages, NewMessage, SqliteStore, Users,
    };

    async fn setup() -> (SqliteStore, Vec<UserId>) {
        let store = SqliteStore::in_memory(CacheLimits::default())
            .await
            .unwrap();
        let mut users = Vec::new();
        for name in ["Ada", "Bo", "Cy"] {
            users.push(
                store
                    .create_user(format!("t-{name}"), Some(name.into()))
                    .await
                    .unwrap()
                    .id,
            );
        }
        (store, users)
    }

    fn author(id: &UserId) -> Author {
        Author {
            id: id.clone(),
            name: "x".into(),
        }
    }

    #[tokio::test]
    async fn outsiders_cannot_tell_private_conversations_from_made_up_ids() {
        let (store, u) = setup().await;
        let private = store
            .create_channel(
                "secret".into(),
                ConversationKind::Private,
                Some(&author(&u[0])),
            )
            .await
            .unwrap();
        let (dm, _) = store
            .open_direct(&[author(&u[0]), author(&u[1])])
            .await
            .unwrap();
        for id in [private.id, dm.id, ConversationId(987_654)] {
            assert_eq!(
                readable(&store, &u[2], id).await,
                Err(AppError::NoSuchConversation)
            );
            assert_eq!(
                sendable(&store, &u[2], id).await,
                Err(AppError::NoSuchConversation)
            );
            assert_eq!(
                invitable(&store, &u[2], id).await,
                Err(AppError::NoSuchConversation)
            );
            assert_eq!(
                joinable(&store, &u[2], id).await,
                Err(AppError::NoSuchConversation)
            );
        }
        assert!(readable(&store, &u[0], private.id).await.is_ok());
        assert!(readable(&store, &u[1], dm.id).await.is_ok());
        assert_eq!(
            invitable(&store, &u[0], dm.id).await,
            Err(AppError::WrongKind)
        );
        assert_eq!(
            leavable(&store, &u[0], dm.id).await,
            Err(AppError::WrongKind)
        );
        assert_eq!(
            joinable(&store, &u[0], private.id).await,
            Err(AppError::WrongKind)
        );
    }

    #[tokio::test]
    async fn messages_are_seen_by_readers_and_changed_by_their_author() {
        let (store, u) = setup().await;
        let public = store
            .create_channel(
                "open".into(),
                ConversationKind::Public,
                Some(&author(&u[0])),
            )
            .await
            .unwrap();
        let (dm, _) = store
            .open_direct(&[author(&u[0]), author(&u[1])])
            .await
            .unwrap();
        let post = |to| NewMessage {
            conversation: to,
            author: author(&u[0]),
            body: "hi".into(),
            client_id: None,
            mentions: vec![],
            mentions_all: false,
        };
        let open = store.append(post(public.id)).await.unwrap().message;
        let hidden = store.append(post(dm.id)).await.unwrap().message;
        assert!(readable_message(&store, &u[2], &open.id).await.is_ok());
        assert_eq!(
            own_message(&store, &u[2], &open.id).await.map(|_| ()),
            Err(AppError::NotAuthor)
        );
        assert!(own_message(&store, &u[0], &open.id).await.is_ok());
        assert_eq!(
            readable_message(&store, &u[2], &hidden.id)
                .await
                .map(|_| ()),
            Err(AppError::NoSuchMessage)
        );
        assert_eq!(
            own_message(&store, &u[2], &hidden.id).await.map(|_| ()),
            Err(AppError::NoSuchMessage)
        );
        // A thread under a direct message is as private as the direct message.
        let reply = store.reply(&hidden.id, post(dm.id)).await.unwrap().message;
        assert_eq!(
            readable(&store, &u[2], reply.conversation).await,
            Err(AppError::NoSuchConversation)
        );
        let thread = readable(&store, &u[1], reply.conversation).await.unwrap();
        assert_eq!(thread.governing.id, dm.id);
        // Leaving a private channel ends access.
        let private = store
            .create_channel(
                "club".into(),
                ConversationKind::Private,
                Some(&author(&u[0])),
            )
            .await
            .unwrap();
        store.join(private.id, &author(&u[1])).await.unwrap();
        assert!(leavable(&store, &u[1], private.id).await.is_ok());
        store.leave(private.id, &u[1]).await.unwrap();
        assert_eq!(
            readable(&store, &u[1], private.id).await,
            Err(AppError::NoSuchConversation)
        );
    }
}
