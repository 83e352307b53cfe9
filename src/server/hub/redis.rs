//! The hub of a cluster: every node delivers its own frames to its own subscribers at once
//! and publishes them on Redis; every node relays what the others published to its local
//! subscribers. A node subscribes on Redis only to the topics its sockets follow.
//!
//! Redis pub/sub is at most once: a frame can be lost (a restart, a cut connection) and two
//! nodes' frames can cross. So each node keeps, per conversation it relays, the last change
//! number it delivered, and a frame past a missing number is preceded by a catch-up read
//! from the store ([`Relay::heal`]). When the connection to Redis comes back, every followed
//! conversation is healed the same way, and users' own streams (which carry no numbers) are
//! told to refresh. Publishing to Redis happens off the caller's path, in pipelined batches,
//! so a slow or absent bus never holds up a commit.

use super::{
    Frame, Hub, HubError, HubStats, MemoryHub, Relay, StreamNote, Subscription, Topic, Views,
};
use crate::protocol::{ConversationId, ServerEvent, UserId};
use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, OnceCell};

/// Frames waiting to be published on Redis; past this the bus is behind and frames are
/// dropped for it (other nodes heal them from the store).
const OUTBOX: usize = 65_536;
/// Frames published in one pipelined round trip at most.
const PUBLISH_BATCH: usize = 512;
/// How long one Redis request may take before the bus counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often channels no local socket follows any more are unsubscribed.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Changes read from the store to heal one gap at most (a wider gap is left to the
/// subscribers, which replay page by page).
pub const HEAL_LIMIT: usize = 1000;

/// Where and how a [`RedisHub`] connects.
#[derive(Debug, Clone)]
pub struct RedisHubOptions {
    /// `redis://host:port/`.
    pub url: String,
    /// Put before every channel name, so that several clusters (or tests) share one Redis.
    pub prefix: String,
    /// How many frames a local subscriber may fall behind (see [`MemoryHub::new`]).
    pub capacity: usize,
}

/// See the module documentation.
pub struct RedisHub {
    inner: Arc<Inner>,
}

struct Inner {
    local: MemoryHub,
    /// This node's id, in every frame it publishes (a node skips its own).
    node: String,
    prefix: String,
    /// Frames for the publisher task.
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    /// Subscribing and unsubscribing; replaced when the connection is made again.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    /// Topics subscribed on Redis (the cell is set once the subscription is confirmed).
    subscribed: Mutex<HashMap<Topic, Arc<OnceCell<()>>>>,
    /// Per conversation followed here: what was delivered, and frames held past a gap.
    delivered: Mutex<HashMap<ConversationId, Gate>>,
    relay: OnceLock<Arc<dyn Relay>>,
    /// The last publish failed.
    down: AtomicBool,
    /// The subscribing connection is up (frames of followed topics arrive).
    listening: AtomicBool,
    relayed: AtomicU64,
    gaps_healed: AtomicU64,
    publish_errors: AtomicU64,
    reconnects: AtomicU64,
}

fn bus_error(e: impl std::fmt::Display) -> HubError {
    HubError(e.to_string())
}

