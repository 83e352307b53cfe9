//! Conversations: creating channels (public or private), starting direct messages, joining,
//! leaving and inviting, and what a user's sidebar lists. Membership changes take a change
//! number of their conversation and reach its open sockets ([`ServerEvent::Members`]) and
//! the user's own stream ([`ServerEvent::Joined`], [`ServerEvent::Left`]).

use super::{Chat, Publish};
use crate::error::AppError;
use crate::protocol::{
    validate_channel_name, Author, ConversationId, ConversationInfo, ConversationKind,
    ConversationSummary, Member, PresenceStatus, ServerEvent, UserId, UserInfo, CHANNEL_PAGE,
    MAX_DIRECT_MEMBERS, MEMBERS_SHOWN,
};
use crate::server::access::{self, Readable};
use crate::server::hub::Frame;
use crate::server::store::{MemberChange, Store};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// People found by name at most ("New message" picker).
const PEOPLE_FOUND: usize = 20;

/// What a leave tells: the conversation's open sockets the new member list, and the user's
/// own stream that they left.
async fn left_published(store: &dyn Store, change: &MemberChange, user: &UserId) -> Vec<Publish> {
    let members = store
        .members(change.conversation, MEMBERS_SHOWN)
        .await
        .unwrap_or_default();
    let left = ServerEvent::Left {
        conversation: change.conversation,
    };
    vec![
        members_changed(change, user, members),
        Publish::to_user(user, Frame::new(None, &left)),
    ]
}

/// What joins tell, in the order given: the conversation's open sockets the new member list,
/// and each newcomer's own stream that they joined, with the conversation as it stood at
/// their join (nothing unread: their reading starts at the newest message before it, and the
/// activity after it follows on the same stream). Per conversation, its member list (read
/// after all of its joins, so it has every newcomer) and its description are read once,
/// whatever the number of newcomers: twenty people joining by their first posts cost two
/// reads in the write pipeline, not twenty-one.
pub(super) async fn joins_published(
    store: &dyn Store,
    joins: &[(MemberChange, UserId)],
) -> Vec<Publish> {
    let mut read: HashMap<ConversationId, (Vec<Author>, Option<ConversationInfo>)> = HashMap::new();
    for (change, _) in joins {
        let id = change.conversation;
        if let std::collections::hash_map::Entry::Vacant(entry) = read.entry(id) {
            let (members, info) =
                futures_util::join!(store.members(id, MEMBERS_SHOWN), store.conversation(id));
            entry.insert((members.unwrap_or_default(), info.ok().flatten()));
        }
    }
    let mut out = Vec::with_capacity(joins.len() * 2);
    for (change, user) in joins {
        let (members, info) = &read[&change.conversation];
        out.push(members_changed(change, user, members.clone()));
        if let Some(info) = info {
            let summary = ConversationSummary {
                conversation: info.clone(),
                last_seq: change.read_seq,
                read_seq: change.read_seq,
                unread: 0,
                mentions: 0,
            };
            let joined = ServerEvent::Joined { summary };
            out.push(Publish::to_user(user, Frame::new(None, &joined)));
        }
    }
    out
}

/// The member list after `user`'s change, for the conversation's open sockets.
fn members_changed(change: &MemberChange, user: &UserId, members: Vec<Author>) -> Publish {
    Publish::members(
        change.conversation,
        change.change,
        &ServerEvent::Members {
            conversation: change.conversation,
            change: change.change,
            members,
        },
        user,
    )
}

impl Chat {
    /// Creates a channel for a named user (who becomes its first member), spending one of
    /// its address's new conversations.
    pub async fn create_channel(
        &self,
        user: &UserInfo,
        raw: &str,
        private: bool,
        ip: IpAddr,
    ) -> Result<ConversationInfo, AppError> {
        let author = Self::author(user)?;
        let name = validate_channel_name(raw)?;
        if let Some(existing) = self.store.channel_named(&name).await? {
            // A private channel's name is taken too, but not shown to outsiders.
            let shown = match access::readable(self.store.as_ref(), &user.id, existing.id).await {
                Ok(_) => existing.name.unwrap_or_default(),
                Err(_) => name,
            };
            return Err(AppError::ChannelTaken { name: shown });
        }
        if self.store.channel_count().await? >= self.limits.max_channels {
            return Err(AppError::TooManyChannels {
                max: self.limits.max_channels,
            });
        }
        self.check_membership_room(&user.id).await?;
        self.budgets.new_channel(ip).await?;
        let kind = if private {
            ConversationKind::Private
        } else {
            ConversationKind::Public
        };
        let me = user.id.clone();
        let channel = self
            .run(move |store| {
                Box::pin(async move {
                    let result = store.create_channel(name, kind, Some(&author)).await;
                    let mut publish = Vec::new();
                    if let Ok(info) = &result {
                        if let Ok(Some(summary)) = store.summary(info.id, &me).await {
                            let event = ServerEvent::Joined { summary };
                            publish.push(Publish::joined(&me, info.id, &event));
                        }
                    }
                    (result, publish)
                })
            })
            .await?;
        tracing::info!(channel = %channel.id, private, "channel created");
        Ok(channel)
    }

