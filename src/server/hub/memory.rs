//! The one-node hub: fan-out within this process through `tokio::sync::broadcast`.

use super::{Frame, Hub, HubError, HubStats, Subscription, Topic, Views, USER_STREAM_CAPACITY};
use crate::protocol::UserId;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Fans out within one process through `tokio::sync::broadcast`, one sender per topic. A
/// topic exists only while it has subscribers: one whose last subscriber left is dropped at
/// the next publish to it, or by the sweep that runs whenever the map has doubled.
pub struct MemoryHub {
    capacity: usize,
    topics: Mutex<Topics>,
    views: Arc<Views>,
    /// Frames handed to subscribers (one per subscriber reached).
    deliveries: std::sync::atomic::AtomicU64,
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
            deliveries: Default::default(),
        }
    }

    /// Delivers a frame to this process's subscribers of each of `users`' streams.
    pub fn deliver_to_users(&self, users: &[UserId], frame: &Frame) {
        for user in users {
            self.deliver(&Topic::User(user.clone()), frame.clone());
        }
    }

    /// Delivers a frame to this process's subscribers of `topic`; whether any listened.
    pub fn deliver(&self, topic: &Topic, frame: Frame) -> bool {
        if let (Topic::User(user), Some(about)) = (topic, frame.about) {
            if self.views.all_open(user, about) {
                return true;
            }
        }
        let mut topics = self.topics.lock().expect("hub lock");
        if let Some(sender) = topics.map.get(topic) {
            match sender.send(frame) {
                Ok(reached) => {
                    self.deliveries
                        .fetch_add(reached as u64, std::sync::atomic::Ordering::Relaxed);
                    return true;
                }
                Err(_) => {
                    // Nobody listens any more: forget the topic so idle channels cost nothing.
                    topics.map.remove(topic);
                    return false;
                }
            }
        }
        false
    }

    /// Whether this process has a subscriber of `topic` now.
    pub fn has_subscribers(&self, topic: &Topic) -> bool {
        let topics = self.topics.lock().expect("hub lock");
        topics
            .map
            .get(topic)
            .is_some_and(|sender| sender.receiver_count() > 0)
    }

    /// The topics with subscribers here now.
    pub fn topics(&self) -> Vec<Topic> {
        let topics = self.topics.lock().expect("hub lock");
        topics
            .map
            .iter()
            .filter(|(_, sender)| sender.receiver_count() > 0)
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// Frames handed to subscribers here so far.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Topics held here, with subscribers or not yet swept.
    pub fn topic_count_here(&self) -> usize {
        self.topics.lock().expect("hub lock").map.len()
    }

    /// Subscribes here (what [`Hub::subscribe`] does on one node).
    pub fn subscribe_here(&self, topic: &Topic) -> Subscription {
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

#[async_trait]
impl Hub for MemoryHub {
    async fn publish(&self, topic: &Topic, frame: Frame) -> Result<(), HubError> {
        self.deliver(topic, frame);
        Ok(())
    }

    async fn publish_to_users(&self, users: &[UserId], frame: Frame) -> Result<(), HubError> {
        self.deliver_to_users(users, &frame);
        Ok(())
    }

    async fn subscribe(&self, topic: &Topic) -> Result<Subscription, HubError> {
        Ok(self.subscribe_here(topic))
    }

    fn topic_count(&self) -> usize {
        self.topic_count_here()
    }

    fn views(&self) -> &Arc<Views> {
        &self.views
    }

    fn stats(&self) -> HubStats {
        HubStats {
            deliveries: self.deliveries(),
            ..HubStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_contract() {
        super::super::contract::run_all(&|capacity| {
            Box::pin(async move { Arc::new(MemoryHub::new(capacity)) as Arc<dyn Hub> })
        })
        .await;
    }
}
