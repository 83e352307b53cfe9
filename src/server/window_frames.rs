//! Serialized join answers, shared. Every fresh join of a conversation answers with the same
//! window until the conversation changes, so its JSON is built once and the bytes shared by every
//! socket that joins meanwhile (a 100-message window can be megabytes: building it per join
//! was the dearest thing a client could ask for). Bounded in bytes; any write to a conversation
//! makes its entry stale.

use crate::protocol::ConversationId;
use axum::extract::ws::Utf8Bytes;
use lru::LruCache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A conversation's serialized window and the highest sequence number in it.
#[derive(Clone, Debug)]
pub struct Joined {
    /// The `subscribed` frame.
    pub text: Utf8Bytes,
    /// The change number it brings a socket to.
    pub last_change: u64,
}

struct Entry {
    /// Changes with every write to the conversation; unique over the whole cache's life, so an
    /// entry dropped and made again never matches an old one.
    generation: u64,
    joined: Option<Joined>,
}

/// The cache: conversation key → its current generation and, if built since, its window.
pub struct WindowFrames {
    budget: usize,
    next: AtomicU64,
    entries: Mutex<(LruCache<ConversationId, Entry>, usize)>,
}

impl WindowFrames {
    /// A cache holding about `budget` bytes of frames at most.
    pub fn new(budget: usize) -> Self {
        WindowFrames {
            budget,
            next: AtomicU64::new(1),
            entries: Mutex::new((LruCache::unbounded(), 0)),
        }
    }

    fn fresh(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The cached window of `key`, or the generation to build one for.
    pub fn get(&self, key: ConversationId) -> Result<Joined, u64> {
        let mut guard = self.entries.lock().expect("frames lock");
        if let Some(entry) = guard.0.get(&key) {
            return entry.joined.clone().ok_or(entry.generation);
        }
        let generation = self.fresh();
        guard.0.put(
            key,
            Entry {
                generation,
                joined: None,
            },
        );
        Err(generation)
    }

    /// Keeps a window built for `generation`, unless the conversation changed meanwhile.
    pub fn put(&self, key: ConversationId, generation: u64, joined: Joined) {
        let mut guard = self.entries.lock().expect("frames lock");
        let (entries, bytes) = &mut *guard;
        let Some(entry) = entries.peek_mut(&key) else {
            return;
        };
        if entry.generation != generation || entry.joined.is_some() {
            return;
        }
        *bytes += joined.text.len();
        entry.joined = Some(joined);
        while *bytes > self.budget {
            match entries.pop_lru() {
                Some((_, old)) => *bytes -= old.joined.map_or(0, |j| j.text.len()),
                None => break,
            }
        }
    }

    /// The conversation changed: what is cached for it is stale.
    pub fn invalidate(&self, key: ConversationId) {
        let generation = self.fresh();
        let mut guard = self.entries.lock().expect("frames lock");
        let (entries, bytes) = &mut *guard;
        if let Some(entry) = entries.peek_mut(&key) {
            *bytes -= entry.joined.take().map_or(0, |j| j.text.len());
            entry.generation = generation;
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.entries.lock().expect("frames lock").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(text: &str, last_change: u64) -> Joined {
        Joined {
            text: text.to_string().into(),
            last_change,
        }
    }

    const G: ConversationId = ConversationId(1);

    #[test]
    fn a_window_is_built_once_until_the_conversation_changes() {
        let frames = WindowFrames::new(1000);
        let generation = frames.get(G).unwrap_err();
        frames.put(G, generation, joined("w1", 1));
        assert_eq!(frames.get(G).unwrap().text.as_str(), "w1");
        frames.invalidate(G);
        let next = frames.get(G).unwrap_err();
        assert_ne!(next, generation);
        // A window built before the change is not kept.
        frames.put(G, generation, joined("stale", 1));
        assert!(frames.get(G).is_err());
        frames.put(G, next, joined("w2", 2));
        assert_eq!(frames.get(G).unwrap().last_change, 2);
    }

    #[test]
    fn frames_stay_within_their_byte_budget() {
        let frames = WindowFrames::new(10);
        for key in [1, 2, 3].map(ConversationId) {
            let generation = frames.get(key).unwrap_err();
            frames.put(key, generation, joined("xxxxxx", 1));
        }
        assert!(frames.bytes() <= 10);
        assert!(frames.get(ConversationId(3)).is_ok(), "the newest stays");
    }
}