impl RedisHub {
    /// Connects to Redis (failing if it cannot be reached now) and starts the tasks that
    /// publish, relay and sweep.
    pub async fn connect(options: RedisHubOptions) -> Result<Self, HubError> {
        let client = redis::Client::open(options.url.as_str()).map_err(bus_error)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REQUEST_TIMEOUT)
            .set_response_timeout(REQUEST_TIMEOUT)
            .set_number_of_retries(1);
        let publisher = tokio::time::timeout(
            REQUEST_TIMEOUT,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(bus_error)?
        .map_err(bus_error)?;
        let (sink, stream) = tokio::time::timeout(REQUEST_TIMEOUT, client.get_async_pubsub())
            .await
            .map_err(bus_error)?
            .map_err(bus_error)?
            .split();
        let (mut sink, stream) = (sink, stream);
        let everywhere = [
            format!("{}:members", options.prefix),
            format!("{}:activity", options.prefix),
        ];
        tokio::time::timeout(REQUEST_TIMEOUT, sink.subscribe(&everywhere))
            .await
            .map_err(bus_error)?
            .map_err(bus_error)?;
        let (outbox, queue) = mpsc::channel(OUTBOX);
        let inner = Arc::new(Inner {
            local: MemoryHub::new(options.capacity),
            node: uuid::Uuid::new_v4().simple().to_string(),
            prefix: options.prefix,
            outbox,
            sink: tokio::sync::Mutex::new(Some(sink)),
            subscribed: Mutex::default(),
            delivered: Mutex::default(),
            relay: OnceLock::new(),
            down: AtomicBool::new(false),
            listening: AtomicBool::new(true),
            relayed: AtomicU64::new(0),
            gaps_healed: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        tokio::spawn(publish_loop(Arc::downgrade(&inner), publisher, queue));
        tokio::spawn(relay_loop(Arc::downgrade(&inner), client, stream));
        tokio::spawn(sweep_loop(Arc::downgrade(&inner)));
        Ok(RedisHub { inner })
    }

    /// This node's id on the bus.
    pub fn node(&self) -> &str {
        &self.inner.node
    }
}

impl Inner {
    fn channel(&self, topic: &Topic) -> String {
        match topic {
            Topic::Conversation(id) => format!("{}:c:{}", self.prefix, id.0),
            Topic::User(user) => format!("{}:u:{}", self.prefix, user.0),
        }
    }

    /// Where every node hears of activity for many users at once (one frame, then the ids
    /// of the users whose streams get it): each node delivers it to those it has here.
    fn activity_channel(&self) -> String {
        format!("{}:activity", self.prefix)
    }

    /// Where every node hears of every change of membership, followed or not: each one
    /// checks access from a cache, and a stale "is a member" would let a leaver post.
    fn members_channel(&self) -> String {
        format!("{}:members", self.prefix)
    }

    fn topic_of(&self, channel: &str) -> Option<Topic> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        if let Some(id) = rest.strip_prefix("c:") {
            return id
                .parse()
                .ok()
                .map(|id| Topic::Conversation(ConversationId(id)));
        }
        rest.strip_prefix("u:")
            .map(|user| Topic::User(UserId(user.to_string())))
    }

    /// Delivers a frame here, in change order for a conversation: what was delivered
    /// already is skipped, and a frame past a gap is held for [`HOLD`] (frames of two
    /// nodes cross on the bus) and then, if the gap is still open, preceded by a catch-up
    /// from the store. Never waits: healing runs in a task of its own.
    fn deliver(self: &Arc<Self>, topic: &Topic, frame: Frame) {
        let (Topic::Conversation(id), Some(_)) = (topic, frame.change) else {
            self.local.deliver(topic, frame);
            return;
        };
        let mut delivered = self.delivered.lock().expect("delivered lock");
        let gate = delivered.entry(*id).or_default();
        if gate.pass(frame, |f| {
            self.local.deliver(topic, f);
        }) {
            gate.healing = true;
            drop(delivered);
            tokio::spawn(heal_gap(self.clone(), *id));
        }
    }

    /// Subscribes on Redis to `topic` if this node has not yet; waits for the confirmation.
    async fn follow(&self, topic: &Topic) -> Result<(), HubError> {
        let cell = self
            .subscribed
            .lock()
            .expect("subscribed lock")
            .entry(topic.clone())
            .or_default()
            .clone();
        let channel = self.channel(topic);
        cell.get_or_try_init(|| async {
            let mut sink = self.sink.lock().await;
            let sink = sink.as_mut().ok_or_else(|| bus_error("reconnecting"))?;
            tokio::time::timeout(REQUEST_TIMEOUT, sink.subscribe(&channel))
                .await
                .map_err(bus_error)?
                .map_err(bus_error)
        })
        .await
        .map(|_| ())
    }

    /// A frame as it travels on Redis: a header line, then the event's JSON.
    fn envelope(&self, frame: &Frame) -> Vec<u8> {
        let number = |n: Option<u64>| n.map_or(String::new(), |n| n.to_string());
        let header = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            self.node,
            number(frame.change),
            frame.first,
            number(frame.about.map(|c| c.0)),
            number(frame.member.as_ref().map(|m| m.0 .0)),
            frame.member.as_ref().map_or("", |m| m.1 .0.as_str()),
            frame.note.as_ref().map_or(String::new(), |note| {
                serde_json::to_string(note.as_ref()).expect("notes serialize")
            }),
        );
        let mut bytes = Vec::with_capacity(header.len() + frame.text.len());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(frame.text.as_str().as_bytes());
        bytes
    }