    /// Creates each default channel that does not exist yet (at start-up); everyone's
    /// sidebar lists them and opening one joins it.
    pub async fn ensure_channels(&self, names: &[String]) -> Result<(), AppError> {
        let mut ids = Vec::new();
        for raw in names {
            let name = validate_channel_name(raw)?;
            let id = match self
                .store
                .create_channel(name.clone(), ConversationKind::Public, None)
                .await
            {
                Ok(info) => info.id,
                Err(AppError::ChannelTaken { .. }) => {
                    match self.store.channel_named(&name).await? {
                        Some(info) => info.id,
                        None => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            ids.push(id);
        }
        *self.defaults.write().expect("defaults lock") = ids;
        Ok(())
    }

    /// Whether this conversation is one of the default channels.
    pub fn is_default(&self, id: ConversationId) -> bool {
        self.defaults.read().expect("defaults lock").contains(&id)
    }

    /// Refuses a user who belongs to as many conversations as allowed.
    pub(super) async fn check_membership_room(&self, user: &UserId) -> Result<(), AppError> {
        let max = self.limits.max_memberships;
        if self.store.membership_count(user).await? >= max {
            return Err(AppError::TooManyConversations { max });
        }
        Ok(())
    }

    /// The direct conversation of `user` and `others` (2 to [`MAX_DIRECT_MEMBERS`] people,
    /// all with names), started if need be: every member hears of it on their own stream.
    pub async fn open_direct(
        &self,
        user: &UserInfo,
        others: &[UserId],
        ip: IpAddr,
    ) -> Result<ConversationInfo, AppError> {
        let me = Self::author(user)?;
        let mut people = vec![me];
        for id in others {
            if people.iter().any(|p| &p.id == id) {
                continue;
            }
            let other = self.store.user(id).await?.ok_or(AppError::NoSuchUser)?;
            let name = other.name.ok_or(AppError::NoSuchUser)?;
            people.push(Author { id: other.id, name });
            if people.len() > MAX_DIRECT_MEMBERS {
                return Err(AppError::TooManyPeople {
                    max: MAX_DIRECT_MEMBERS,
                });
            }
        }
        if people.len() < 2 && others.is_empty() {
            return Err(AppError::NoSuchUser);
        }
        self.spend_write(&user.id).await?;
        if let Some(found) = self.existing_direct(&people).await? {
            return Ok(found);
        }
        // Everyone in it becomes a member, not only the one who starts it.
        for person in &people {
            self.check_membership_room(&person.id).await?;
        }
        self.budgets.new_channel(ip).await?;
        self.run(move |store| {
            Box::pin(async move {
                let result = store.open_direct(&people).await;
                let mut publish = Vec::new();
                if let Ok((info, true)) = &result {
                    for person in &info.people {
                        if let Ok(Some(summary)) = store.summary(info.id, &person.id).await {
                            let event = ServerEvent::Joined { summary };
                            publish.push(Publish::joined(&person.id, info.id, &event));
                        }
                    }
                }
                (result.map(|(info, _)| info), publish)
            })
        })
        .await
    }

    /// The direct conversation of exactly these people, if it exists (opening it again
    /// costs no budget).
    async fn existing_direct(
        &self,
        people: &[Author],
    ) -> Result<Option<ConversationInfo>, AppError> {
        let first = &people[0].id;
        for info in self.store.memberships_of(first).await? {
            if info.kind == ConversationKind::Direct && info.people.len() == people.len() {
                let all = people
                    .iter()
                    .all(|p| info.people.iter().any(|q| q.id == p.id));
                if all {
                    return Ok(Some(info));
                }
            }
        }
        Ok(None)
    }

    /// Joins a public channel.
    pub async fn join(&self, user: &UserInfo, id: ConversationId) -> Result<(), AppError> {
        let author = Self::author(user)?;
        let readable = access::joinable(self.store.as_ref(), &user.id, id).await?;
        if readable.member.is_some() {
            return Ok(());
        }
        self.spend_write(&user.id).await?;
        self.join_unchecked(readable.info.id, &author).await
    }

    /// Makes `author` a member of a conversation already checked (replying in a public
    /// channel, opening a default one, an invitation).
    pub(super) async fn join_unchecked(
        &self,
        id: ConversationId,
        author: &Author,
    ) -> Result<(), AppError> {
        self.check_membership_room(&author.id).await?;
        let author = author.clone();
        self.run(move |store| {
            Box::pin(async move {
                match store.join(id, &author).await {
                    Ok(Some(change)) => {
                        let joined = [(change, author.id.clone())];
                        let publish = joins_published(store.as_ref(), &joined).await;
                        (Ok(()), publish)
                    }
                    Ok(None) => (Ok(()), Vec::new()),
                    Err(e) => (Err(e), Vec::new()),
                }
            })
        })
        .await
    }

    /// Leaves a channel; a private one is then out of sight.
    pub async fn leave(&self, user: &UserInfo, id: ConversationId) -> Result<(), AppError> {
        access::leavable(self.store.as_ref(), &user.id, id).await?;
        self.spend_write(&user.id).await?;
        let me = user.id.clone();
        self.run(move |store| {
            Box::pin(async move {
                match store.leave(id, &me).await {
                    Ok(Some(change)) => {
                        let publish = left_published(store.as_ref(), &change, &me).await;
                        (Ok(()), publish)
                    }
                    Ok(None) => (Ok(()), Vec::new()),
                    Err(e) => (Err(e), Vec::new()),
                }
            })
        })
        .await
    }

    /// Adds someone (by id) to a channel `user` is a member of.
    pub async fn invite(
        &self,
        user: &UserInfo,
        id: ConversationId,
        invitee: &UserId,
    ) -> Result<(), AppError> {
        Self::author(user)?;
        let readable = access::invitable(self.store.as_ref(), &user.id, id).await?;
        let other = self
            .store
            .user(invitee)
            .await?
            .ok_or(AppError::NoSuchUser)?;
        let name = other.name.ok_or(AppError::NoSuchUser)?;
        self.spend_write(&user.id).await?;
        let author = Author { id: other.id, name };
        self.join_unchecked(readable.info.id, &author).await
    }

    /// The conversations of `user`'s sidebar: theirs (with unread counts), and the default
    /// channels they are not in.
    pub async fn sidebar(&self, user: &UserInfo) -> Result<Vec<ConversationSummary>, AppError> {
        let mut list = self.store.conversations_of(&user.id).await?;
        let defaults = self.defaults.read().expect("defaults lock").clone();
        for id in defaults {
            if list.iter().any(|s| s.conversation.id == id) {
                continue;
            }
            if let Some(conversation) = self.store.conversation(id).await? {
                list.push(ConversationSummary {
                    conversation,
                    last_seq: 0,
                    read_seq: 0,
                    unread: 0,
                    mentions: 0,
                });
            }
        }
        Ok(list)
    }

    /// One page of the public channels, by name, after `after` ("Browse channels").
    pub async fn browse(&self, after: Option<&str>) -> Result<Vec<ConversationInfo>, AppError> {
        self.store.channel_page(after, CHANNEL_PAGE).await
    }

    /// Named people whose name starts with `prefix` (for starting a direct message).
    pub async fn find_people(
        &self,
        user: &UserInfo,
        prefix: &str,
    ) -> Result<Vec<UserInfo>, AppError> {
        Self::author(user)?;
        let prefix = prefix.trim();
        if prefix.is_empty() || prefix.chars().count() > crate::protocol::MAX_DISPLAY_NAME_CHARS {
            return Ok(Vec::new());
        }
        self.opens.check(&user.id.0, 1).await?;
        self.store.users_named(prefix, PEOPLE_FOUND).await
    }

    /// The members of a conversation `user` may read, each with whether they are online.
    pub async fn members(
        &self,
        user: &UserId,
        id: ConversationId,
    ) -> Result<Vec<Member>, AppError> {
        let readable = access::readable(self.store.as_ref(), user, id).await?;
        let members = self
            .store
            .members(readable.governing.id, MEMBERS_SHOWN)
            .await?;
        let ids: Vec<UserId> = members.iter().map(|m| m.id.clone()).collect();
        let statuses = self.presence.statuses(&ids).await;
        Ok(members
            .into_iter()
            .zip(statuses)
            .map(|(user, status)| Member {
                online: status == PresenceStatus::Online,
                user,
            })
            .collect())
    }

    /// The channel named `name` (any case), if `user` may read it.
    pub async fn channel_named(&self, user: &UserId, name: &str) -> Result<Readable, AppError> {
        let missing = || AppError::NoSuchChannel {
            name: name.to_string(),
        };
        let info = self.store.channel_named(name).await?.ok_or_else(missing)?;
        access::readable(self.store.as_ref(), user, info.id)
            .await
            .map_err(|_| missing())
    }

    /// The store, shared (for jobs that outlive a request).
    pub fn shared_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}
