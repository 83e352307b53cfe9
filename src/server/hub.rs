//! Fan-out: every event is serialized once and the same bytes go to every subscriber of its
//! topic. [`Hub`] is the contract; [`MemoryHub`] fans out within this process.

use crate::protocol::{ConversationId, UserId};
use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::broadcast;

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
    /// Sends a frame to every current subscriber of `topic`.
    fn publish(&self, topic: &Topic, frame: Frame);
    /// Subscribes to `topic`; frames published from now on arrive in publish order.
    fn subscribe(&self, topic: &Topic) -> Subscription;
    /// Topics held now (each costs a queue): for tests and metrics.
    fn topic_count(&self) -> usize;
}

/// Fans out within one process through `tokio::sync::broadcast`, one sender per topic. A
/// topic exists only while it has subscribers: one whose last subscriber left is dropped at
/// the next publish to it, or by the sweep that runs whenever the map has doubled.
pub struct MemoryHub {
    capacity: usize,
    topics: Mutex<Topics>,
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
        }
    }
}

impl Hub for MemoryHub {
    fn publish(&self, topic: &Topic, frame: Frame) {
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

    fn subscribe(&self, topic: &Topic) -> Subscription {
        let mut topics = self.topics.lock().expect("hub lock");
        if topics.map.len() >= 2 * topics.after_sweep + 64 {
            topics.map.retain(|_, sender| sender.receiver_count() > 0);
            topics.after_sweep = topics.map.len();
        }
        topics
            .map
            .entry(topic.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
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