    /// Reads an envelope; `None` for one of this node's own, or one that is not Flack's.
    fn open(&self, bytes: &[u8]) -> Option<Frame> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (header, json) = text.split_once('\n')?;
        let mut fields = header.split('\t');
        let node = fields.next()?;
        if node == self.node {
            return None;
        }
        let number = |s: &str| -> Option<Option<u64>> {
            if s.is_empty() {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        let change = number(fields.next()?)?;
        let first = fields.next()?.parse().ok()?;
        let about = number(fields.next()?)?.map(ConversationId);
        let member_of = number(fields.next()?)?.map(ConversationId);
        let member = fields.next()?;
        let note = match fields.next()? {
            "" => None,
            json => Some(Arc::new(serde_json::from_str::<StreamNote>(json).ok()?)),
        };
        Some(Frame {
            note,
            change,
            first,
            about,
            member: member_of.map(|id| Arc::new((id, UserId(member.to_string())))),
            text: json.to_string().into(),
        })
    }

    /// An envelope for many users' streams: the frame, then a line of user ids.
    fn envelope_for_users(&self, frame: &Frame, users: &[UserId]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(users.len() * 33 + frame.text.len() + 64);
        for user in users {
            bytes.extend_from_slice(user.0.as_bytes());
            bytes.push(b'\t');
        }
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.envelope(frame));
        bytes
    }

    /// Reads [`Inner::envelope_for_users`]: the frame and the users' ids, tab-separated.
    fn open_for_users<'a>(&self, bytes: &'a [u8]) -> Option<(Frame, &'a str)> {
        let at = bytes.iter().position(|&b| b == b'\n')?;
        let users = std::str::from_utf8(&bytes[..at]).ok()?;
        Some((self.open(&bytes[at + 1..])?, users))
    }

    /// After the connection came back: subscribes again to every followed topic, heals
    /// every followed conversation, and tells users' streams to refresh.
    async fn resume(self: &Arc<Self>, sink: PubSubSink) {
        let topics: Vec<Topic> = {
            let mut subscribed = self.subscribed.lock().expect("subscribed lock");
            subscribed.retain(|topic, _| self.local.has_subscribers(topic));
            subscribed.keys().cloned().collect()
        };
        let mut sink_slot = self.sink.lock().await;
        *sink_slot = Some(sink);
        let sink = sink_slot.as_mut().expect("just set");
        if let Err(e) = sink
            .subscribe(&[self.members_channel(), self.activity_channel()])
            .await
        {
            tracing::warn!(error = %e, "could not subscribe again on Redis");
        }
        for chunk in topics.chunks(256) {
            let channels: Vec<String> = chunk.iter().map(|t| self.channel(t)).collect();
            if let Err(e) = sink.subscribe(&channels).await {
                tracing::warn!(error = %e, "could not subscribe again on Redis");
            }
        }
        {
            let mut subscribed = self.subscribed.lock().expect("subscribed lock");
            for topic in &topics {
                let cell = OnceCell::new();
                let _ = cell.set(());
                subscribed.insert(topic.clone(), Arc::new(cell));
            }
        }
        drop(sink_slot);
        if let Some(relay) = self.relay.get() {
            relay.bus_lost();
        }
        self.listening.store(true, Ordering::Release);
        let refresh = Frame::new(None, &ServerEvent::Refresh);
        let mut conversations = Vec::new();
        for topic in topics {
            match topic {
                Topic::Conversation(id) => conversations.push(id),
                Topic::User(_) => {
                    self.local.deliver(&topic, refresh.clone());
                }
            }
        }
        // Each conversation heals on its own: several catch-up reads at once, not one
        // conversation after another.
        futures_util::stream::iter(conversations)
            .for_each_concurrent(RESUME_HEALS, |id| self.heal_after_resume(id))
            .await;
    }

    /// Fills in what a followed conversation missed while the bus was away, from the store.
    async fn heal_after_resume(self: &Arc<Self>, id: ConversationId) {
        let last = self
            .delivered
            .lock()
            .expect("delivered lock")
            .get(&id)
            .and_then(|gate| gate.last);
        let (Some(last), Some(relay)) = (last, self.relay.get()) else {
            return;
        };
        let healed = tokio::time::timeout(HEAL_TIMEOUT, relay.heal(id, last)).await;
        if let Ok(Some(healed)) = healed {
            if healed.change > Some(last) {
                self.gaps_healed.fetch_add(1, Ordering::Relaxed);
                self.deliver(&Topic::Conversation(id), healed);
            }
        }
    }
}

