//! The rules of Flack in one place: validation, rate limits, ownership, ordering and fan-out.
//! Server functions and the WebSocket both go through [`Chat`], so they behave the same.
//!
//! Every write passes through one pipeline task: it stores whatever has queued up as one batch
//! (one commit for the SQLite store), then publishes each new message in sequence order, then
//! answers the callers. So an acknowledgement always means "committed", subscribers always see
//! sequence order, and durability costs one commit per batch, not per message.

use super::budgets::Budgets;
use super::hub::{Frame, Hub, Subscription, Topic};
use super::store::{Appended, NewMessage, Store};
use super::window_frames::{Joined, WindowFrames};
use crate::error::AppError;
use crate::protocol::{
    channel_key, validate_channel_name, validate_client_id, validate_display_name,
    validate_message_body, Author, ChannelHistory, ChannelInfo, Message, MessageId, ServerEvent,
    UserId, UserInfo, CHANNEL_PAGE,
};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most writes stored in one batch.
const MAX_BATCH: usize = 512;
/// Writes waiting for the pipeline before callers wait for room.
const QUEUE: usize = 8192;

/// How fast one user may post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostLimit {
    /// Messages per second, sustained.
    pub per_second: u32,
    /// Messages allowed at once before the rate applies.
    pub burst: u32,
}

/// The limits [`Chat`] enforces besides the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many recent messages a join returns.
    pub window: usize,
    /// How fast one user may write (post or delete).
    pub post: PostLimit,
    /// How fast one user may open channels over sockets.
    pub open: PostLimit,
    /// Channels the server holds at most.
    pub max_channels: usize,
    /// Bytes of serialized join answers kept to share between joins.
    pub join_cache_bytes: usize,
}

impl PostLimit {
    fn quota(&self) -> Quota {
        let per_second = NonZeroU32::new(self.per_second.max(1)).expect("at least one");
        let burst = NonZeroU32::new(self.burst.max(1)).expect("at least one");
        Quota::per_second(per_second).allow_burst(burst)
    }
}

/// Flack's application service: a [`Store`] and a [`Hub`] kept in step.
pub struct Chat {
    store: Arc<dyn Store>,
    hub: Arc<dyn Hub>,
    window: usize,
    max_channels: usize,
    writes: mpsc::Sender<Write>,
    limiter: DefaultKeyedRateLimiter<UserId>,
    opens: DefaultKeyedRateLimiter<UserId>,
    budgets: Budgets,
    frames: Arc<WindowFrames>,
    /// The channels everyone sees in the sidebar (the configured defaults), by key.
    defaults: std::sync::RwLock<Vec<String>>,
    /// The channel each user opened last, so that reopening it writes nothing.
    last_visit: std::sync::Mutex<lru::LruCache<UserId, String>>,
}

/// Users whose last visit is remembered in memory.
const LAST_VISITS: usize = 10_000;

enum Write {
    Post {
        message: NewMessage,
        reply: oneshot::Sender<Result<Appended, AppError>>,
    },
    Delete {
        id: MessageId,
        by: UserId,
        reply: oneshot::Sender<Result<Message, AppError>>,
    },
}

