//! The write pipeline: every change to a conversation passes through it, one write at a
//! time. Posts that queued up are stored as one batch (one transaction), other writes (jobs)
//! in turn; then what they changed is published in number order, then the callers are
//! answered. So an acknowledgement always means "committed", subscribers see each
//! conversation's changes in order, and durability costs one commit per batch.
//!
//! A store whose commit costs far more than its rows asks for a linger
//! ([`Store::batch_linger`]): a small batch then waits that long from its first post for
//! more before it is stored.

use super::{conversations, member_ids, posting, publish, Forget, Write};
use crate::server::hub::Hub;
use crate::server::metrics::PipelineStats;
use crate::server::store::{NewMessage, Store};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The most posts stored in one batch.
const MAX_BATCH: usize = 512;
/// A batch this big is stored at once, without waiting out the store's linger.
const LINGER_ENOUGH: usize = 64;
/// A batch that takes longer than this to store is logged (every post in it waited).
const SLOW_BATCH: std::time::Duration = std::time::Duration::from_millis(50);

/// What storing and publishing need.
pub(super) struct Pipeline {
    pub store: Arc<dyn Store>,
    pub hub: Arc<dyn Hub>,
    pub stats: Arc<PipelineStats>,
    pub forget: Arc<Forget>,
}

/// One batch of posts, with the callers waiting for it.
struct Posts {
    messages: Vec<NewMessage>,
    replies: Vec<super::Reply>,
}

impl Pipeline {
    /// Stores queued writes in turn (posts in batches), then publishes and answers, in order.
    pub async fn run(self, mut queue: mpsc::Receiver<Write>) {
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
                    let until = Instant::now() + self.store.batch_linger();
                    let posts = gather(message, reply, until, &mut queue, &mut held).await;
                    self.store_batch(posts).await;
                }
                Write::Job(job) => {
                    let started = std::time::Instant::now();
                    let publishes = job(self.store.clone()).await;
                    self.stats.job(started.elapsed());
                    for p in publishes {
                        self.forget.published(&p.topic, &p.frame);
                        publish(self.hub.as_ref(), &p.topic, p.frame).await;
                    }
                }
            }
        }
    }

    /// Stores one batch, publishes its joins and messages, and answers its callers.
    async fn store_batch(&self, posts: Posts) {
        let (count, started) = (posts.messages.len(), std::time::Instant::now());
        let results = self.store.append_batch(posts.messages).await;
        let took = started.elapsed();
        self.stats.batch(count, took);
        if took > SLOW_BATCH {
            tracing::warn!(
                posts = count,
                ms = took.as_millis() as u64,
                "slow store: a batch of posts took long"
            );
        }
        let (store, hub, forget) = (self.store.as_ref(), self.hub.as_ref(), &self.forget);
        // Joins first: in each conversation they took the numbers before the batch's
        // messages.
        let joins: Vec<_> = results
            .iter()
            .flatten()
            .filter_map(|a| Some((a.joined.clone()?, a.message.author.id.clone())))
            .collect();
        for p in conversations::joins_published(store, &joins).await {
            forget.published(&p.topic, &p.frame);
            publish(hub, &p.topic, p.frame).await;
        }
        for appended in results.iter().flatten().filter(|a| a.fresh) {
            let conversation = appended.message.conversation;
            let (changes, activity) = posting::published(appended);
            for p in changes {
                forget.published(&p.topic, &p.frame);
                publish(hub, &p.topic, p.frame).await;
            }
            if let Some(activity) = activity {
                let ids = member_ids(store, &forget.member_ids, conversation).await;
                if let Err(e) = hub.publish_to_users(&ids, activity).await {
                    tracing::debug!(error = %e, "activity published here only");
                }
            }
        }
        for (result, reply) in results.into_iter().zip(posts.replies) {
            let _ = reply.send(result);
        }
    }
}

/// A batch from the first post and what queued meanwhile; then, while it is small, what
/// arrives before `until`. A write other than a post ends the batch and is `held` for the
/// next turn.
async fn gather(
    message: NewMessage,
    reply: super::Reply,
    until: Instant,
    queue: &mut mpsc::Receiver<Write>,
    held: &mut Option<Write>,
) -> Posts {
    let mut posts = Posts {
        messages: vec![message],
        replies: vec![reply],
    };
    while posts.messages.len() < MAX_BATCH {
        let next = match queue.try_recv() {
            Ok(write) => Some(write),
            Err(_) if posts.messages.len() >= LINGER_ENOUGH || Instant::now() >= until => None,
            Err(_) => tokio::time::timeout_at(until, queue.recv())
                .await
                .ok()
                .flatten(),
        };
        match next {
            Some(Write::Post { message, reply }) => {
                posts.messages.push(message);
                posts.replies.push(reply);
            }
            Some(other) => {
                *held = Some(other);
                break;
            }
            None => break,
        }
    }
    posts
}

#[cfg(test)]
mod tests {
    use super::{gather, Write, LINGER_ENOUGH};
    use crate::protocol::{Author, ConversationId, UserId};
    use crate::server::store::{Admission, NewMessage};
    use std::time::Duration;
    use tokio::sync::{mpsc, oneshot};
    use tokio::time::Instant;