/// Conversations healed at once when the bus comes back.
const RESUME_HEALS: usize = 8;

/// How long a frame past a gap waits for the missing ones to arrive on the bus before the
/// gap is filled from the store.
const HOLD: Duration = Duration::from_millis(50);
/// How long a catch-up read may take (the database may be away: then the frames held go
/// out as they are, and each subscriber replays the gap itself).
const HEAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Frames held past a gap in one conversation at most: at it the gap is healed at once,
/// past it the held frames go out as they are.
const HELD: usize = 256;

/// One conversation's order of delivery here.
#[derive(Default)]
struct Gate {
    /// The last change number delivered (`None`: nothing yet, the first frame sets it).
    last: Option<u64>,
    /// Frames past a gap, by the first change each brings.
    held: std::collections::BTreeMap<u64, Frame>,
    /// A task is filling the gap.
    healing: bool,
}

impl Gate {
    /// Delivers `frame` (and whatever held frames it lets through) in order with `out`,
    /// or holds it past a gap; `true` when a healing task should start.
    fn pass(&mut self, frame: Frame, mut out: impl FnMut(Frame)) -> bool {
        let change = frame.change.unwrap_or(0);
        match self.last {
            Some(last) if change <= last => return false,
            Some(last) if frame.first > last + 1 => {
                let keep = self
                    .held
                    .get(&frame.first)
                    .is_none_or(|held| held.change < frame.change);
                if keep {
                    self.held.insert(frame.first, frame);
                }
                if self.held.len() > HELD {
                    // Holding is bounded: past it the frames go out as they are, and each
                    // subscriber replays the gap from the store.
                    self.flush(&mut out);
                    return false;
                }
                return !self.healing;
            }
            _ => {}
        }
        self.last = Some(change);
        out(frame);
        self.release(&mut out);
        false
    }

    /// Delivers held frames that follow on from what was delivered.
    fn release(&mut self, out: &mut impl FnMut(Frame)) {
        while let Some(entry) = self.held.first_entry() {
            let last = self.last.unwrap_or(0);
            if *entry.key() > last + 1 {
                break;
            }
            let frame = entry.remove();
            if frame.change.unwrap_or(0) > last {
                self.last = frame.change;
                out(frame);
            }
        }
    }

    /// Gives up waiting: delivers every held frame as it is (each subscriber sees the gap
    /// and replays it from the store).
    fn flush(&mut self, out: &mut impl FnMut(Frame)) {
        while let Some((_, frame)) = self.held.pop_first() {
            if frame.change > self.last {
                self.last = frame.change;
                out(frame);
            }
        }
    }
}

