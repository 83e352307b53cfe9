//! Flack's application service: validation, access, rate limits, ordering and fan-out.
//! Pages, server functions, form posts and the WebSocket all go through [`Chat`], so they
//! behave the same. Each capability has its own file: [`conversations`] (channels, direct
//! messages, membership, the sidebar), [`reading`] (opening, history, catch-up, read
//! positions), [`posting`] (messages and replies, mentions), [`changes`] (edits, deletions,
//! reactions) and [`signals`] (typing, presence).
//!
//! Every change to a conversation passes through one [`pipeline`]: it stores whatever has
//! queued up (posts as one batch, one commit), then publishes each change in number order,
//! then answers the callers. So an acknowledgement always means "committed", subscribers see
//! each conversation's changes in order, and durability costs one commit per batch.

mod changes;
mod conversations;
mod people;
mod pipeline;
mod posting;
mod reading;
mod relay;
mod signals;

use super::access::AccessCache;
use super::budgets::Budgets;
use super::hub::{Frame, Hub, Topic};
use super::limits::{Backing, RateLimiter};
use super::metrics::PipelineStats;
use super::store::{Appended, NewMessage, Store};
use super::window_frames::WindowFrames;
use crate::error::AppError;
use crate::protocol::{ConversationId, ServerEvent, UserId};
use crate::server::limits::presence::PresenceBook;
use futures_util::future::BoxFuture;
use governor::Quota;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the pipeline before callers wait for room.
const QUEUE: usize = 8192;
/// Conversations whose member ids are kept for the users' streams.
const MEMBER_LISTS: usize = 4096;
/// Members of one conversation told of its activity on their own streams at most.
const MAX_STREAM_MEMBERS: usize = 10_000;
/// Conversations whose kind and parent the posting path keeps (see [`AccessCache`]).
const ACCESS_CONVERSATIONS: usize = 4096;
/// Memberships (conversation, user) the posting path keeps.
const ACCESS_MEMBERSHIPS: usize = 65_536;

/// How fast one user may do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostLimit {
    /// Actions per second, sustained.
    pub per_second: u32,
    /// Actions allowed at once before the rate applies.
    pub burst: u32,
}

/// The limits [`Chat`] enforces besides the budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many recent messages a join returns.
    pub window: usize,
    /// How fast one user may write (post, reply, edit, delete, react, join, leave, invite).
    pub post: PostLimit,
    /// How fast one user may open conversations over sockets.
    pub open: PostLimit,
    /// Channels the server holds at most.
    pub max_channels: usize,
    /// Conversations one user may belong to at most.
    pub max_memberships: usize,
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

/// A [`Store`] and a [`Hub`] kept in step.
pub struct Chat {
    store: Arc<dyn Store>,
    hub: Arc<dyn Hub>,
    limits: Limits,
    writes: mpsc::Sender<Write>,
    /// Writes per user.
    limiter: Arc<dyn RateLimiter>,
    /// Opens per user.
    opens: Arc<dyn RateLimiter>,
    /// Typing signals, one per user per few seconds.
    typing: Arc<dyn RateLimiter>,
    budgets: Budgets,
    frames: Arc<WindowFrames>,
    /// What the write pipeline has stored, for `/metrics`.
    stats: Arc<PipelineStats>,
    /// The default channels (everyone's sidebar lists them; opening one joins it).
    defaults: std::sync::RwLock<Vec<ConversationId>>,
    presence: Arc<dyn PresenceBook>,
    /// What posting checks, kept; the pipeline forgets what membership changes make stale.
    access: Arc<AccessCache>,
    /// Member ids by conversation, for activity on the members' own streams.
    member_ids: Arc<MemberIds>,
}

/// Member ids by conversation, a bounded cache dropped on every membership change.
type MemberIds = Mutex<lru::LruCache<ConversationId, Arc<Vec<UserId>>>>;

