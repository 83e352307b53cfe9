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
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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

/// A conversation `user` may post in, as the posting path needs it (see [`sendable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sendable {
    /// The conversation.
    pub info: ConversationInfo,
    /// The conversation that decides access and mentions (a thread's parent's, or itself).
    pub governing: ConversationId,
    /// A public channel the user is not in: posting joins it first.
    pub joins_on_post: bool,
}

/// The conversation if `user` may post in it: reading's rule (see [`readable`]), answered
/// from `cache` when it can be (posting is the hot path: two store reads per message
/// otherwise).
pub async fn sendable(
    store: &dyn Store,
    cache: &AccessCache,
    user: &UserId,
    id: ConversationId,
) -> Result<Sendable, AppError> {
    let info = cache.conversation(store, id).await?;
    let governing = match (&info.kind, &info.parent) {
        (ConversationKind::Thread, Some(parent)) => {
            cache.conversation(store, parent.conversation).await?
        }
        _ => info.clone(),
    };
    let member = cache.is_member(store, governing.id, user).await?;
    match governing.kind {
        ConversationKind::Public => {}
        ConversationKind::Private | ConversationKind::Direct if member => {}
        _ => return Err(AppError::NoSuchConversation),
    }
    Ok(Sendable {
        joins_on_post: !member && info.kind == ConversationKind::Public,
        governing: governing.id,
        info,
    })
}

/// Conversations and memberships recently checked, so that a post costs no store read.
/// Bounded in entries (least recently used go first). A conversation's kind, parent and
/// name never change, so its entry is never stale (a direct conversation's people carry
/// names that may be; the posting path does not show them). Memberships are forgotten by
/// the write pipeline as it publishes each membership change (see
/// [`super::chat::Publish`]): the change and the forgetting travel together, so a
/// deployment of several nodes forgets on each node as its hub delivers the change. A
/// generation number keeps a read that raced a change from caching what it read before it.
pub struct AccessCache {
    conversations: Mutex<LruCache<ConversationId, ConversationInfo>>,
    members: Mutex<LruCache<(ConversationId, UserId), bool>>,
    generation: AtomicU64,
    /// Memberships are kept (one node: every change passes through this process).
    keeps_members: bool,
}

impl AccessCache {
    /// A cache of at most `conversations` conversations and `memberships` memberships (0:
    /// none). Only "is a member" is kept: a join on another node counts here at once. A
    /// leave committed on another node may reach this cache a moment late, so the post
    /// also asks the store to check membership as it commits ([`Admission::MemberOf`]).
    ///
    /// [`Admission::MemberOf`]: crate::server::store::Admission::MemberOf
    pub fn new(conversations: usize, memberships: usize) -> Self {
        let size = |n: usize| NonZeroUsize::new(n.max(1)).expect("at least one");
        AccessCache {
            conversations: Mutex::new(LruCache::new(size(conversations))),
            members: Mutex::new(LruCache::new(size(memberships))),
            generation: AtomicU64::new(0),
            keeps_members: memberships > 0,
        }
    }

    /// The conversation (one that does not exist is not cached: it may be created later).
    pub async fn conversation(
        &self,
        store: &dyn Store,
        id: ConversationId,
    ) -> Result<ConversationInfo, AppError> {
        if let Some(info) = self.conversations.lock().expect("access lock").get(&id) {
            return Ok(info.clone());
        }
        let info = store
            .conversation(id)
            .await?
            .ok_or(AppError::NoSuchConversation)?;
        self.conversations
            .lock()
            .expect("access lock")
            .put(id, info.clone());
        Ok(info)
    }

    /// Whether `user` is a member of conversation `id`.
    pub async fn is_member(
        &self,
        store: &dyn Store,
        id: ConversationId,
        user: &UserId,
    ) -> Result<bool, AppError> {
        if !self.keeps_members {
            return Ok(store.membership(id, user).await?.is_some());
        }
        let key = (id, user.clone());
        if let Some(member) = self.members.lock().expect("access lock").get(&key) {
            return Ok(*member);
        }
        let before = self.generation.load(Ordering::Acquire);
        let member = store.membership(id, user).await?.is_some();
        let mut members = self.members.lock().expect("access lock");
        // A membership change forgotten meanwhile may not be in what was read.
        if member && self.generation.load(Ordering::Acquire) == before {
            members.put(key, member);
        }
        Ok(member)
    }

    /// Forgets `user`'s membership of `id` (it changed: joined, left, invited).
    pub fn forget_member(&self, id: ConversationId, user: &UserId) {
        let mut members = self.members.lock().expect("access lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        members.pop(&(id, user.clone()));
    }

    /// Forgets every membership (changes may have been missed).
    pub fn forget_memberships(&self) {
        let mut members = self.members.lock().expect("access lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        members.clear();
    }

    /// Entries held now: conversations and memberships (for tests).
    pub fn entries(&self) -> (usize, usize) {
        (
            self.conversations.lock().expect("access lock").len(),
            self.members.lock().expect("access lock").len(),
        )
    }
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
        Admission, CacheLimits, Conversations, Messages, NewMessage, SqliteStore, Users,
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
        let cache = AccessCache::new(16, 16);
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
                sendable(&store, &cache, &u[2], id).await,
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
    async fn the_access_cache_is_bounded_and_forgets_changed_memberships() {
        let (store, u) = setup().await;
        let cache = AccessCache::new(2, 2);
        let mut ids = Vec::new();
        for name in ["a", "b", "c"] {
            let info = store
                .create_channel(name.into(), ConversationKind::Private, Some(&author(&u[0])))
                .await
                .unwrap();
            assert!(sendable(&store, &cache, &u[0], info.id).await.is_ok());
            ids.push(info.id);
        }
        assert_eq!(cache.entries(), (2, 2), "the least recent went first");
        // "Not a member" is not kept: a join (on any node) counts at once.
        assert!(!cache.is_member(&store, ids[2], &u[1]).await.unwrap());
        store.join(ids[2], &author(&u[1])).await.unwrap();
        assert!(cache.is_member(&store, ids[2], &u[1]).await.unwrap());
        assert!(sendable(&store, &cache, &u[1], ids[2]).await.is_ok());
        // "A member" is kept until the change is forgotten (the post's own check at commit
        // covers the moment in between).
        store.leave(ids[2], &u[1]).await.unwrap();
        assert!(
            cache.is_member(&store, ids[2], &u[1]).await.unwrap(),
            "cached"
        );
        cache.forget_member(ids[2], &u[1]);
        assert!(!cache.is_member(&store, ids[2], &u[1]).await.unwrap());
        // Made-up conversations are not cached (they may exist later).
        let before = cache.entries();
        assert_eq!(
            sendable(&store, &cache, &u[0], ConversationId(987_654)).await,
            Err(AppError::NoSuchConversation)
        );
        assert_eq!(cache.entries(), before);
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
            admission: Admission::Unchecked,
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