/// Fills a conversation's gap: waits a moment for the missing frames, then reads them from
/// the store as one catch-up.
async fn heal_gap(inner: Arc<Inner>, id: ConversationId) {
    let topic = Topic::Conversation(id);
    let out = |frame: Frame| {
        inner.local.deliver(&topic, frame);
    };
    loop {
        let waited = {
            let delivered = inner.delivered.lock().expect("delivered lock");
            delivered.get(&id).is_some_and(|g| g.held.len() >= HELD)
        };
        if !waited {
            tokio::time::sleep(HOLD).await;
        }
        let last = {
            let mut delivered = inner.delivered.lock().expect("delivered lock");
            let Some(gate) = delivered.get_mut(&id) else {
                return;
            };
            if gate.held.is_empty() {
                gate.healing = false;
                return;
            }
            gate.last.unwrap_or(0)
        };
        let healed = match inner.relay.get() {
            Some(relay) => tokio::time::timeout(HEAL_TIMEOUT, relay.heal(id, last))
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let mut delivered = inner.delivered.lock().expect("delivered lock");
        let Some(gate) = delivered.get_mut(&id) else {
            return;
        };
        let mut out = out;
        match healed {
            Some(healed) if gate.last == Some(last) && healed.change > Some(last) => {
                inner.gaps_healed.fetch_add(1, Ordering::Relaxed);
                gate.last = healed.change;
                out(healed);
                gate.release(&mut out);
            }
            // Filled meanwhile (the missing frames came): nothing to add.
            Some(_) if gate.last != Some(last) => gate.release(&mut out),
            _ => gate.flush(&mut out),
        }
        if gate.held.is_empty() {
            gate.healing = false;
            return;
        }
    }
}

/// Publishes queued frames on Redis, many per round trip.
async fn publish_loop(
    inner: std::sync::Weak<Inner>,
    mut conn: ConnectionManager,
    mut queue: mpsc::Receiver<(String, Vec<u8>)>,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for (channel, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        let Some(inner) = inner.upgrade() else { return };
        match sent {
            Ok(Ok(())) => inner.down.store(false, Ordering::Relaxed),
            Ok(Err(e)) => {
                if !inner.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "publishing on Redis failed; other nodes will heal from the store");
                }
                inner.publish_errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                if !inner.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "publishing on Redis timed out; other nodes will heal from the store"
                    );
                }
                inner.publish_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Relays what other nodes publish, and makes the subscription connection again whenever
/// it is lost.
async fn relay_loop(
    inner: std::sync::Weak<Inner>,
    client: redis::Client,
    mut stream: redis::aio::PubSubStream,
) {
    loop {
        while let Some(message) = stream.next().await {
            let Some(inner) = inner.upgrade() else { return };
            if message.get_channel_name() == inner.activity_channel() {
                // Counted once opened: this node's own envelopes come back too, and are skipped.
                if let Some((frame, users)) = inner.open_for_users(message.get_payload_bytes()) {
                    inner.relayed.fetch_add(1, Ordering::Relaxed);
                    let users: Vec<UserId> = users
                        .split('\t')
                        .filter(|u| !u.is_empty())
                        .map(|u| UserId(u.to_string()))
                        .collect();
                    inner.local.deliver_to_users(&users, &frame);
                }
                continue;
            }
            if message.get_channel_name() == inner.members_channel() {
                if let (Some(frame), Some(relay)) =
                    (inner.open(message.get_payload_bytes()), inner.relay.get())
                {
                    if let Some(member) = &frame.member {
                        relay.arriving(&Topic::Conversation(member.0), &frame);
                    }
                }
                continue;
            }
            let Some(topic) = inner.topic_of(message.get_channel_name()) else {
                continue;
            };
            let Some(frame) = inner.open(message.get_payload_bytes()) else {
                continue;
            };
            inner.relayed.fetch_add(1, Ordering::Relaxed);
            if let Some(relay) = inner.relay.get() {
                relay.arriving(&topic, &frame);
            }
            inner.deliver(&topic, frame);
        }
        // The connection is gone: make it again, then catch up. Until then nothing cached
        // can be trusted.
        if let Some(strong) = inner.upgrade() {
            strong.listening.store(false, Ordering::Release);
            if let Some(relay) = strong.relay.get() {
                relay.bus_lost();
            }
            tracing::warn!("lost the connection to Redis; reconnecting");
        }
        let mut wait = Duration::from_millis(50);
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            *strong.sink.lock().await = None;
            drop(strong);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            let Ok(Ok(pubsub)) =
                tokio::time::timeout(REQUEST_TIMEOUT, client.get_async_pubsub()).await
            else {
                continue;
            };
            let (sink, new_stream) = pubsub.split();
            let Some(strong) = inner.upgrade() else {
                return;
            };
            strong.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!("connected to Redis again; healing followed conversations");
            stream = new_stream;
            strong.resume(sink).await;
            break;
        }
    }
}