/// Something to publish once a write has committed. A change of membership says so in its
/// frame ([`Frame::member`]): the cached membership and the conversation's cached member
/// ids are then forgotten as it is published here, and as it arrives on every other node.
pub struct Publish {
    topic: Topic,
    frame: Frame,
}

impl Publish {
    /// A numbered change of a conversation, for the sockets that have it open.
    fn change(conversation: ConversationId, change: u64, event: &ServerEvent) -> Self {
        Publish {
            topic: Topic::Conversation(conversation),
            frame: Frame::new(Some(change), event),
        }
    }

    /// A change of `user`'s membership of a conversation (numbered like any change).
    fn members(
        conversation: ConversationId,
        change: u64,
        event: &ServerEvent,
        user: &UserId,
    ) -> Self {
        let publish = Publish::change(conversation, change, event);
        Publish {
            frame: publish.frame.for_member(conversation, user),
            ..publish
        }
    }

    /// An event on one user's own stream.
    fn to_user(user: &UserId, frame: Frame) -> Self {
        Publish {
            topic: Topic::User(user.clone()),
            frame,
        }
    }

    /// On `user`'s own stream: they became a member of `conversation` (one just created).
    fn joined(user: &UserId, conversation: ConversationId, event: &ServerEvent) -> Self {
        Publish::to_user(user, Frame::new(None, event).for_member(conversation, user))
    }
}

/// A write other than a post: it runs in turn, and what it returns is published in order.
type Job = Box<dyn FnOnce(Arc<dyn Store>) -> BoxFuture<'static, Vec<Publish>> + Send>;

/// Where a post's caller waits for it to be stored.
type Reply = oneshot::Sender<Result<Appended, AppError>>;

enum Write {
    Post { message: NewMessage, reply: Reply },
    Job(Job),
}

impl Chat {
    /// Wires a store and a hub and starts the write pipeline (needs a Tokio runtime); rate
    /// limits and presence in this process.
    pub fn new(store: Arc<dyn Store>, hub: Arc<dyn Hub>, limits: Limits, budgets: Budgets) -> Self {
        Self::with_backing(store, hub, limits, budgets, &Backing::Local)
    }

