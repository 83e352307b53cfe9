//! Fan-out: every event is serialized once and the same bytes go to every subscriber of its
//! topic. [`Hub`] is the contract; [`MemoryHub`] fans out within this process.

use crate::protocol::{ConversationId, UserId};
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
    /// On a user's stream, the conversation it is about (a socket that has it open hears
    /// of it there instead).
    pub about: Option<ConversationId>,
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
            about: None,
            text: text.into(),
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

/// A subscription: a bounded queue of frames. A receiver that falls more than the queue's
/// capacity behind gets `RecvError::Lagged` and must resynchronise from the store.
pub type Subscription = broadcast::Receiver<Frame>;

/// Publishes frames to topics and hands out subscriptions.
pub trait Hub: Send + Sync + 'static {
    /// Sends a frame to every current subscriber of `topic`. A frame on a user's stream
    /// [`about`](Frame::about) a conversation that every one of that user's streams here
    /// has open (see [`Hub::views`]) wakes nobody: those sockets hear of it in the
    /// conversation itself.
    fn publish(&self, topic: &Topic, frame: Frame);
    /// Subscribes to `topic`; frames published from now on arrive in publish order.
    fn subscribe(&self, topic: &Topic) -> Subscription;
    /// Topics held now (each costs a queue): for tests and metrics.
    fn topic_count(&self) -> usize;
    /// Which conversation each subscriber of a user's stream here has open.
    fn views(&self) -> &Arc<Views>;
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

/// Fans out within one process through `tokio::sync::broadcast`, one sender per topic. A
/// topic exists only while it has subscribers: one whose last subscriber left is dropped at
/// the next publish to it, or by the sweep that runs whenever the map has doubled.
pub struct MemoryHub {
    capacity: usize,
    topics: Mutex<Topics>,
    views: Arc<Views>,
}

#[derive(Default)]
struct Topics {
    map: HashMap<Topic, broadcast::Sender<Frame>>,
    /// Topics left after the last sweep.
    after_sweep: usize,
}

impl MemoryHub {
    /// A hub whose subscribers may fall `capacity` frames behind before they must resync.
    pub fn new(capacity: usize) -> Self {
        MemoryHub {
            capacity: capacity.max(1),
            topics: Mutex::default(),
            views: Arc::default(),
        }
    }
}

impl Hub for MemoryHub {
    fn publish(&self, topic: &Topic, frame: Frame) {
        if let (Topic::User(user), Some(about)) = (topic, frame.about) {
            if self.views.all_open(user, about) {
                return;
            }
        }
        let mut topics = self.topics.lock().expect("hub lock");
        if let Some(sender) = topics.map.get(topic) {
            if sender.send(frame).is_err() {
                // Nobody listens any more: forget the topic so idle channels cost nothing.
                topics.map.remove(topic);
            }
        }
    }

    fn topic_count(&self) -> usize {
        self.topics.lock().expect("hub lock").map.len()
    }

    fn views(&self) -> &Arc<Views> {
        &self.views
    }