/// Unsubscribes on Redis from topics no local subscriber follows any more. The check is
/// made again under the sink's lock: a socket that subscribes meanwhile either is seen
/// then, or finds the topic gone and subscribes again after the unsubscribe.
async fn sweep_loop(inner: std::sync::Weak<Inner>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(inner) = inner.upgrade() else { return };
        let idle = |topic: &Topic| !inner.local.has_subscribers(topic);
        if !inner
            .subscribed
            .lock()
            .expect("subscribed lock")
            .keys()
            .any(idle)
        {
            continue;
        }
        let mut sink = inner.sink.lock().await;
        let gone: Vec<Topic> = {
            let mut subscribed = inner.subscribed.lock().expect("subscribed lock");
            let gone: Vec<Topic> = subscribed.keys().filter(|t| idle(t)).cloned().collect();
            for topic in &gone {
                subscribed.remove(topic);
            }
            gone
        };
        {
            let mut delivered = inner.delivered.lock().expect("delivered lock");
            for topic in &gone {
                if let Topic::Conversation(id) = topic {
                    delivered.remove(id);
                }
                if let Some(relay) = inner.relay.get() {
                    relay.unfollowed(topic);
                }
            }
        }
        let channels: Vec<String> = gone.iter().map(|t| inner.channel(t)).collect();
        if let Some(sink) = sink.as_mut() {
            for chunk in channels.chunks(256) {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT, sink.unsubscribe(chunk)).await;
            }
        }
    }
}

#[async_trait]
impl Hub for RedisHub {
    async fn publish(&self, topic: &Topic, frame: Frame) -> Result<(), HubError> {
        let inner = &self.inner;
        let envelope = inner.envelope(&frame);
        if frame.member.is_some() {
            let note = Frame {
                change: None,
                first: 0,
                text: Default::default(),
                ..frame.clone()
            };
            let _ = inner
                .outbox
                .try_send((inner.members_channel(), inner.envelope(&note)));
        }
        inner.deliver(topic, frame);
        if inner
            .outbox
            .try_send((inner.channel(topic), envelope))
            .is_err()
        {
            inner.publish_errors.fetch_add(1, Ordering::Relaxed);
            return Err(HubError("the bus is behind".into()));
        }
        if inner.down.load(Ordering::Relaxed) {
            return Err(HubError("the last publish on Redis failed".into()));
        }
        Ok(())
    }