    /// The same, with rate limits and presence on `backing` (shared by a cluster's nodes).
    pub fn with_backing(
        store: Arc<dyn Store>,
        hub: Arc<dyn Hub>,
        limits: Limits,
        budgets: Budgets,
        backing: &Backing,
    ) -> Self {
        let (writes, queue) = mpsc::channel(QUEUE);
        let frames = Arc::new(WindowFrames::new(limits.join_cache_bytes));
        let member_ids = Arc::new(Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(MEMBER_LISTS).expect("not zero"),
        )));
        let access = Arc::new(AccessCache::new(ACCESS_CONVERSATIONS, ACCESS_MEMBERSHIPS));
        let stats = Arc::new(PipelineStats::default());
        let forget = Arc::new(Forget {
            access: access.clone(),
            member_ids: member_ids.clone(),
            frames: frames.clone(),
        });
        hub.attach(Arc::new(relay::ChatRelay::new(
            store.clone(),
            forget.clone(),
        )));
        let pipeline = pipeline::Pipeline {
            store: store.clone(),
            hub: hub.clone(),
            stats: stats.clone(),
            forget,
        };
        tokio::spawn(pipeline.run(queue));
        let presence = backing.presence();
        if let Some(departures) = presence.departures() {
            tokio::spawn(signals::announce_departures(
                departures,
                presence.clone(),
                store.clone(),
                hub.clone(),
            ));
        }
        Chat {
            frames,
            stats,
            store,
            hub,
            limits,
            writes,
            limiter: backing.limiter("write", limits.post.quota()),
            opens: backing.limiter("open", limits.open.quota()),
            typing: backing.limiter(
                "typing",
                Quota::with_period(std::time::Duration::from_secs(3)).expect("not zero"),
            ),
            budgets,
            defaults: Default::default(),
            presence,
            access,
            member_ids,
        }
    }

    /// What the posting path keeps of access (for tests of its bounds).
    pub fn access_cache(&self) -> &AccessCache {
        &self.access
    }

    /// Conversations whose member ids are cached now (bounded by [`MEMBER_LISTS`]).
    pub fn member_lists_cached(&self) -> usize {
        self.member_ids.lock().expect("members lock").len()
    }

    /// The hub (for tests and metrics).
    pub fn hub(&self) -> &dyn Hub {
        self.hub.as_ref()
    }

    /// What the write pipeline has stored so far (for `/metrics`).
    pub fn pipeline_stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The store, for identity look-ups and the readiness probe.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The budgets (for `POST /auth/session`).
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Spends one of the user's writes (every kind of write shares the rate).
    async fn spend_write(&self, user: &UserId) -> Result<(), AppError> {
        self.limiter.check(&user.0, 1).await
    }

    async fn enqueue(&self, write: Write) -> Result<(), AppError> {
        self.writes
            .send(write)
            .await
            .map_err(|_| AppError::internal("the write pipeline has stopped"))
    }

    /// Runs `write` in the pipeline's turn, publishes what it returns, and answers with its
    /// result.
    async fn run<T, F>(&self, write: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> BoxFuture<'static, (Result<T, AppError>, Vec<Publish>)>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            Box::pin(async move {
                let (result, publish) = write(store).await;
                let _ = reply.send(result);
                publish
            })
        });
        self.enqueue(Write::Job(job)).await?;
        settle(answer).await
    }

    /// Forgets in-process rate-limit state of users and addresses idle long enough to be
    /// back at full burst (on Redis, idle keys expire by themselves).
    pub fn forget_idle_limits(&self) {
        self.limiter.forget_idle();
        self.opens.forget_idle();
        self.typing.forget_idle();
        self.budgets.forget_idle();
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

/// The member ids of a conversation, cached.
async fn member_ids(store: &dyn Store, cache: &MemberIds, id: ConversationId) -> Arc<Vec<UserId>> {
    if let Some(ids) = cache.lock().expect("members lock").get(&id) {
        return ids.clone();
    }
    let ids = match store.members(id, MAX_STREAM_MEMBERS).await {
        Ok(members) => Arc::new(members.into_iter().map(|m| m.id).collect::<Vec<_>>()),
        Err(_) => return Arc::default(),
    };
    cache.lock().expect("members lock").put(id, ids.clone());
    ids
}

/// The caches in front of the store that published changes make stale: the recent
/// windows, memberships and member ids. The pipeline forgets as it publishes; other nodes
/// forget as the frames arrive ([`relay::ChatRelay`]).
struct Forget {
    access: Arc<AccessCache>,
    member_ids: Arc<MemberIds>,
    frames: Arc<WindowFrames>,
}

impl Forget {
    /// Forgets what `frame`, published on `topic`, makes stale.
    fn published(&self, topic: &Topic, frame: &Frame) {
        if let (Topic::Conversation(id), Some(_)) = (topic, frame.change) {
            self.frames.invalidate(*id);
        }
        if let Some(member) = &frame.member {
            let (conversation, user) = member.as_ref();
            self.access.forget_member(*conversation, user);
            self.member_ids
                .lock()
                .expect("members lock")
                .pop(conversation);
        }
    }
}

impl Forget {
    /// Forgets everything cached (the bus lost frames: any of it may be stale).
    fn everything(&self) {
        self.frames.clear();
        self.access.forget_memberships();
        self.member_ids.lock().expect("members lock").clear();
    }
}

/// Publishes after a commit. The frame is delivered here whatever the bus says; if other
/// nodes could not be told, they heal from the store when they notice.
async fn publish(hub: &dyn Hub, topic: &Topic, frame: Frame) {
    if let Err(e) = hub.publish(topic, frame).await {
        tracing::debug!(error = %e, "published here only");
    }
}

#[cfg(test)]
mod tests;