impl Chat {
    /// Wires a store and a hub and starts the write pipeline (needs a Tokio runtime).
    pub fn new(store: Arc<dyn Store>, hub: Arc<dyn Hub>, limits: Limits, budgets: Budgets) -> Self {
        let (writes, queue) = mpsc::channel(QUEUE);
        let frames = Arc::new(WindowFrames::new(limits.join_cache_bytes));
        tokio::spawn(pipeline(store.clone(), hub.clone(), frames.clone(), queue));
        Chat {
            frames,
            store,
            hub,
            window: limits.window,
            max_channels: limits.max_channels,
            writes,
            limiter: DefaultKeyedRateLimiter::keyed(limits.post.quota()),
            opens: DefaultKeyedRateLimiter::keyed(limits.open.quota()),
            budgets,
            defaults: Default::default(),
            last_visit: std::sync::Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(LAST_VISITS).expect("not zero"),
            )),
        }
    }

    /// The hub (for tests and metrics).
    pub fn hub(&self) -> &dyn Hub {
        self.hub.as_ref()
    }

    /// The store, for identity look-ups.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Opens an existing channel for `user`: subscribes to its events (before anything is
    /// read, so nothing published meanwhile is missed) and remembers the visit. Nothing is
    /// subscribed for a channel that does not exist, so made-up names cost nothing.
    pub async fn open_channel(
        &self,
        user: &UserInfo,
        name: &str,
    ) -> Result<(ChannelInfo, Subscription), AppError> {
        let channel = self.existing(name).await?;
        let frames = self
            .hub
            .subscribe(&Topic::Channel(channel_key(&channel.name)));
        self.visited(user, &channel.name).await;
        Ok((channel, frames))
    }

    /// Remembers that a named user opened a channel (for their sidebar); best effort.
    pub async fn visited(&self, user: &UserInfo, channel: &str) {
        if user.name.is_none() {
            return;
        }
        let key = channel_key(channel);
        {
            let mut last = self.last_visit.lock().expect("visits lock");
            if last.get(&user.id) == Some(&key) {
                return;
            }
            last.put(user.id.clone(), key);
        }
        if let Err(e) = self.store.record_visit(&user.id, channel).await {
            tracing::warn!(error = %e, "could not remember a visit");
        }
    }

    /// Sets a user's display name after checking it. A provisional user (`provisional` holds
    /// its token's hash) is stored now, with its first name, spending one of its address's
    /// new identities.
    pub async fn set_display_name(
        &self,
        user: &UserId,
        provisional: Option<String>,
        raw: &str,
        ip: IpAddr,
    ) -> Result<UserInfo, AppError> {
        let name = validate_display_name(raw)?;
        match provisional {
            Some(token_hash) => {
                self.budgets.new_identity(ip)?;
                self.store.store_user(user.clone(), token_hash, name).await
            }
            None => self.store.set_display_name(user, name).await,
        }
    }

    /// The budgets (for `POST /auth/session`).
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Creates a channel for a named user, spending one of its address's new channels.
    pub async fn create_channel(
        &self,
        user: &UserInfo,
        raw: &str,
        ip: IpAddr,
    ) -> Result<ChannelInfo, AppError> {
        if user.name.is_none() {
            return Err(AppError::NoDisplayName);
        }
        let name = validate_channel_name(raw)?;
        if let Some(existing) = self.store.channel(&name).await? {
            return Err(AppError::ChannelTaken {
                name: existing.name,
            });
        }
        if self.store.channel_count().await? >= self.max_channels {
            return Err(AppError::TooManyChannels {
                max: self.max_channels,
            });
        }
        self.budgets.new_channel(ip)?;
        let channel = self.store.create_channel(name).await?;
        tracing::info!(channel = %channel.name, "channel created");
        self.visited(user, &channel.name).await;
        Ok(channel)
    }

    /// Creates each channel that does not exist yet (start-up defaults); everyone's sidebar
    /// lists them.
    pub async fn ensure_channels(&self, names: &[String]) -> Result<(), AppError> {
        let mut keys = Vec::new();
        for raw in names {
            let name = validate_channel_name(raw)?;
            match self.store.create_channel(name.clone()).await {
                Ok(_) | Err(AppError::ChannelTaken { .. }) => keys.push(channel_key(&name)),
                Err(e) => return Err(e),
            }
        }
        *self.defaults.write().expect("defaults lock") = keys;
        Ok(())
    }

    /// The channels of `user`'s sidebar: the defaults, then those they opened lately, by
    /// name. Bounded whatever the number of channels.
    pub async fn sidebar(&self, user: &UserInfo) -> Result<Vec<ChannelInfo>, AppError> {
        let defaults = self.defaults.read().expect("defaults lock").clone();
        let mut list = Vec::new();
        for key in &defaults {
            if let Some(channel) = self.store.channel(key).await? {
                list.push(channel);
            }
        }
        for channel in self.store.recent_channels(&user.id).await? {
            if !defaults.contains(&channel_key(&channel.name)) {
                list.push(channel);
            }
        }
        list.sort_by_key(|c| channel_key(&c.name));
        Ok(list)
    }

    /// One page of every channel, by name, after `after` ("Browse channels").
    pub async fn browse(&self, after: Option<&str>) -> Result<Vec<ChannelInfo>, AppError> {
        self.store.channel_page(after, CHANNEL_PAGE).await
    }

    async fn existing(&self, name: &str) -> Result<ChannelInfo, AppError> {
        self.store
            .channel(name)
            .await?
            .ok_or_else(|| AppError::NoSuchChannel {
                name: name.to_string(),
            })
    }

    /// A channel with its recent messages.
    pub async fn history(&self, name: &str) -> Result<ChannelHistory, AppError> {
        let channel = self.existing(name).await?;
        let messages = self.store.recent(&channel.name, self.window).await?;
        Ok(ChannelHistory { channel, messages })
    }

    /// A channel with up to a window's worth of messages older than `before_seq`.
    pub async fn older(&self, name: &str, before_seq: u64) -> Result<ChannelHistory, AppError> {
        let channel = self.existing(name).await?;
        let messages = self
            .store
            .before(&channel.name, before_seq, self.window)
            .await?;
        Ok(ChannelHistory { channel, messages })
    }

    /// The answer to a subscribe, serialized: for a fresh join the channel's window, built
    /// once and shared until the channel changes; after a reconnect what was missed.
    pub async fn join_answer(
        &self,
        channel: &str,
        after_seq: Option<u64>,
        oldest_seq: Option<u64>,
    ) -> Result<Joined, AppError> {
        let serialize = |event: &ServerEvent, seen: Option<u64>| {
            let ServerEvent::Subscribed {
                messages, reset, ..
            } = event
            else {
                unreachable!("catch_up answers with Subscribed")
            };
            let seen = if *reset { None } else { seen };
            Joined {
                last_seq: messages.last().map(|m| m.seq).or(seen).unwrap_or(0),
                text: Frame::new(None, event).text,
            }
        };
        if after_seq.is_some() {
            let event = self.catch_up(channel, after_seq, oldest_seq).await?;
            return Ok(serialize(&event, after_seq));
        }
        let key = channel_key(channel);
        let generation = match self.frames.get(&key) {
            Ok(joined) => return Ok(joined),
            Err(generation) => generation,
        };
        let event = self.catch_up(channel, None, None).await?;
        let joined = serialize(&event, None);
        self.frames.put(&key, generation, joined.clone());
        Ok(joined)
    }

    /// The next page of a channel after `after_seq`, for replaying a socket that fell far
    /// behind; `None` when the store no longer holds it all (then the socket is reset).
    pub async fn replay_page(
        &self,
        channel: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<Vec<Message>>, AppError> {
        self.store.after(channel, after_seq, limit).await
    }

    /// What a subscriber that last saw `after_seq` missed (`None`: it saw nothing yet);
    /// deletions are reported back to `oldest_seq` (by default a window before `after_seq`).
    pub async fn catch_up(
        &self,
        channel: &str,
        after_seq: Option<u64>,
        oldest_seq: Option<u64>,
    ) -> Result<ServerEvent, AppError> {
        let name = self.existing(channel).await?.name;
        let event = match after_seq {
            None => ServerEvent::Subscribed {
                messages: self.store.recent(&name, self.window).await?,
                channel: name,
                removed: Vec::new(),
                reset: true,
            },
            Some(after) => {
                let oldest = oldest_seq.unwrap_or(after.saturating_sub(self.window as u64));
                let up = self.store.since(&name, after, oldest).await?;
                ServerEvent::Subscribed {
                    channel: name,
                    messages: up.messages,
                    removed: up.removed,
                    reset: up.reset,
                }
            }
        };
        Ok(event)
    }

    /// Stores a message from `user` and sends it to the channel's subscribers; answers once it
    /// is committed. A `client_id` the user sent before returns the original (`fresh: false`)
    /// and sends nothing again.
    pub async fn post(
        &self,
        user: &UserInfo,
        channel: &str,
        body: &str,
        client_id: Option<String>,
    ) -> Result<Appended, AppError> {
        let answer = self.submit_post(user, channel, body, client_id).await?;
        settle(answer).await
    }

    /// Checks a message and queues it for storing, in order; the answer comes when it is
    /// committed. Lets one connection keep many messages in flight without reordering them.
    pub async fn submit_post(
        &self,
        user: &UserInfo,
        channel: &str,
        body: &str,
        client_id: Option<String>,
    ) -> Result<Answer<Appended>, AppError> {
        let name = user.name.clone().ok_or(AppError::NoDisplayName)?;
        let body = validate_message_body(body)?;
        let client_id = client_id.as_deref().map(validate_client_id).transpose()?;
        self.spend_write(&user.id)?;
        let (reply, answer) = oneshot::channel();
        let message = NewMessage {
            channel: channel.to_string(),
            author: Author {
                id: user.id.clone(),
                name,
            },
            body,
            client_id,
        };
        self.enqueue(Write::Post { message, reply }).await?;
        Ok(answer)
    }

    /// Spends one of the user's writes (posts and deletions share the rate).
    fn spend_write(&self, user: &UserId) -> Result<(), AppError> {
        self.limiter.check_key(user).map_err(refusal)
    }

    /// Deletes `user`'s own message and tells the channel.
    pub async fn delete(&self, user: &UserId, id: &MessageId) -> Result<Message, AppError> {
        self.spend_write(user)?;
        let (reply, answer) = oneshot::channel();
        let write = Write::Delete {
            id: id.clone(),
            by: user.clone(),
            reply,
        };
        self.enqueue(write).await?;
        settle(answer).await
    }

    async fn enqueue(&self, write: Write) -> Result<(), AppError> {
        self.writes
            .send(write)
            .await
            .map_err(|_| AppError::internal("the write pipeline has stopped"))
    }

    /// Forgets rate-limit state of users and addresses idle long enough to be back at full
    /// burst.
    pub fn forget_idle_limits(&self) {
        self.limiter.retain_recent();
        self.opens.retain_recent();
        self.budgets.forget_idle();
    }
}