    fn subscribe(&self, topic: &Topic) -> Subscription {
        let mut topics = self.topics.lock().expect("hub lock");
        if topics.map.len() >= 2 * topics.after_sweep + 64 {
            topics.map.retain(|_, sender| sender.receiver_count() > 0);
            topics.after_sweep = topics.map.len();
        }
        let capacity = match topic {
            Topic::User(_) => self.capacity.min(USER_STREAM_CAPACITY),
            Topic::Conversation(_) => self.capacity,
        };
        topics
            .map
            .entry(topic.clone())
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerEvent;
    use broadcast::error::RecvError;

    fn frame(seq: u64) -> Frame {
        Frame::new(
            Some(seq),
            &ServerEvent::error(crate::error::AppError::MessageEmpty, Some(seq.to_string())),
        )
    }

    #[tokio::test]
    async fn subscribers_get_the_same_bytes_in_order() {
        let hub = MemoryHub::new(16);
        let topic = Topic::Conversation(ConversationId(1));
        let mut a = hub.subscribe(&topic);
        let mut b = hub.subscribe(&topic);
        let mut other = hub.subscribe(&Topic::User(UserId("u".into())));
        for seq in 1..=3 {
            hub.publish(&topic, frame(seq));
        }
        for seq in 1..=3 {
            let fa = a.recv().await.unwrap();
            let fb = b.recv().await.unwrap();
            assert_eq!(fa.change, Some(seq));
            // One serialization shared: both point at the same buffer.
            assert_eq!(fa.text.as_str().as_ptr(), fb.text.as_str().as_ptr());
        }
        assert!(other.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_not_dropped() {
        let hub = MemoryHub::new(4);
        let topic = Topic::Conversation(ConversationId(3));
        let mut slow = hub.subscribe(&topic);
        for seq in 1..=10 {
            hub.publish(&topic, frame(seq));
        }
        assert!(matches!(slow.recv().await, Err(RecvError::Lagged(6))));
        assert_eq!(slow.recv().await.unwrap().change, Some(7));
    }

    #[tokio::test]
    async fn activity_skips_users_whose_every_socket_has_the_conversation_open() {
        let hub = MemoryHub::new(16);
        let (ada, bo) = (UserId("ada".into()), UserId("bo".into()));
        let (here, there) = (ConversationId(1), ConversationId(2));
        let mut ada_stream = hub.subscribe(&Topic::User(ada.clone()));
        let mut bo_stream = hub.subscribe(&Topic::User(bo.clone()));
        let ada_tab = hub.views().watch(&ada);
        let ada_phone = hub.views().watch(&ada);
        let bo_tab = hub.views().watch(&bo);
        ada_tab.set(Some(here));
        ada_phone.set(Some(here));
        bo_tab.set(Some(there));
        let note = |about| Frame::about(about, &ServerEvent::Refresh);
        hub.publish(&Topic::User(ada.clone()), note(here));
        hub.publish(&Topic::User(bo.clone()), note(here));
        assert!(
            ada_stream.try_recv().is_err(),
            "both of Ada's sockets see it"
        );
        assert_eq!(bo_stream.try_recv().unwrap().about, Some(here));
        // One of Ada's sockets moves on (or is about to): she hears of it again.
        ada_phone.set(None);
        hub.publish(&Topic::User(ada.clone()), note(here));
        assert_eq!(ada_stream.try_recv().unwrap().about, Some(here));
        ada_phone.set(Some(here));
        drop(ada_tab);
        hub.publish(&Topic::User(ada.clone()), note(here));
        assert!(
            ada_stream.try_recv().is_err(),
            "the socket left has it open"
        );
        // Frames about nothing in particular always go through.
        hub.publish(&Topic::User(ada.clone()), frame(1));
        assert!(ada_stream.try_recv().is_ok());
        drop((ada_phone, bo_tab));
        assert_eq!(hub.views().users(), 0);
    }

    #[tokio::test]
    async fn a_users_stream_holds_fewer_frames_than_a_conversation() {
        let hub = MemoryHub::new(1024);
        let mut user = hub.subscribe(&Topic::User(UserId("u".into())));
        let mut conversation = hub.subscribe(&Topic::Conversation(ConversationId(1)));
        for seq in 1..=(USER_STREAM_CAPACITY as u64 + 1) {
            hub.publish(&Topic::User(UserId("u".into())), frame(seq));
            hub.publish(&Topic::Conversation(ConversationId(1)), frame(seq));
        }
        assert!(matches!(user.recv().await, Err(RecvError::Lagged(1))));
        assert_eq!(conversation.recv().await.unwrap().change, Some(1));
    }

    #[tokio::test]
    async fn topics_without_subscribers_are_forgotten() {
        let hub = MemoryHub::new(4);
        let topic = Topic::Conversation(ConversationId(3));
        drop(hub.subscribe(&topic));
        assert_eq!(hub.topic_count(), 1);
        hub.publish(&topic, frame(1));
        assert_eq!(hub.topic_count(), 0);
        // Topics nobody publishes to are swept as the map grows.
        for i in 0..10_000 {
            drop(hub.subscribe(&Topic::Conversation(ConversationId(100 + i))));
        }
        assert!(hub.topic_count() <= 128, "{}", hub.topic_count());
    }
}