    fn post(body: &str) -> Write {
        Write::Post {
            message: NewMessage {
                conversation: ConversationId(1),
                author: Author {
                    id: UserId("u".into()),
                    name: "Ada".into(),
                },
                body: body.into(),
                client_id: None,
                mentions: vec![],
                mentions_all: false,
                admission: Admission::Unchecked,
            },
            reply: oneshot::channel().0,
        }
    }

    /// Gathers a batch from the first write queued, waiting until `until`.
    async fn batch_of(queue: &mut mpsc::Receiver<Write>, until: Instant) -> Vec<String> {
        let Some(Write::Post { message, reply }) = queue.recv().await else {
            panic!("a post first");
        };
        let mut held = None;
        let posts = gather(message, reply, until, queue, &mut held).await;
        posts.messages.into_iter().map(|m| m.body).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_takes_what_queued_and_waits_only_until_its_linger_is_over() {
        let (writes, mut queue) = mpsc::channel(1024);
        // No linger: what is queued, at once.
        writes.send(post("a")).await.ok();
        writes.send(post("b")).await.ok();
        let started = Instant::now();
        assert_eq!(batch_of(&mut queue, started).await, ["a", "b"]);
        assert_eq!(Instant::now(), started, "no wait");
        // What arrives before the linger is over joins the batch, not what comes later.
        writes.send(post("c")).await.ok();
        let later = writes.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(4)).await;
            later.send(post("d")).await.ok();
            tokio::time::sleep(Duration::from_millis(10)).await;
            later.send(post("e")).await.ok();
        });
        let until = Instant::now() + Duration::from_millis(10);
        assert_eq!(batch_of(&mut queue, until).await, ["c", "d"]);
        assert_eq!(Instant::now(), until);
        assert_eq!(batch_of(&mut queue, Instant::now()).await, ["e"]);
        // A batch big enough does not wait.
        for k in 0..LINGER_ENOUGH {
            writes.send(post(&k.to_string())).await.ok();
        }
        let started = Instant::now();
        let batch = batch_of(&mut queue, started + Duration::from_secs(1)).await;
        assert_eq!(batch.len(), LINGER_ENOUGH);
        assert_eq!(Instant::now(), started);
    }
    use crate::protocol::ServerEvent;
    use crate::server::chat::tests::{chat_on, limits, GENEROUS};
    use crate::server::hub::Topic;
    use crate::server::store::{CacheLimits, PostgresStore};
    use crate::server::testing::Services;
    use std::sync::Arc;

    /// On PostgreSQL, people posting at once (each joining by their first post) and editing
    /// meanwhile, their posts gathered into batches: every change reaches subscribers once,
    /// in number order, without a gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn posts_gathered_on_postgres_are_published_in_number_order() {
        const PEOPLE: usize = 12;
        const POSTS: usize = 25;
        let url = Services::shared().fresh_database().await;
        let store = PostgresStore::connect(&url, 8, CacheLimits::default())
            .await
            .unwrap()
            .with_batch_linger(std::time::Duration::from_millis(2));
        let chat = Arc::new(chat_on(Arc::new(store), limits(GENEROUS)));
        chat.ensure_channels(&["general".into()]).await.unwrap();
        let mut people = Vec::new();
        for k in 0..PEOPLE {
            let name = format!("P{k}");
            let user = chat
                .store()
                .create_user(format!("t-{name}"), Some(name))
                .await
                .unwrap();
            people.push(user);
        }
        let general = chat.channel_named(&people[0].id, "general").await.unwrap();
        let general = general.info.id;
        let mut sub = chat
            .hub()
            .subscribe(&Topic::Conversation(general))
            .await
            .unwrap();
        let tasks: Vec<_> = people
            .iter()
            .cloned()
            .map(|user| {
                let chat = chat.clone();
                tokio::spawn(async move {
                    let mut edits = 0;
                    for n in 0..POSTS {
                        let posted = chat
                            .post(&user, general, &format!("{} {n}", user.id.0), None)
                            .await
                            .expect("posted");
                        if n % 10 == 5 {
                            chat.edit(&user, &posted.message.id, "edited")
                                .await
                                .expect("edited");
                            edits += 1;
                        }
                    }
                    edits
                })
            })
            .collect();
        let mut edits = 0;
        for task in tasks {
            edits += task.await.unwrap();
        }
        let mut changes = Vec::new();
        let mut messages = 0;
        while let Ok(frame) = sub.try_recv() {
            let event: ServerEvent = serde_json::from_str(frame.text.as_str()).unwrap();
            if matches!(event, ServerEvent::Message { .. }) {
                messages += 1;
            }
            changes.push(frame.change.expect("numbered"));
        }
        assert_eq!(messages, PEOPLE * POSTS, "every post published once");
        let expected: Vec<u64> = (changes[0]..changes[0] + changes.len() as u64).collect();
        assert_eq!(changes, expected, "in number order, without a gap");
        // Every join, post and edit is a change.
        assert_eq!(changes.len(), PEOPLE + PEOPLE * POSTS + edits);
    }
}