    async fn publish_to_users(&self, users: &[UserId], frame: Frame) -> Result<(), HubError> {
        let inner = &self.inner;
        let envelope = inner.envelope_for_users(&frame, users);
        inner.local.deliver_to_users(users, &frame);
        if inner
            .outbox
            .try_send((inner.activity_channel(), envelope))
            .is_err()
        {
            inner.publish_errors.fetch_add(1, Ordering::Relaxed);
            return Err(HubError("the bus is behind".into()));
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<Subscription, HubError> {
        let subscription = self.inner.local.subscribe_here(topic);
        // Without the bus this node still serves its own sockets; the subscription is made
        // again (and the conversation healed) when the connection comes back.
        if let Err(e) = self.inner.follow(topic).await {
            tracing::debug!(error = %e, "subscribing on Redis failed for now");
        }
        Ok(subscription)
    }

    fn topic_count(&self) -> usize {
        self.inner.local.topic_count_here()
    }

    fn views(&self) -> &Arc<Views> {
        self.inner.local.views()
    }

    fn attach(&self, relay: Arc<dyn Relay>) {
        let _ = self.inner.relay.set(relay);
    }

    fn follows(&self, topic: &Topic) -> bool {
        let inner = &self.inner;
        inner.listening.load(Ordering::Acquire)
            && inner
                .subscribed
                .lock()
                .expect("subscribed lock")
                .get(topic)
                .is_some_and(|cell| cell.initialized())
    }

    fn stats(&self) -> HubStats {
        let inner = &self.inner;
        HubStats {
            deliveries: inner.local.deliveries(),
            relayed: inner.relayed.load(Ordering::Relaxed),
            gaps_healed: inner.gaps_healed.load(Ordering::Relaxed),
            publish_errors: inner.publish_errors.load(Ordering::Relaxed),
            reconnects: inner.reconnects.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::contract::{self, FakeRelay, Nodes};
    use super::*;
    use crate::server::testing::{fresh_prefix, Services};

    async fn hub(url: &str, prefix: &str, capacity: usize) -> RedisHub {
        RedisHub::connect(RedisHubOptions {
            url: url.to_string(),
            prefix: prefix.to_string(),
            capacity,
        })
        .await
        .expect("Redis answers")
    }

    async fn nodes(url: &str, count: usize) -> Nodes {
        let prefix = fresh_prefix();
        let mut nodes = Nodes {
            hubs: Vec::new(),
            relays: Vec::new(),
        };
        for _ in 0..count {
            let hub = hub(url, &prefix, 1024).await;
            let relay = Arc::new(FakeRelay::default());
            hub.attach(relay.clone());
            nodes.hubs.push(Arc::new(hub));
            nodes.relays.push(relay);
        }
        nodes
    }

    #[test]
    fn frames_held_past_a_gap_are_bounded() {
        let frame = |change: u64| Frame::new(Some(change), &ServerEvent::Refresh);
        let mut gate = Gate::default();
        let mut out = Vec::new();
        assert!(!gate.pass(frame(1), |f| out.push(f.change)));
        // 2 never comes: 3, 4, … are held, up to the bound.
        assert!(gate.pass(frame(3), |f| out.push(f.change)), "a heal starts");
        gate.healing = true;
        for change in 4..(3 + HELD as u64) {
            assert!(!gate.pass(frame(change), |f| out.push(f.change)));
        }
        assert_eq!(gate.held.len(), HELD);
        assert_eq!(out, [Some(1)]);
        // One more: everything held goes out, in order, for the subscribers to replay.
        gate.pass(frame(3 + HELD as u64), |f| out.push(f.change));
        assert!(gate.held.is_empty());
        let expected: Vec<_> = std::iter::once(1)
            .chain(3..=(3 + HELD as u64))
            .map(Some)
            .collect();
        assert_eq!(out, expected);
        assert_eq!(gate.last, Some(3 + HELD as u64));
    }

    #[tokio::test]
    async fn passes_the_contract() {
        let url = Services::shared().redis_url.clone();
        contract::run_all(&move |capacity| {
            let url = url.clone();
            Box::pin(
                async move { Arc::new(hub(&url, &fresh_prefix(), capacity).await) as Arc<dyn Hub> },
            )
        })
        .await;
    }

    #[tokio::test]
    async fn passes_the_contract_between_nodes() {
        let url = Services::shared().redis_url.clone();
        contract::run_between(&move || {
            let url = url.clone();
            Box::pin(async move { nodes(&url, 2).await })
        })
        .await;
    }

    #[tokio::test]
    async fn a_redis_restart_loses_nothing_followed() {
        let services = Services::private();
        let nodes = nodes(&services.redis_url, 2).await;
        let (a, b) = (&nodes.hubs[0], &nodes.hubs[1]);
        let id = ConversationId(3);
        let topic = Topic::Conversation(id);
        let user = Topic::User(UserId("bo".into()));
        let mut there = b.subscribe(&topic).await.unwrap();
        let mut stream = b.subscribe(&user).await.unwrap();
        let event = ServerEvent::Refresh;
        a.publish(&topic, Frame::new(Some(1), &event))
            .await
            .unwrap();
        assert_eq!(contract::next(&mut there).await.change, Some(1));
        assert!(b.follows(&topic));

        services.restart_redis();
        // Changes committed while the bus was down are in the store.
        nodes.relays[1].set_latest(id, 3);
        for change in 2..=3 {
            // Delivered on node A whatever the bus says; whether this publish saw the
            // outage depends on timing.
            let _ = a.publish(&topic, Frame::new(Some(change), &event)).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Node B reconnects, subscribes again and heals what it followed; its users'
        // streams are told to refresh.
        let healed = contract::next(&mut there).await;
        assert_eq!((healed.first, healed.change), (2, Some(3)));
        let note = contract::next(&mut stream).await;
        assert!(
            note.text.as_str().contains("refresh"),
            "{}",
            note.text.as_str()
        );
        assert!(nodes.relays[1].lost.load(Ordering::SeqCst) >= 1);
        assert!(b.stats().reconnects >= 1);
        assert!(b.stats().gaps_healed >= 1);
        // And frames flow again, after the healed ones.
        let mut followed = false;
        for _ in 0..50 {
            if b.follows(&topic) && a.follows(&Topic::Conversation(ConversationId(99))) {
                followed = true;
                break;
            }
            let _ = a.subscribe(&Topic::Conversation(ConversationId(99))).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(followed, "both nodes follow again");
        a.publish(&topic, Frame::new(Some(4), &event))
            .await
            .unwrap();
        assert_eq!(contract::next(&mut there).await.change, Some(4));
    }
}