/// A rate limit's refusal, saying when to try again.
fn refusal(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> AppError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    AppError::RateLimited {
        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
    }
}

/// The pipeline's answer to one queued write.
pub type Answer<T> = oneshot::Receiver<Result<T, AppError>>;

/// Waits for the pipeline's answer.
pub async fn settle<T>(answer: Answer<T>) -> Result<T, AppError> {
    answer
        .await
        .map_err(|_| AppError::internal("the write pipeline dropped a write"))?
}

/// Stores queued writes in batches, then publishes and answers, in order.
async fn pipeline(
    store: Arc<dyn Store>,
    hub: Arc<dyn Hub>,
    frames: Arc<WindowFrames>,
    mut queue: mpsc::Receiver<Write>,
) {
    let mut held: Option<Write> = None;
    loop {
        let first = match held.take() {
            Some(write) => write,
            None => match queue.recv().await {
                Some(write) => write,
                None => return,
            },
        };
        match first {
            Write::Post { message, reply } => {
                let mut messages = vec![message];
                let mut replies = vec![reply];
                while messages.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(Write::Post { message, reply }) => {
                            messages.push(message);
                            replies.push(reply);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let results = store.append_batch(messages).await;
                for (result, reply) in results.into_iter().zip(replies) {
                    if let Ok(appended) = &result {
                        if appended.fresh {
                            let message = &appended.message;
                            frames.invalidate(&channel_key(&message.channel));
                            let event = ServerEvent::Message {
                                message: message.clone(),
                            };
                            hub.publish(
                                &Topic::Channel(channel_key(&message.channel)),
                                Frame::new(Some(message.seq), &event),
                            );
                        }
                    }
                    let _ = reply.send(result);
                }
            }
            Write::Delete { id, by, reply } => {
                let result = store.delete(&id, &by).await;
                if let Ok(message) = &result {
                    frames.invalidate(&channel_key(&message.channel));
                    let event = ServerEvent::MessageDeleted {
                        channel: message.channel.clone(),
                        message_id: message.id.clone(),
                        seq: message.seq,
                    };
                    hub.publish(
                        &Topic::Channel(channel_key(&message.channel)),
                        Frame::new(None, &event),
                    );
                }
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::budgets::Allowance;
    use crate::server::hub::MemoryHub;
    use crate::server::store::MemoryStore;

    const GENEROUS: PostLimit = PostLimit {
        per_second: 10_000,
        burst: 10_000,
    };

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn chat_with(limit: PostLimit) -> Chat {
        let plenty = Allowance {
            per_hour: 1000,
            burst: 1000,
        };
        Chat::new(
            Arc::new(MemoryStore::new(100)),
            Arc::new(MemoryHub::new(256)),
            Limits {
                window: 100,
                post: limit,
                open: limit,
                max_channels: 5,
                join_cache_bytes: 1 << 20,
            },
            Budgets::new(plenty, plenty),
        )
    }

    fn chat() -> Chat {
        chat_with(GENEROUS)
    }

    async fn named(chat: &Chat, token: &str, name: &str) -> UserInfo {
        chat.store()
            .create_user(token.into(), Some(name.into()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn posting_validates_and_fans_out_once_serialized() {
        let chat = chat();
        chat.ensure_channels(&["general".into()]).await.unwrap();
        let ada = named(&chat, "a", "Ada").await;
        let mut sub = chat.hub().subscribe(&Topic::Channel("general".into()));
        let m = chat
            .post(&ada, "General", "hi <b>", None)
            .await
            .unwrap()
            .message;
        let frame = sub.recv().await.unwrap();
        assert_eq!(frame.seq, Some(m.seq));
        let event: ServerEvent = serde_json::from_str(frame.text.as_str()).unwrap();
        assert_eq!(event, ServerEvent::Message { message: m });
        assert_eq!(
            chat.post(&ada, "general", "  ", None).await,
            Err(AppError::MessageEmpty)
        );
        assert!(sub.try_recv().is_err(), "nothing invalid is broadcast");
    }

    #[tokio::test]
    async fn a_retried_send_is_acknowledged_but_not_broadcast_again() {
        let chat = chat();
        chat.ensure_channels(&["general".into()]).await.unwrap();
        let ada = named(&chat, "a", "Ada").await;
        let mut sub = chat.hub().subscribe(&Topic::Channel("general".into()));
        let first = chat
            .post(&ada, "general", "once", Some("k".into()))
            .await
            .unwrap();
        let again = chat
            .post(&ada, "general", "once", Some("k".into()))
            .await
            .unwrap();
        assert!(first.fresh && !again.fresh);
        assert_eq!(first.message, again.message);
        assert!(sub.recv().await.is_ok());
        assert!(sub.try_recv().is_err());
    }

    #[tokio::test]
    async fn joins_share_one_window_until_the_channel_changes() {
        let chat = chat();
        chat.ensure_channels(&["general".into()]).await.unwrap();
        let ada = named(&chat, "a", "Ada").await;
        let first = chat
            .post(&ada, "general", "one", None)
            .await
            .unwrap()
            .message;
        let a = chat.join_answer("general", None, None).await.unwrap();
        let b = chat.join_answer("General", None, None).await.unwrap();
        assert_eq!(
            a.text.as_str().as_ptr(),
            b.text.as_str().as_ptr(),
            "built once"
        );
        assert_eq!(a.last_seq, first.seq);
        let second = chat
            .post(&ada, "general", "two", None)
            .await
            .unwrap()
            .message;
        let c = chat.join_answer("general", None, None).await.unwrap();
        assert!(c.text.as_str().contains(r#""body":"two""#));
        assert_eq!(c.last_seq, second.seq);
        chat.delete(&ada.id, &second.id).await.unwrap();
        let d = chat.join_answer("general", None, None).await.unwrap();
        assert!(
            !d.text.as_str().contains(r#""body":"two""#),
            "a deletion shows at once"
        );
        assert_eq!(d.last_seq, first.seq);
    }

    #[tokio::test]
    async fn nameless_users_cannot_post() {
        let chat = chat();
        chat.ensure_channels(&["general".into()]).await.unwrap();
        let anon = chat.store().create_user("x".into(), None).await.unwrap();
        assert_eq!(
            chat.post(&anon, "general", "hi", None).await,
            Err(AppError::NoDisplayName)
        );
    }

    #[tokio::test]
    async fn flooding_is_refused_per_user() {
        let chat = chat_with(PostLimit {
            per_second: 1,
            burst: 3,
        });
        chat.ensure_channels(&["general".into()]).await.unwrap();
        let ada = named(&chat, "a", "Ada").await;
        let bob = named(&chat, "b", "Bob").await;
        for i in 0..3 {
            chat.post(&ada, "general", &format!("{i}"), None)
                .await
                .unwrap();
        }
        let refused = chat.post(&ada, "general", "too many", None).await;
        assert!(
            matches!(refused, Err(AppError::RateLimited { retry_after_ms }) if retry_after_ms > 0)
        );
        // Someone else is not held back by Ada's flood.
        assert!(chat.post(&bob, "general", "hello", None).await.is_ok());
        assert_eq!(chat.history("general").await.unwrap().messages.len(), 4);
    }

    #[tokio::test]
    async fn channels_need_a_name_and_stop_at_the_cap() {
        let chat = chat();
        let anon = chat.store().create_user("x".into(), None).await.unwrap();
        assert_eq!(
            chat.create_channel(&anon, "mine", HERE).await,
            Err(AppError::NoDisplayName)
        );
        let ada = named(&chat, "a", "Ada").await;
        let made = chat.create_channel(&ada, " #Random ", HERE).await.unwrap();
        assert_eq!(made.name, "Random");
        assert!(matches!(
            chat.create_channel(&ada, "random", HERE).await,
            Err(AppError::ChannelTaken { .. })
        ));
        // The creator's sidebar lists it; nobody else's does.
        let bob = named(&chat, "b", "Bob").await;
        assert!(chat
            .sidebar(&ada)
            .await
            .unwrap()
            .iter()
            .any(|c| c.name == "Random"));
        assert!(!chat
            .sidebar(&bob)
            .await
            .unwrap()
            .iter()
            .any(|c| c.name == "Random"));
        for i in 1..5 {
            chat.create_channel(&ada, &format!("c{i}"), HERE)
                .await
                .unwrap();
        }
        assert_eq!(
            chat.create_channel(&ada, "one-too-many", HERE).await,
            Err(AppError::TooManyChannels { max: 5 })
        );
    }

    #[tokio::test]
    async fn concurrent_posts_are_published_in_sequence_order() {
        let chat = Arc::new(chat());
        chat.ensure_channels(&["race".into()]).await.unwrap();
        let mut sub = chat.hub().subscribe(&Topic::Channel("race".into()));
        let mut tasks = Vec::new();
        for t in 0..8 {
            let chat = chat.clone();
            let user = named(&chat, &format!("t{t}"), &format!("u{t}")).await;
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    chat.post(&user, "race", &format!("{t}-{i}"), None)
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        for want in 1..=200u64 {
            assert_eq!(sub.recv().await.unwrap().seq, Some(want));
        }
    }
}
